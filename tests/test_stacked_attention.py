"""Stacked transformer leaves (initlab.train.stacked_attention) against each model alone.

Every check runs M real modules one at a time and the stacked leaves on the same
minibatches. Tolerance (CONTRIBUTING.md): ``atol = 50 eps(float32) sqrt(n) scale`` with
``n`` the longest reduction behind a value (the tokens of a weight gradient, the fan-in of
the feed-forward layer) and ``scale`` the magnitude of the compared values; after ``s``
optimizer steps the rounding of each step has had ``s`` more chances to be carried along,
so the tolerance grows by that factor.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import stack_module_state

import initlab.train.stacked_attention as stacked_attention
from initlab.train.engine import train_stack
from initlab.train.evaluate import evaluate_stack
from initlab.train.schedule import Member, StackSettings
from initlab.train.stack import ModelStack
from initlab.train.stacked import NotStackable

CPU = torch.device("cpu")
EPS = torch.finfo(torch.float32).eps
M, B, T, D, VOCAB = 3, 4, 8, 16, 11


def assert_near(a: Tensor, b: Tensor, n: int, steps: int = 1, what: str = "") -> None:
    """``a`` equals ``b`` within ``50 eps sqrt(n) scale`` (times ``steps``)."""
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), float(a.abs().max()), 1e-3)
    atol = 50 * EPS * math.sqrt(n) * scale * steps
    torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=lambda m: f"{what}: {m}")


class Encoder(nn.Module):
    """Embedding + positions, a 2-layer nn.TransformerEncoder, a vocabulary head."""

    def __init__(self, mask: str = "causal", padding: bool = False, **layer) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, D), nn.Parameter(0.1 * torch.randn(T, D))
        settings = dict(dim_feedforward=2 * D, dropout=0.0, batch_first=True) | layer
        encoder_layer = nn.TransformerEncoderLayer(D, 2, **settings)
        final = nn.LayerNorm(D) if layer.get("norm_first") else None
        self.encoder = nn.TransformerEncoder(encoder_layer, 2, final, enable_nested_tensor=False)
        self.head = nn.Linear(D, VOCAB)
        self.kind, self.padding = mask, padding
        causal = nn.Transformer.generate_square_subsequent_mask(T)
        masks = {"causal": causal, "bool": causal.isinf(), "float": 0.5 * torch.randn(T, T)}
        self.register_buffer("mask", masks.get(mask, causal))

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) + self.pos
        pad = (x == 0) if self.padding else None
        if self.kind == "none":
            return self.head(self.encoder(h, src_key_padding_mask=pad))
        causal = True if self.kind == "causal" else None
        return self.head(self.encoder(h, self.mask, pad, is_causal=causal))


def tokens(generator: torch.Generator, padded: bool = False) -> Tensor:
    """``[M, B, T]`` ids in 1..VOCAB-1; with ``padded``, trailing positions are 0 (never
    position 0, so every query keeps a visible key)."""
    x = torch.randint(1, VOCAB, (M, B, T), generator=generator)
    if padded:
        x[:, :, T - 3 :] *= torch.rand(M, B, 3, generator=generator) < 0.5
    return x


def per_model_loss(out: Tensor, y: Tensor) -> Tensor:
    """``[M]``: each model's mean token cross-entropy."""
    flat = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
    return flat.view(out.shape[0], -1).mean(1)


