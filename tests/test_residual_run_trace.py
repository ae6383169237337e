"""Residual structure recorded from one run (initlab.residual.run_trace): for models torch.fx
cannot trace, such as nanoGPT's attention, which slices its causal mask by the sequence
length; the same branches as fx where fx can trace; no side effects on the model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import initialize
from initlab.models.gpt import gpt
from initlab.models.resnet import resnet
from initlab.residual import apply_residual, find_structure
from initlab.residual.fx import fx_structure
from initlab.residual.run_trace import run_graph


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention without flash: sizes from x.size(), a sliced mask buffer,
    math.sqrt of a size."""

    def __init__(self, d: int, heads: int, length: int) -> None:
        super().__init__()
        self.c_attn, self.c_proj, self.heads = nn.Linear(d, 3 * d), nn.Linear(d, d), heads
        mask = torch.tril(torch.ones(length, length)).view(1, 1, length, length)
        self.register_buffer("bias", mask)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf")), dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, length: int, dropout: float) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, length)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout)
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab=16, length=8, d=16, heads=2, layers=2, dropout=0.0) -> None:
        super().__init__()
        self.length = length
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.h = nn.ModuleList([Block(d, heads, length, dropout) for _ in range(layers)])
        self.ln_f, self.lm_head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        _, t = idx.size()
        assert t <= self.length, "sequence too long"
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long, device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


TOKENS = torch.randint(0, 16, (2, 8), generator=torch.Generator().manual_seed(0))


def test_nanogpt_branches_come_from_a_run_on_a_batch():
    model = NanoGPT()
    structure = find_structure(model, TOKENS)
    assert structure.method == "run" and structure.depth == 4
    assert "torch.fx could not trace" in structure.notes[0] and "one run" in structure.notes[0]
    assert [b.layers for b in structure.branches] == [
        [f"h.{i}.{part}" for part in parts]
        for i in range(2)
        for parts in (("attn.c_attn", "attn.c_proj"), ("mlp.0", "mlp.2"))
    ]
    assert [b.block for b in structure.branches] == ["h.0", "h.0", "h.1", "h.1"]
    assert all(b.skip == [] and b.last_norm is None for b in structure.branches)
    assert structure.output_layer == "lm_head"
    # without the batch the branches are guessed from names: a block whose layers sit in an
    # attn and an mlp child adds twice (it was read as one branch: the GPT-2 rule then
    # scaled mlp.c_proj by 1/sqrt(2·2) and left attn.c_proj alone), with a note
    guessed = find_structure(model)
    assert guessed.method == "fallback"
    assert [b.layers for b in guessed.branches] == [b.layers for b in structure.branches]
    assert "give data" in guessed.notes[0]


def test_initialize_with_data_applies_the_rule_to_each_true_branch():
    torch.manual_seed(0)
    model = NanoGPT()
    record = initialize(model, "he_normal", residual_init="zero_last_layer", data=TOKENS)
    zeroed = set(record.residual_result.actions)
    layers = [f"h.{i}.{n}" for i in range(2) for n in ("attn.c_proj", "mlp.2")]
    assert zeroed == {f"{layer}.{p}" for layer in layers for p in ("weight", "bias")}
    assert all(model.get_submodule(n).weight.abs().sum() == 0 for n in layers)
    assert model.h[0].attn.c_attn.weight.abs().sum() > 0
    scaled = NanoGPT()
    plain = copy.deepcopy(scaled)
    apply_residual(scaled, "depth_scaled", example=TOKENS)  # GPT-2: 1/sqrt(2 n_layer)
    torch.testing.assert_close(scaled.h[1].mlp[2].weight, plain.h[1].mlp[2].weight * 0.5)


@pytest.mark.parametrize(
    ("build", "example"),
    [
        (lambda: resnet(depth=8, width=4, in_channels=1), torch.randn(2, 1, 8, 8)),
        (lambda: gpt(vocab_size=16, width=16, depth=2, heads=2, context=8), TOKENS),
    ],
    ids=["resnet", "gpt"],
)
def test_a_run_finds_the_branches_fx_finds(build, example):
    model = build()
    by_fx = find_structure(model)
    by_run = fx_structure(model, run_graph(model, example), method="run")
    assert by_fx.method == "fx" and by_fx.depth >= 3
    assert by_run.branches == by_fx.branches


