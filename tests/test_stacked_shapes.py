"""Forwards that read shapes and pass dims (initlab.train.stacked_ops) against each model alone.

Each stack runs M models at once on ``[M, B, ...]`` inputs; each model runs alone on its own
slice. Tolerance (CONTRIBUTING.md): ``atol = 50 eps(float32) sqrt(n) scale`` with ``n`` the
longest reduction behind a value (the tokens of a weight gradient, a fan-in) and ``scale``
the magnitude of the compared values, floored at 1e-3. Shapes are chosen all different
(batch 4, length 5, width 6) so that a dim moved to the wrong axis changes a shape or a value.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.train.stack import ModelStack
from initlab.train.stacked import NotStackable, stacked_module

CPU = torch.device("cpu")
EPS = torch.finfo(torch.float32).eps
M, B, T, D = 3, 4, 5, 6


def assert_near(a: Tensor, b: Tensor, n: int, what: str = "") -> None:
    """``a`` equals ``b`` within ``50 eps sqrt(n) scale``."""
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), float(a.abs().max()), 1e-3) if b.numel() else 1.0
    atol = 50 * EPS * math.sqrt(n) * scale
    torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=lambda m: f"{what}: {m}")


def check_stacked(models: list[nn.Module], x: Tensor, n: int) -> ModelStack:
    """The stacked strategy builds, and its outputs on ``x`` (``[M, B, ...]``) and the
    gradients of a random cotangent equal each model's own, in train and eval mode."""
    alone = [copy.deepcopy(m) for m in models]
    stack = ModelStack(models, CPU, "stacked")
    assert stack.strategy == "stacked"
    out = stack.forward(x, train=True)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(cotangent)
    for m, model in enumerate(alone):
        ref = model.train()(x[m])
        ref.backward(cotangent[m])
        assert_near(out[m], ref, n, f"model {m} output")
        named = dict(model.named_parameters())
        for name, param in stack.params.items():
            if named[name].grad is None:  # a parameter this forward does not read
                assert param.grad is None or not param.grad[m].any(), name
            else:
                assert_near(param.grad[m], named[name].grad, n, f"model {m} {name} gradient")
    with torch.no_grad():
        held = stack.forward(x, train=False)
        for m, model in enumerate(alone):
            assert_near(held[m], model.eval()(x[m]), n, f"model {m} eval output")
    return stack


# -- real forwards ---------------------------------------------------------------------------


class TinyViT(nn.Module):
    """A user's ViT (8x8 images as 64 pixels): ``x.reshape(x.shape[0], 1, 8, 8)``, patches
    ``flatten(2).transpose(1, 2)``, a ``[1, n, d]`` position table, ``mean(1)`` pooling."""

    def __init__(self, dim: int = 8, heads: int = 2, depth: int = 1, patch: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        n = (8 // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, dim))  # random: a misaligned add shows
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.blocks.append(
                nn.ModuleDict(
                    dict(
                        ln1=nn.LayerNorm(dim),
                        attn=nn.MultiheadAttention(dim, heads, batch_first=True),
                        ln2=nn.LayerNorm(dim),
                        mlp=mlp,
                    )
                )
            )
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], 1, 8, 8)
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for b in self.blocks:
            h = b["ln1"](t)
            t = t + b["attn"](h, h, h, need_weights=False)[0]
            t = t + b["mlp"](b["ln2"](t))
        return self.head(self.ln(t).mean(1))


def test_a_vit_that_reads_shapes_is_stacked():
    torch.manual_seed(0)
    check_stacked([TinyViT(depth=2) for _ in range(M)], torch.randn(M, B, 64), B * 16 * 8)


class ConvNet(nn.Module):
    """The classic CNN: conv, pool, then ``x.view(x.size(0), -1)`` into a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 3 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


def test_a_cnn_that_views_its_features_by_the_batch_size_is_stacked():
    torch.manual_seed(0)
    check_stacked([ConvNet() for _ in range(M)], torch.randn(M, B, 2, 6, 8), B * 6 * 8 * 9)


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention, by ``F.scaled_dot_product_attention(is_causal=True)`` or written
    out with its ``[1, 1, L, L]`` ``bias`` buffer sliced to the traced length."""

    def __init__(self, d: int, heads: int, length: int, explicit: bool) -> None:
        super().__init__()
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.n_head, self.n_embd, self.explicit = heads, d, explicit
        tril = torch.tril(torch.ones(length, length))
        self.register_buffer("bias", tril.view(1, 1, length, length))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()  # nanoGPT's names
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.explicit:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class GPTBlock(nn.Module):
    """nanoGPT's pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, d: int = D, heads: int = 2, length: int = 2 * T, explicit: bool = False):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, length, explicit)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@pytest.mark.parametrize("explicit", [False, True], ids=["sdpa", "masked_fill"])
def test_a_nanogpt_block_is_stacked(explicit):
    torch.manual_seed(0)
    models = [GPTBlock(explicit=explicit) for _ in range(M)]
    check_stacked(models, torch.randn(M, B, T, D), B * T * 4 * D)


class DropoutByMode(nn.Module):
    """Upstream nanoGPT's attention call: ``dropout_p=self.dropout if self.training else 0``
    (its default dropout is 0.0)."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.qkv, self.dropout = nn.Linear(D, 3 * D), dropout

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).split(D, dim=2)
        p = self.dropout if self.training else 0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)


