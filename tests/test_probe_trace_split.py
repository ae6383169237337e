"""initlab.probe.trace: a layer output cut into pieces (a fused q/k/v projection).

A nanoGPT ``c_attn = nn.Linear(d, 3d)`` whose output is split into q, k and v for
``F.scaled_dot_product_attention`` was ``unknown`` (LSUV in the doctor's plan, "—" in the
diagnosis) where three separate q, k, v Linears were ``linear``: the tracer did not pass a
layer's tag through ``split``/``chunk``/``unbind``/``tensor_split``, nor to the pieces of a
tuple.
"""

import functools

import pytest
import torch
from torch import nn

import nanogpt
from initlab.coverage import initializable_layers
from initlab.doctor import find_activations, recommend
from initlab.probe import diagnose
from initlab.probe.trace import trace

D, HEADS = 16, 2


Block = functools.partial(nanogpt.Block, D, HEADS)


def _inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, 6, D, generator=torch.Generator().manual_seed(seed))


EXPECTED = {
    "attn.c_attn": "linear",
    "attn.c_proj": "linear",
    "c_fc": "gelu",
    "c_proj": "linear",
    "head": "linear",
}


@pytest.mark.parametrize("how", ["split", "chunk", "torch.split", "tensor_split", "unbind"])
def test_a_fused_qkv_projection_whose_pieces_reach_attention_is_linear(how):
    torch.manual_seed(0)
    model, x = Block(how), _inputs()
    found, _ = find_activations(model, x, initializable_layers(model))
    assert found == EXPECTED
    layers = {layer.name: layer for layer in trace(model, x)[0]}
    c_attn = layers["attn.c_attn"]
    assert c_attn.pre[1].shape == (4, 6, 3 * D)  # the whole output, not one piece
    # phi(z) = z for a linear layer: the tracer records the same numbers, nothing computed
    assert torch.equal(c_attn.post[1].reshape(c_attn.pre[1].shape), c_attn.pre[1])
    c_proj = layers["attn.c_proj"]  # the branch end: what it adds to the stream, as before
    assert c_proj.joined is not None and torch.equal(c_proj.post[1], c_proj.pre[1])


def test_the_doctor_plans_orthogonal_not_lsuv_and_the_diagnosis_shows_linear():
    torch.manual_seed(0)
    model, x = Block("split"), _inputs()
    plan = recommend(model, x)
    # linear (hidden); the fused projection drawn per q/k/v block (tests/test_fused_projections)
    assert (
        plan["attn.c_attn"].startswith("orthogonal per rows")
        and plan["attn.c_proj"] == "orthogonal"
    )
    assert not plan.needs_data
    table = diagnose(model, x).layers.set_index("layer")["activation"]
    assert table["attn.c_attn"] == "linear" and table["attn.c_proj"] == "linear"
    assert table["c_fc"] == "gelu"


class _Pieces(nn.Module):
    """A fused projection whose pieces meet different consumers, in the order ``first``
    names: an activation, a matrix product or something unclassifiable."""

    def __init__(self, first: str) -> None:
        super().__init__()
        self.first = first
        self.fused, self.out = nn.Linear(8, 16), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.fused(x).chunk(2, dim=-1)
        if self.first == "tanh":
            a = torch.tanh(a)
        elif self.first == "cumsum":
            a = torch.cumsum(a, dim=-1)
        return self.out(a * (b @ b.T).softmax(-1).diagonal()[:, None])


@pytest.mark.parametrize(
    ("first", "expected"), [("tanh", "tanh"), ("cumsum", "unknown"), ("product", "linear")]
)
def test_the_first_consumer_of_any_piece_decides_as_for_an_output_read_twice(first, expected):
    """``b @ b.T`` alone would make the layer linear; a piece met first by tanh or cumsum
    is the layer's (an output read by several consumers: the first call decides)."""
    model = _Pieces(first)
    found, _ = find_activations(model, torch.randn(5, 8), initializable_layers(model))
    assert found["fused"] == expected


class _Gates(nn.Module):
    """A fused projection cut in two: a GLU ``sigmoid(a) * b`` or a swish ``a * sigmoid(a)``."""

    def __init__(self, glu: bool) -> None:
        super().__init__()
        self.glu = glu
        self.fused, self.out = nn.Linear(8, 16), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.fused(x).split(8, dim=-1)
        gate = torch.sigmoid(a)
        return self.out(gate * (b if self.glu else a))


def test_a_gate_of_two_pieces_is_no_swish():
    """Two pieces of one output carry the same tag: ``sigmoid(a) * b`` is a GLU, whose first
    consumer is the sigmoid, not the hand-written swish ``a * sigmoid(a)``."""
    for glu, expected in ((True, "sigmoid"), (False, "silu")):
        model = _Gates(glu)
        found, _ = find_activations(model, torch.randn(5, 8), initializable_layers(model))
        assert found["fused"] == expected, glu


class _Recurrent(nn.Module):
    """An RNN-like step: ``ih(x) + x @ U``, a sum the tracer reads as a residual join, cut
    into four gates."""

    def __init__(self) -> None:
        super().__init__()
        self.ih, self.out = nn.Linear(8, 32), nn.Linear(8, 3)
        self.u = nn.Parameter(torch.randn(8, 32) / 8**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, f, g, o = (self.ih(x) + x @ self.u).chunk(4, -1)
        c = torch.sigmoid(f) * x + torch.sigmoid(i) * torch.tanh(g)
        return self.out(torch.sigmoid(o) * torch.tanh(c))


def test_a_residual_sum_cut_into_gates_stays_unknown():
    """The pieces of a layer's output pass its tag on, those of a sum it joined do not: its
    nonlinearity comes after the sum, as documented for ``STREAM_READERS``."""
    model = _Recurrent()
    found, _ = find_activations(model, torch.randn(5, 8), initializable_layers(model))
    assert found == {"ih": "unknown", "out": "linear"}
