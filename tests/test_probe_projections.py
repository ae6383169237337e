"""The query, key and value maps inside nn.MultiheadAttention are layers of the probe."""

import pytest
import torch
from torch import nn

import initlab
from initlab.probe import Tracker, diagnose
from initlab.probe.hooks import collect


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _tol(expected: torch.Tensor, terms: int) -> dict:
    """rtol/atol for a product of ``terms`` fp32 terms computed by two kernels."""
    atol = 4 * terms * torch.finfo(torch.float32).eps * max(1.0, float(expected.abs().max()))
    return {"rtol": 1e-5, "atol": atol}


class SelfAttending(nn.Module):
    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(6, d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        out, _ = self.attn(query=h, key=h, value=h, need_weights=False)  # keywords
        return self.head(h + out).mean(1)


class CrossAttending(nn.Module):
    """Queries of width 8 over 7 memory slots of width 5 (separate q/k/v weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, kdim=5, vdim=5)  # sequence-first
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, memory = x[:, :, :8], x[:7, :, 8:13]
        out, _ = self.attn(query, memory, memory)
        return self.head(out).mean(0)


def test_packed_maps_are_rows_of_in_proj_with_their_own_z_fans_and_gradient():
    torch.manual_seed(0)
    model, x = SelfAttending(), torch.randn(8, 5, 6, generator=gen())
    layers = {t.name: t for t in collect(model, x)}
    maps = ["attn.q_proj", "attn.k_proj", "attn.v_proj"]
    assert list(layers) == ["inp", *maps, "attn.out_proj", "head"]
    h = layers["inp"].post
    packed, bias = model.attn.in_proj_weight.detach(), model.attn.in_proj_bias.detach()
    v = torch.randn(8, 3, generator=gen(1))
    (direct,) = torch.autograd.grad((model(x) * v).sum(), model.attn.in_proj_weight)
    w = torch.randn(8, 3, generator=gen(1))  # the probe's own cotangent, drawn the same way
    layers = {t.name: t for t in collect(model, x, loss=lambda out: (out * w).sum())}
    for i, which in enumerate("qkv"):
        layer = layers[f"attn.{which}_proj"]
        rows = slice(16 * i, 16 * (i + 1))
        assert torch.equal(layer.weight, packed[rows]) and torch.equal(layer.bias, bias[rows])
        expected = h @ packed[rows].T + bias[rows]
        torch.testing.assert_close(layer.pre, expected, **_tol(expected, 16))
        assert layer.activation == "linear" and layer.inside == "MultiheadAttention"
        torch.testing.assert_close(layer.weight_grad, direct[rows], rtol=1e-4, atol=1e-6)
        assert layer.pre_grad is None  # z's own tensor never leaves the attention
    assert all(p.grad is None for p in model.parameters())
    table = diagnose(model, x).layers.set_index("layer")
    assert (table.loc["attn.q_proj", ["fan_in", "fan_out", "units"]] == [16, 16, 16]).all()
    assert table.loc["attn.v_proj", "type"] == "AttentionProjection"


def test_separate_maps_of_a_cross_attention_read_their_own_inputs():
    torch.manual_seed(0)
    model, x = CrossAttending(), torch.randn(9, 4, 13, generator=gen())
    layers = {t.name: t for t in collect(model, x)}
    attn = model.attn
    query, memory = x[:, :, :8], x[:7, :, 8:13]
    bias = attn.in_proj_bias.detach()
    for i, (which, source) in enumerate(zip("qkv", (query, memory, memory), strict=True)):
        weight = getattr(attn, f"{which}_proj_weight").detach()
        layer = layers[f"attn.{which}_proj"]
        expected = source @ weight.T + bias[8 * i : 8 * (i + 1)]
        assert layer.pre.shape == expected.shape  # keys and values: 7 slots, not 9
        torch.testing.assert_close(layer.pre, expected, **_tol(expected, 8))
        assert layer.weight_grad is not None and layer.weight_grad.shape == weight.shape
    table = diagnose(model, x).layers.set_index("layer")
    assert (table.loc["attn.k_proj", ["fan_in", "fan_out"]] == [5, 8]).all()


def test_a_zero_init_shows_its_symmetry_in_the_maps_and_a_random_one_does_not():
    model, x = SelfAttending(), torch.randn(8, 5, 6, generator=gen())
    initlab.initialize(model, "zeros", generator=gen())
    table = diagnose(model, x).layers.set_index("layer")
    for which in "qkv":
        assert table.loc[f"attn.{which}_proj", "weight_std"] == 0
        assert table.loc[f"attn.{which}_proj", "weight_duplicates"] == 16
    initlab.initialize(model, "glorot_uniform", generator=gen())
    table = diagnose(model, x).layers.set_index("layer")
    for which in "qkv":  # each third drawn with its own fans: U(±sqrt(6 / 32)), std 0.25
        std = table.loc[f"attn.{which}_proj", "weight_std"]
        assert std == pytest.approx(0.25, rel=4 / (2 * 256) ** 0.5)  # 256 draws: ~4 σ
        assert table.loc[f"attn.{which}_proj", "weight_duplicates"] == 0


def test_training_tracks_the_maps_as_it_tracks_every_layer():
    model, x = SelfAttending(), torch.randn(8, 5, 6, generator=gen())
    y = torch.randint(0, 3, (8,), generator=gen())
    tracker = Tracker("epoch", x, y)
    tracker.record(model, 0, 0)  # as the engine does: step 0, then each tracking moment
    with torch.no_grad():
        model.attn.in_proj_weight[:16].mul_(3.0)  # a larger query map, as an update would
    tracker.record(model, 1, 1)
    rows = [r for r in tracker.rows if r["layer"] == "attn.q_proj" and r["metric"] == "weight_std"]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["value"] == pytest.approx(3 * rows[0]["value"], rel=1e-5)


def test_no_hook_stays_on_the_attention():
    model, x = SelfAttending(), torch.randn(8, 5, 6, generator=gen())
    collect(model, x)
    assert not model.attn._forward_pre_hooks and not model.attn._forward_hooks