def test_a_dropout_chosen_by_mode_stacks_when_both_modes_compute_the_same():
    """At dropout 0.0 the train and eval graphs differ only by ``0.0`` against ``0``: compared
    as code they differed, and nanoGPT's attention was refused ("branches on
    self.training"); at 0.1 they really differ and it still is."""
    torch.manual_seed(0)
    check_stacked([DropoutByMode(0.0) for _ in range(M)], torch.randn(M, B, T, D), T * D)
    with pytest.raises(ValueError, match=r"branches on self\.training"):
        ModelStack([DropoutByMode(0.1) for _ in range(M)], CPU, "stacked")


class ClassToken(nn.Module):
    """A ``[1, 1, d]`` class token expanded to the batch and joined by ``torch.cat`` on dim 1,
    a ``[1, n + 1, d]`` position table, and the class token's output read as ``x[:, 0]``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, D)
        self.cls, self.pos = (
            nn.Parameter(torch.randn(1, 1, D)),
            nn.Parameter(torch.randn(1, T + 1, D)),
        )
        self.head = nn.Linear(D, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        return self.head(torch.tanh(h)[:, 0])


def test_a_class_token_joined_on_dim_1_is_stacked():
    torch.manual_seed(0)
    check_stacked([ClassToken() for _ in range(M)], torch.randn(M, B, T, 3), B * T)


# -- one rule at a time ------------------------------------------------------------------------


class Ops(nn.Module):
    """``fn(h, w, a, p)`` of ``h = linear(x)`` (``[B, T, D]``) and the parameters ``w``
    (``[T, D]``), ``a`` (``[T, T]``) and ``p`` (``[1, T, D]``): lower-rank operands."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.linear, self.fn = nn.Linear(D, D), fn
        self.w, self.a = nn.Parameter(torch.randn(T, D)), nn.Parameter(torch.randn(T, T))
        self.p = nn.Parameter(torch.randn(1, T, D))

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.linear(x), self.w, self.a, self.p)


def _heads(h: Tensor) -> Tensor:
    return h.view(h.size(0), h.size(1), 2, -1).transpose(1, 2)


OPS = {
    "flatten(1)": lambda h, w, a, p: h.flatten(1),
    "flatten()": lambda h, w, a, p: torch.flatten(h),
    "view(-1)": lambda h, w, a, p: h.view(-1) * h.numel(),
    "view_as": lambda h, w, a, p: h.transpose(0, 1).contiguous().view_as(h) + w.view(-1).view_as(w),
    "reshape(Size)": lambda h, w, a, p: h.reshape(h.shape[0] * h.shape[1], h.size(-1)),
    "permute": lambda h, w, a, p: h.permute(2, 0, 1) + torch.permute(h, (-1, 0, 1)),
    "transpose(0)": lambda h, w, a, p: h.transpose(0, 2).contiguous(),
    "shape arithmetic": lambda h, w, a, p: h * (h.dim() + h.ndim) / math.sqrt(h.size(-1)),
    "position tables": lambda h, w, a, p: h + w + p * h,
    "index": lambda h, w, a, p: h[:, 0] + w[-1] + h[-1, None, 1:3].sum(),
    "ellipsis": lambda h, w, a, p: h[..., :2] * w[None, :, 2:4],
    "cat dim 0": lambda h, w, a, p: torch.cat([h, w.expand(h.shape[0], -1, -1)]),
    "stack": lambda h, w, a, p: torch.stack([h, w.expand_as(h)]) + torch.stack([h, h], -1)[..., 0],
    "chunk, split": lambda h, w, a, p: h.chunk(2, dim=-1)[1] * torch.split(h, 3, 2)[0],
    "split dim 0": lambda h, w, a, p: h.split(1)[0] + h.unbind()[1],
    "unsqueeze, squeeze": lambda h, w, a, p: (
        h.unsqueeze(0).squeeze(0) + h[:, :1].squeeze()[:, None, :] + w.unsqueeze(-1).squeeze(-1)
    ),
    "expand new dims": lambda h, w, a, p: w.expand(2, h.size(0), T, D) * h,
    "sum all": lambda h, w, a, p: h * h.sum() + w.mean() * h.amax(dim=(0, 2), keepdim=True),
    "reductions": lambda h, w, a, p: h.sum(0) + torch.mean(h, dim=-1, keepdim=True),
    "norm by hand": lambda h, w, a, p: (
        (h - h.mean(-1, keepdim=True))
        * torch.rsqrt(h.var(-1, keepdim=True, unbiased=False) + 1e-5)
        * w
    ),
    "std all": lambda h, w, a, p: h * h.std(),
    "softmax dims": lambda h, w, a, p: (
        F.softmax(h, dim=0) + h.log_softmax(1) * torch.softmax(h, -1)
    ),
    "matmul": lambda h, w, a, p: (h @ w.transpose(0, 1)) @ a @ w + torch.matmul(a, h),
    "matmul vector": lambda h, w, a, p: (h @ w[0]).unsqueeze(-1) * (w[1] @ h.transpose(1, 2)).sum(),
    "bmm": lambda h, w, a, p: torch.bmm(h, h.transpose(1, 2)) @ h,
    "where": lambda h, w, a, p: torch.where(h > 0, h, w) + (h > w).float(),
    "masked_fill": lambda h, w, a, p: h.masked_fill(w > 0, 0.0) + h.masked_fill(p < 0, -1.0),
    "attention mask": lambda h, w, a, p: (
        F.scaled_dot_product_attention(_heads(h), _heads(h), _heads(h), attn_mask=a)
        .transpose(1, 2)
        .reshape(h.shape)
    ),
    "clamp": lambda h, w, a, p: torch.clamp(h, min=w) + h.clamp(max=0.5),
}