def compare_training(models, steps: int, optimizer, padded: bool = False) -> ModelStack:
    """Train the stack and copies of ``models`` alone on the same minibatches; outputs,
    losses and gradients agree at every step, eval outputs at the end."""
    alone = [copy.deepcopy(m) for m in models]
    stack = ModelStack(models, CPU, "stacked")
    assert stack.strategy == "stacked"
    opt = optimizer(list(stack.params.values()))
    opts = [optimizer(list(m.parameters())) for m in alone]
    gen = torch.Generator().manual_seed(1)
    n = max(B * T, 2 * D)
    for step in range(1, steps + 1):
        x, y = tokens(gen, padded), torch.randint(0, VOCAB, (M, B, T), generator=gen)
        out = stack.forward(x, train=True)
        losses = per_model_loss(out, y)
        stack.zero_grad()
        losses.sum().backward()
        for m, model in enumerate(alone):
            model.train()
            ref = model(x[m])
            loss = per_model_loss(ref.unsqueeze(0), y[m : m + 1])[0]
            opts[m].zero_grad()
            loss.backward()
            assert_near(out[m].detach(), ref.detach(), n, step, f"output of model {m}")
            assert_near(losses[m].detach(), loss.detach(), n, step, "loss")
            named = dict(model.named_parameters())
            for name, grad in zip(stack.params, stack.grads(), strict=True):
                assert_near(grad[m], named[name].grad, n, step, f"{name} gradient")
        opt.step()
        for o in opts:
            o.step()
    x = tokens(gen, padded)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # torch 2.13's gives NaN for float masks
    try:
        with torch.no_grad():
            out = stack.forward(x[0], train=False, shared=True)
            for m, model in enumerate(alone):
                model.eval()
                assert_near(out[m], model(x[0]), n, steps + 1, f"eval output of model {m}")
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return stack


def sgd(params):
    return torch.optim.SGD(params, lr=0.1)


def adam(params):
    return torch.optim.Adam(params, lr=1e-2)


@pytest.mark.parametrize(
    "settings",
    [
        dict(mask="causal"),
        dict(mask="detect", norm_first=True),
        dict(mask="float", activation="gelu"),
        dict(mask="bool", padding=True),
        dict(mask="none", padding=True, norm_first=True, activation=F.gelu),
        dict(mask="causal", padding=True, bias=False),
        dict(mask="causal", activation=F.silu),  # the feed-forward block as separate leaves
    ],
)
def test_the_stacked_encoder_trains_as_the_models_alone(settings):
    torch.manual_seed(0)
    models = [Encoder(**settings) for _ in range(M)]
    compare_training(models, 3, sgd, padded=settings.get("padding", False))


def test_per_model_masks_stay_per_model():
    """A float attention mask buffer of its own per model (not one mask for all)."""
    torch.manual_seed(0)
    models = [Encoder(mask="float") for _ in range(M)]
    assert not torch.equal(models[0].mask, models[1].mask)
    compare_training(models, 2, sgd)


def test_evaluation_in_blocks_matches():
    """The engine evaluates in blocks of rows (initlab.train.evaluate): one row per block
    gives each model's loss and accuracy of one block of all rows."""
    torch.manual_seed(0)
    stack = compare_training([Encoder(mask="bool", padding=True) for _ in range(M)], 1, sgd, True)
    gen = torch.Generator().manual_seed(2)
    x, y = tokens(gen, True)[0], torch.randint(0, VOCAB, (B, T), generator=gen)
    whole = evaluate_stack(stack, x, y, "sequence", rows=B)
    blocks = evaluate_stack(stack, x, y, "sequence", rows=1)
    for a, b in zip(whole, blocks, strict=True):
        assert_near(torch.tensor(a), torch.tensor(b), B * T * D, what="loss, accuracy")


class TinyTransformer(nn.Module):
    """benchmarks/bench_engine.py's transformer (copied: the benchmark is not a module)."""

    def __init__(self, vocab: int = 64, length: int = 32, d: int = 64) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(length, d))
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos, mask=self.mask, is_causal=True)
        return self.out(h)


def small_transformer() -> nn.Module:
    """The benchmark's transformer at the size of ``examples/my_data.py:tokens`` (vocabulary
    16, length 16), as tests/test_gpu.py trains it: a model the stacked strategy runs."""
    return TinyTransformer(16, 16, 32)