def test_the_run_leaves_buffers_random_state_and_mode_as_they_were():
    model = resnet(depth=8, width=4, in_channels=1).eval()
    with_dropout = NanoGPT(dropout=0.5)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    shifted = torch.randn(4, 1, 8, 8) + 5.0  # batch norm in training mode would move
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    run_graph(model, shifted)
    run_graph(with_dropout, TOKENS)
    assert torch.equal(torch.rand(4), expected)
    assert not model.training and with_dropout.training
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())


def test_a_batch_the_model_cannot_run_falls_back_and_says_why():
    structure = find_structure(NanoGPT(), torch.randn(2, 3, 8, 8))
    assert structure.method == "fallback"
    assert "running it on the example batch failed" in structure.notes[0]


def test_plan_command_records_the_structure_from_its_data(tmp_path, monkeypatch, capsys):
    """`initlab plan --model nanogpt.py:build --data tokens.npz`: four branches, not two."""
    import inspect
    import json

    import numpy as np

    from initlab.cli import main

    monkeypatch.chdir(tmp_path)
    classes = [CausalSelfAttention, Block, NanoGPT]
    source = "\n\n".join(inspect.getsource(c) for c in classes)
    header = "import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
    (tmp_path / "nanogpt.py").write_text(
        f"{header}\n{source}\n\ndef build():\n    return NanoGPT()\n"
    )
    tokens = np.random.default_rng(0).integers(0, 16, (64, 9))
    x, y = tokens[:, :-1], tokens[:, 1:]
    np.savez(tmp_path / "tokens.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    args = ["plan", "--model", "nanogpt.py:build", "--residual-init", "depth_scaled"]
    assert main([*args, "--data", "tokens.npz", "--out", "plan.json"]) == 0
    residual = json.loads((tmp_path / "plan.json").read_text())["residual"]
    assert residual["method"] == "run" and residual["depth"] == 4
    assert "L = 4 branches" in capsys.readouterr().out
    assert main([*args, "--out", "guessed.json"]) == 0  # guessed from attn/mlp children
    guessed = json.loads((tmp_path / "guessed.json").read_text())["residual"]
    assert guessed["method"] == "fallback" and guessed["depth"] == 4


class TorchEncoder(nn.Module):
    """A classifier on ``nn.TransformerEncoder``: torch.nn modules whose residual additions
    fx's default tracer never opens, and whose fast-path checks fx cannot trace."""

    def __init__(self, norm_first: bool = False) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=norm_first)
        self.inp, self.head = nn.Linear(8, 16), nn.Linear(16, 3)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.inp(x)).mean(1))


class TorchDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dec, self.head = (
            nn.TransformerDecoderLayer(16, 2, 32, batch_first=True),
            nn.Linear(16, 3),
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.head(self.dec(x, memory))


def _branches(structure) -> list[tuple]:
    return [(b.layers, b.output, b.last_norm, b.block) for b in structure.branches]


@pytest.mark.parametrize(
    ("model", "example", "branches"),
    [
        (TorchEncoder(), torch.randn(2, 5, 8), 4),
        (TorchEncoder(norm_first=True), torch.randn(2, 5, 8), 4),
        (TorchDecoder(), (torch.randn(2, 5, 16), torch.randn(2, 4, 16)), 3),
    ],
    ids=["encoder", "pre-norm-encoder", "decoder"],
)
def test_torch_transformer_layers_have_their_attention_and_feed_forward_branches(
    model, example, branches
):
    """From a run (or fx, which traces the decoder layer) and from the fallback's knowledge of
    torch.nn's forward alike: each attention branch ends in its ``out_proj``, the feed-forward
    one in ``linear2``; the rules reach both (they found neither before)."""
    from initlab.residual.fallback import fallback_structure

    run = find_structure(model, example)
    assert _branches(run) == _branches(fallback_structure(model))
    assert len(run.branches) == branches  # two per encoder layer, three per decoder layer
    lasts = [b.layers[-1] for b in run.branches]
    assert all(n.endswith(("out_proj", "linear2")) for n in lasts)
    result = apply_residual(model, "zero_last_layer", example=example)
    weights = dict(model.named_parameters())
    assert result.rule == "zero_last_layer"
    assert all(weights[f"{n}.weight"].abs().max() == 0 for n in lasts)