@pytest.mark.parametrize("name", OPS)
def test_each_rule_is_the_models_own_operation(name):
    torch.manual_seed(0)
    models = [Ops(OPS[name]) for _ in range(M)]
    check_stacked(models, torch.randn(M, B, T, D), B * T * D)


# -- what has no rule is refused, saying what ----------------------------------------------


REFUSED = {
    "torch.cumsum": (lambda h, w, a, p: torch.cumsum(h, 1), "forward calls torch.cumsum"),
    "x.cumsum()": (lambda h, w, a, p: h.cumsum(1), "forward calls x.cumsum()"),
    "in place": (lambda h, w, a, p: h.add_(1), "forward calls x.add_()"),
    "x.T": (lambda h, w, a, p: w.T, "forward reads x.T"),
    "randn_like": (lambda h, w, a, p: h * torch.randn_like(h), "forward calls torch.randn_like"),
    "F.pad": (lambda h, w, a, p: F.pad(h, (0, h.size(-1))), "forward calls F.pad"),
}
"""Functions and methods without a rule: refused when the graph is built, by name."""
UNTRACEABLE = {
    "len": (
        lambda h, w, a, p: h.view(len(h), -1),
        "forward calls len() on a tensor, which torch.fx cannot trace (x.size(0) can be)",
    ),
    "branch on a shape": (
        lambda h, w, a, p: h if h.size(0) > 1 else w,
        "forward branches on a tensor's value or shape, which torch.fx cannot trace",
    ),
}


@pytest.mark.parametrize("name", [*REFUSED, *UNTRACEABLE])
def test_what_has_no_rule_is_refused_with_its_name(name):
    if name in REFUSED:
        fn, call = REFUSED[name]
        reason = f"{call}, which the stacked strategy has no rule for"
    else:
        fn, reason = UNTRACEABLE[name]
    model = Ops(fn)
    state = {k: v.unsqueeze(0) for k, v in model.state_dict().items()}
    with pytest.raises(NotStackable) as refused:
        stacked_module(model, state)
    assert str(refused.value) == reason
    assert ModelStack([Ops(fn) for _ in range(2)], CPU).strategy == "vmap"


AT_RUN = {
    "bool index": (lambda h, w, a, p: h[h > 0], "indexes a tensor with a tensor or a list"),
    "list index": (lambda h, w, a, p: h[:, [0, 2]], "indexes a tensor with a tensor or a list"),
    "where(condition)": (lambda h, w, a, p: torch.where(h)[0], "torch.where(condition)"),
    "softmax without dim": (lambda h, w, a, p: F.softmax(h), "softmax without a dim"),
}


@pytest.mark.parametrize("name", AT_RUN)
def test_an_index_across_models_is_refused_when_it_runs(name):
    """A tensor or list index (or nonzero positions) would pick across models, a softmax
    without a dim picks it by the rank: the graph builds, its first forward refuses (the
    trial then runs the model under vmap and says why, tests/test_stack_trial.py)."""
    fn, reason = AT_RUN[name]
    stack = ModelStack([Ops(fn) for _ in range(2)], CPU, "stacked")
    with pytest.raises(NotStackable, match=re.escape(reason)):
        stack.forward(torch.randn(2, B, T, D), train=True)