def test_the_benchmark_transformer_is_stacked_and_trains_as_the_models_alone(monkeypatch):
    torch.manual_seed(0)
    models = [TinyTransformer(VOCAB, T, D) for _ in range(M)]
    assert ModelStack(models, CPU).strategy == "stacked"
    compare_training(models, 3, adam)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_the_engine_trains_the_stacked_transformer_as_one_model_at_a_time(optimizer):
    """One epoch of SGD, plain or with momentum (the engine fuses both into the stacked
    linear layers' backward) and the per-model evaluation: stacked vs looped records agree."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (96, T + 1), generator=gen)
    data = SimpleNamespace(task="sequence", num_classes=VOCAB)
    for split, rows in (("train", slice(0, 64)), ("val", slice(64, 80)), ("test", slice(80, 96))):
        setattr(data, f"x_{split}", x[rows, :-1])
        setattr(data, f"y_{split}", x[rows, 1:])
    members = [Member(seed=m, lr=0.05) for m in range(M)]
    runs = {}
    for strategy in ("stacked", "looped"):
        torch.manual_seed(0)
        models = [TinyTransformer(VOCAB, T, D) for _ in range(M)]
        shared = StackSettings(
            task="sequence", optimizer=optimizer, batch_size=8, epochs=1, strategy=strategy
        )
        runs[strategy] = train_stack(models, data, shared, members)
    n = 64 * T  # tokens summed into an epoch's loss
    for a, b in zip(runs["stacked"], runs["looped"], strict=True):
        for key in ("train_loss", "val_loss"):
            rel = 50 * EPS * math.sqrt(n) * 8  # 8 SGD steps carry rounding along
            assert a.epochs[0][key] == pytest.approx(b.epochs[0][key], rel=rel), key
        assert a.test_loss == pytest.approx(b.test_loss, rel=rel)


def stacked_leaf(modules: list[nn.Module]) -> tuple[nn.Module, dict[str, Tensor]]:
    """The stacked replacement of ``modules`` and its ``[M, ...]`` leaf tensors."""
    params, buffers = stack_module_state(modules)
    tensors = {k: v.detach().requires_grad_(True) for k, v in params.items()} | buffers
    return stacked_attention.replacement("leaf", modules[0], tensors), tensors


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cross", [True, False])
def test_multihead_attention_with_projections_and_masks(batch_first, cross):
    """Cross-attention (kdim, vdim != d: separate q/k/v weights) or self-attention (packed
    weights, one product), a per-model float mask, a key padding mask; gradients of every
    projection."""
    torch.manual_seed(0)
    dims = dict(kdim=6, vdim=5) if cross else {}
    mhas = [nn.MultiheadAttention(D, 4, batch_first=batch_first, **dims) for _ in range(M)]
    leaf, tensors = stacked_leaf(mhas)
    s = T + 2 if cross else T
    q = torch.randn(M, B, T, D)
    k, v = (torch.randn(M, B, s, 6), torch.randn(M, B, s, 5)) if cross else (q, q)
    mask = torch.randn(M, T, s)
    padding = torch.rand(M, B, s) < 0.3
    padding[..., 0] = False
    if not batch_first:
        q, k, v = (t.transpose(1, 2) for t in (q, k, v)) if cross else (q.transpose(1, 2),) * 3
    out, _ = leaf(q, k, v, padding, need_weights=False, attn_mask=mask)
    gout = torch.randn_like(out)
    names = [name for name, _ in mhas[0].named_parameters()]
    grads = torch.autograd.grad(out, [tensors[name] for name in names], gout)
    for m, mha in enumerate(mhas):
        ref, _ = mha(q[m], k[m], v[m], padding[m], need_weights=False, attn_mask=mask[m])
        assert_near(out[m], ref, max(B * s, D), what="attention output")
        mine = torch.autograd.grad(ref, list(mha.parameters()), gout[m])
        for name, a, b in zip(names, grads, mine, strict=True):
            assert_near(a[m], b, B * s, what=f"{name} gradient")


def test_embedding_gradient_lands_in_the_stacked_table():
    torch.manual_seed(0)
    tables = [nn.Embedding(VOCAB, D, scale_grad_by_freq=True) for _ in range(M)]
    leaf, tensors = stacked_leaf(tables)
    x = torch.randint(0, VOCAB, (M, B, T))
    out = leaf(x)
    out.square().sum().backward()
    for m, table in enumerate(tables):
        ref = table(x[m])
        ref.square().sum().backward()
        assert torch.equal(out[m], ref)  # a lookup: exact
        assert_near(tensors["weight"].grad[m], table.weight.grad, B * T)


@pytest.mark.parametrize("kwargs", [dict(), dict(bias=False), dict(elementwise_affine=False)])
def test_layer_norm_over_trailing_dims(kwargs):
    torch.manual_seed(0)
    norms = [nn.LayerNorm((3, D), **kwargs) for _ in range(M)]
    for norm in norms:
        for p in norm.parameters():
            p.data.normal_()
    leaf, tensors = stacked_leaf(norms)
    x = torch.randn(M, B, 3, D, requires_grad=True)
    out = leaf(x)
    gout = torch.randn_like(out)
    out.backward(gout)
    for m, norm in enumerate(norms):
        xm = x[m].detach().requires_grad_(True)
        ref = norm(xm)
        ref.backward(gout[m])
        assert_near(out[m], ref, 3 * D)
        assert_near(x.grad[m], xm.grad, 3 * D)
        for name, p in norm.named_parameters():
            assert_near(tensors[name].grad[m], p.grad, B * 3 * D, what=name)


def test_attention_dropout_draws_per_model_masks():
    torch.manual_seed(0)
    model = Encoder(dropout=0.5)
    stack = ModelStack([model] * M, CPU, "stacked")
    x = tokens(torch.Generator().manual_seed(0))[0]
    train = stack.forward(x, train=True, shared=True)
    assert not torch.allclose(train[0], train[1])
    with torch.no_grad():
        held = stack.forward(x, train=False, shared=True)
    assert_near(held[0], held[1], max(B * T, 2 * D))


def test_what_it_cannot_stack_goes_to_vmap():
    padded = [nn.Sequential(nn.Embedding(VOCAB, D, padding_idx=0), nn.Linear(D, 2))] * 2
    assert ModelStack(padded, CPU).strategy == "vmap"
    with pytest.raises(NotStackable, match="need_weights"):
        leaf, _ = stacked_leaf([nn.MultiheadAttention(D, 2, batch_first=True)] * 2)
        x = torch.randn(2, B, T, D)
        leaf(x, x, x)


class AttentionBlock(nn.Module):
    """A pre-norm block that calls its ``nn.MultiheadAttention`` itself, as user code does:
    ``read`` is how the forward takes the output from the ``(out, weights)`` tuple."""

    def __init__(self, read: str, dim: int = D) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head, self.read = nn.Linear(dim, 3), read

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        if self.read == "unpacked":
            a, _ = self.attn(h, h, h, need_weights=False)
        elif self.read == "indexed":  # need_weights left at its default, True
            a = self.attn(h, h, h)[0]
        else:  # the weights ([B, T, T]; dim = T) are used: no stacked leaf computes them
            a, w = self.attn(h, h, h)
            a = a + torch.tanh(w)
        return self.head(x + a)


@pytest.mark.parametrize("read", ["unpacked", "indexed"])
def test_a_direct_attention_call_is_stacked(read):
    torch.manual_seed(0)
    models = [AttentionBlock(read) for _ in range(M)]
    stack = ModelStack(models, CPU, "stacked")
    x = torch.randn(M, B, T, D)
    out = stack.forward(x, train=True)
    for m, model in enumerate(models):
        assert_near(out[m], model(x[m]), D * T, what=f"model {m}")
    out.square().sum().backward()
    ref = sum(model(x[m]).square().sum() for m, model in enumerate(models))
    ref.backward()
    grad = stack.params["attn.in_proj_weight"].grad
    for m, model in enumerate(models):
        assert_near(grad[m], model.attn.in_proj_weight.grad, B * T * D, what=f"grad {m}")


def test_an_attention_whose_weights_are_used_is_not_stacked():
    models = [AttentionBlock("weights", dim=T) for _ in range(2)]
    stack = ModelStack(models, CPU, "stacked")  # the graph is built; the forward refuses
    with pytest.raises(NotStackable, match="need_weights"):
        stack.forward(torch.randn(2, B, T, T), train=True)
