"""initlab.probe.trace: an activation of a sum of two layers' outputs, and unknown ones.

A ResNet block ending in ``F.relu(out + self.shortcut(x))`` (``out = bn2(conv2(...))``, a
1x1 conv + BN projection shortcut) had both ``conv2`` and the shortcut conv ``unknown``
(LSUV in the doctor's plan, "—" in the diagnosis), and their post-activation statistics
were other tensors': ``conv2``'s the block's input (the input of the next layer called,
the shortcut conv), the shortcut's the pooled features entering the head.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.coverage import initializable_layers
from initlab.doctor import find_activations, recommend
from initlab.probe import diagnose
from initlab.probe.trace import trace


class _Block(nn.Module):
    """A post-activation ResNet block with a projection shortcut; ``tail`` is what meets the
    sum: ``relu`` (out of place), ``relu+=`` (``out += shortcut``) or ``cumsum`` (no known
    activation)."""

    def __init__(self, tail: str, cin: int = 4, cout: int = 8) -> None:
        super().__init__()
        self.tail = tail
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.tail == "relu+=":
            out += self.shortcut(x)
            return F.relu(out)
        out = out + self.shortcut(x)
        return F.relu(out) if self.tail == "relu" else torch.cumsum(out, 1)


class _Net(nn.Module):
    def __init__(self, tail: str) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, 1, 1)
        self.block = _Block(tail)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(torch.relu(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _inputs() -> torch.Tensor:
    return torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _block_output(model: _Net, x: torch.Tensor) -> torch.Tensor:
    """The block's output, from a forward hook on an eval-mode pass of the tracer's own."""
    seen = []
    handle = model.block.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("tail", ["relu", "relu+="])
def test_an_activation_of_a_sum_of_two_layers_is_the_activation_of_both(tail):
    torch.manual_seed(0)
    model, x = _Net(tail), _inputs()
    found, _ = find_activations(model, x, initializable_layers(model))
    assert found == {
        "stem": "relu",
        "block.conv1": "relu",
        "block.conv2": "relu",
        "block.shortcut.0": "relu",
        "fc": "linear",
    }
    plan = recommend(model, x)
    assert plan["block.conv2"] == plan["block.shortcut.0"] == "he_normal"
    expected = _block_output(model, x)
    with torch.no_grad():
        layers = {layer.name: layer for layer in trace(model.eval(), x)[0]}
    for name in ("block.conv2", "block.shortcut.0"):
        post = layers[name].post[1]
        assert post is not None and post.shape == expected.shape, name
        torch.testing.assert_close(post, expected, rtol=1e-5, atol=1e-6)
    table = diagnose(model, x, mode="eval").layers.set_index("layer")
    for name in ("block.conv2", "block.shortcut.0"):
        assert table.loc[name, "activation"] == "relu", name
        assert table.loc[name, "post_mean"] == pytest.approx(
            float(expected.mean()), rel=1e-4, abs=1e-6
        )
        assert table.loc[name, "post_std"] == pytest.approx(
            float(expected.std(unbiased=False)), rel=1e-4, abs=1e-6
        )


def test_an_unknown_activation_of_a_sum_measures_no_other_tensor():
    """``cumsum(out + shortcut(x))``: both layers are ``unknown``; the next layer called (the
    shortcut conv, reading the block's input) and the head (reading pooled features) give
    them no phi(z): NaN statistics, not the block input's."""
    torch.manual_seed(0)
    model, x = _Net("cumsum"), _inputs()
    with torch.no_grad():
        layers = {layer.name: layer for layer in trace(model.eval(), x)[0]}
    for name in ("block.conv2", "block.shortcut.0"):
        assert layers[name].activation == "unknown", name
        assert layers[name].post == (None, None), name
    table = diagnose(model, x, mode="eval").layers.set_index("layer")
    for name in ("block.conv2", "block.shortcut.0"):
        assert math.isnan(table.loc[name, "post_mean"]), name
        assert math.isnan(table.loc[name, "post_std"]), name


class _Unrelated(nn.Module):
    """``a``'s output meets a ``cumsum`` whose result no layer reads; ``b``, called next,
    reads the model's input."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.cumsum(self.a(x), -1)
        return self.head(torch.tanh(self.b(x))) + u.mean()


def test_the_next_layer_called_lends_no_phi_to_a_layer_it_does_not_read():
    torch.manual_seed(0)
    model, x = _Unrelated(), torch.randn(32, 8)
    layers = {layer.name: layer for layer in trace(model, x)[0]}
    assert layers["a"].activation == "unknown" and layers["a"].post == (None, None)
    assert layers["b"].activation == "tanh"
    table = diagnose(model, x).layers.set_index("layer")
    assert math.isnan(table.loc["a", "post_mean"]) and math.isnan(table.loc["a", "post_std"])


class _MixerLike(nn.Module):
    """Pre-norm residual blocks on a token stream ``[B, T, d]``; the head reads the mean
    over tokens of the normalized stream (ViT/MLP-Mixer pooling)."""

    def __init__(self, blocks: int = 2, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Linear(6, dim)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
        self.fc1 = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(blocks))
        self.fc2 = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(blocks))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for norm, fc1, fc2 in zip(self.norms, self.fc1, self.fc2, strict=True):
            x = x + fc2(nn.functional.gelu(fc1(norm(x))))
        return self.head(self.norm(x).mean(1))


def test_the_last_branch_end_of_a_mean_pooled_stream_is_linear_like_the_others():
    """The mean over tokens that reads the last block's stream left its branch end
    ``unknown`` (the plan gave it LSUV) while every other block's was linear."""
    from initlab.doctor.plan import plan_for

    torch.manual_seed(0)
    model, x = _MixerLike(), torch.randn(16, 5, 6)
    layers = {layer.name: layer for layer in trace(model, x)[0]}
    assert layers["fc2.0"].activation == layers["fc2.1"].activation == "linear"
    assert layers["fc1.1"].activation == "gelu"
    schemes = {e.layer: e.scheme for e in plan_for(model, x).entries}
    assert schemes["fc2.1"] == schemes["fc2.0"] and "lsuv" not in schemes.values()


class _RMSNorm(nn.Module):
    """LLaMA's: ``x.float()``, then ``x * rsqrt(mean(x²) + eps)``, scaled."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)
        return normed.type_as(x) * self.weight


class _Llamaish(nn.Module):
    """Pre-norm blocks ``x + w2(silu(w1(norm(x))))`` and a head on the normed stream (in
    LLaMA an embedding feeds the first block; ``inp``, a Linear, is read by a hand-written
    RMSNorm's ``pow`` and stays ``unknown``: not a branch end, so no stream reader)."""

    def __init__(self, norm: str, blocks: int = 2, dim: int = 16) -> None:
        super().__init__()
        make = {"hand": _RMSNorm, "torch": nn.RMSNorm, "layer": nn.LayerNorm}[norm]
        self.norms = nn.ModuleList(make(dim) for _ in range(blocks + 1))
        self.inp = nn.Linear(6, dim)
        self.w1 = nn.ModuleList(nn.Linear(dim, 2 * dim, bias=False) for _ in range(blocks))
        self.w2 = nn.ModuleList(nn.Linear(2 * dim, dim, bias=False) for _ in range(blocks))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for norm, w1, w2 in zip(self.norms, self.w1, self.w2, strict=False):
            x = x + w2(nn.functional.silu(w1(norm(x))))
        return self.head(self.norms[-1](x))


@pytest.mark.parametrize("norm", ["hand", "torch", "layer"])
def test_a_branch_end_read_by_an_rms_norm_is_linear_as_by_a_layer_norm(norm):
    """LLaMA's RMSNorm (by hand: x.float(), x.pow(2); or nn.RMSNorm's F.rms_norm) left every
    branch's last projection 'unknown', and the plan gave each one LSUV."""
    from initlab.doctor.plan import plan_for

    torch.manual_seed(0)
    model, x = _Llamaish(norm), torch.randn(16, 5, 6)
    layers = {layer.name: layer for layer in trace(model, x)[0]}
    assert layers["w2.0"].activation == layers["w2.1"].activation == "linear"
    schemes = {e.layer: e.scheme for e in plan_for(model, x).entries}
    assert schemes["w2.0"] == schemes["w2.1"] != "lsuv"
