"""Forwards that create tensors or call F.linear / F.layer_norm / F.embedding on their own
parameters (initlab.train.stacked_created, stacked_norms) against each model alone.

Same checks and tolerance as tests/test_stacked_shapes.py (``50 eps sqrt(n) scale``, floored
at 1e-3): the stack builds as ``stacked``, and its outputs and gradients are each model's own.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.models import build_user_model
from initlab.train.stack import ModelStack
from initlab.train.stacked import NotStackable
from test_stacked_shapes import CPU, B, D, M, Ops, T, check_stacked

VOCAB = 11


def test_initlabs_builtin_gpt_is_stacked():
    """``torch.arange`` positions into ``pos_emb``, heads by ``unflatten``, causal SDPA."""
    torch.manual_seed(0)
    args = dict(vocab_size=VOCAB, width=8, depth=2, heads=2, context=8)
    models = [build_user_model("initlab.models.gpt:gpt", args) for _ in range(M)]
    ids = torch.randint(0, VOCAB, (M, B, T))
    check_stacked(models, ids, B * T * 4 * 8)


class Positions(nn.Module):
    """``h = embed(x) + pos_emb(torch.arange(T, device=x.device))``, the positions also used
    as numbers: ``pos.float()[:, None] * w``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.pos_emb = nn.Linear(3, D), nn.Embedding(2 * T, D)
        self.w = nn.Parameter(torch.randn(D))

    def forward(self, x: Tensor) -> Tensor:
        pos = torch.arange(x.size(1), device=x.device)
        return self.embed(x) + self.pos_emb(pos) + pos.float()[:, None] * self.w


def test_arange_positions_are_stacked():
    torch.manual_seed(0)
    check_stacked([Positions() for _ in range(M)], torch.randn(M, B, T, 3), B * T)


class MaskedAttention(nn.Module):
    """Attention written out with a causal mask built in forward:
    ``torch.tril(torch.ones(T, T, device=x.device))``, ``masked_fill(mask == 0, -inf)``."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)

    def forward(self, x: Tensor) -> Tensor:
        _, t, d = x.size()
        q, k, v = self.qkv(x).split(d, dim=-1)
        mask = torch.tril(torch.ones(t, t, device=x.device))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d)
        att = att.masked_fill(mask == 0, float("-inf"))
        return self.proj(F.softmax(att, dim=-1) @ v)


def test_a_causal_mask_built_in_forward_is_stacked():
    torch.manual_seed(0)
    check_stacked([MaskedAttention() for _ in range(M)], torch.randn(M, B, T, D), B * T * D)


class Functional(nn.Module):
    """Its own parameters through ``F.embedding``, ``F.layer_norm`` and ``F.linear``."""

    def __init__(self, affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(VOCAB, D))
        self.ln_w = nn.Parameter(1 + torch.randn(D)) if affine else None
        self.ln_b = nn.Parameter(torch.randn(D)) if affine else None
        self.weight = nn.Parameter(torch.randn(4, D) / math.sqrt(D))
        self.bias = nn.Parameter(torch.randn(4)) if bias else None

    def forward(self, idx: Tensor) -> Tensor:
        h = F.embedding(idx, self.table)
        h = F.layer_norm(h, (D,), self.ln_w, self.ln_b) + F.layer_norm(h, [D])
        return F.linear(torch.tanh(h), self.weight, self.bias)


@pytest.mark.parametrize("affine,bias", [(True, True), (False, False)])
def test_functional_calls_on_own_parameters_are_stacked(affine, bias):
    torch.manual_seed(0)
    models = [Functional(affine, bias) for _ in range(M)]
    check_stacked(models, torch.randint(0, VOCAB, (M, B, T)), B * T * D)


class LayerNormOnly(nn.Module):
    """``F.layer_norm`` over the last two dims with only a weight, then ``F.linear`` of a
    model's vector (one example, no batch dim)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(1 + torch.randn(T, D))
        self.weight = nn.Parameter(torch.randn(2, T * D))

    def forward(self, x: Tensor) -> Tensor:
        h = F.layer_norm(x, x.shape[-2:], self.w)
        return F.linear(h.flatten(), self.weight)


def test_functional_layer_norm_over_two_dims_and_linear_of_a_vector_are_stacked():
    torch.manual_seed(0)
    check_stacked([LayerNormOnly() for _ in range(M)], torch.randn(M, T, D), T * D)


CREATED = {
    "zeros_like": lambda h, w, a, p: h + torch.zeros_like(h) + torch.full_like(h, 2.0),
    "ones": lambda h, w, a, p: h * torch.ones(h.size(-1)) + torch.ones(h.size(1), 1),
    "full": lambda h, w, a, p: h + torch.full((h.size(1), 1), 2.0) * w,
    "eye": lambda h, w, a, p: h @ torch.eye(h.size(-1)) + a @ torch.eye(h.size(1), h.size(-1)),
    "new_zeros": lambda h, w, a, p: h + h.new_zeros(h.shape[1:]) + h.new_ones(h.size(-1)),
    "new_full": lambda h, w, a, p: h * h.new_full((h.size(-1),), 3.0) + h.new_tensor([1.0]),
    "linspace": lambda h, w, a, p: h * torch.linspace(0, 1, h.size(-1)),
    "tensor": lambda h, w, a, p: h[..., :2] * torch.tensor([2.0, 3.0]),
    "triu": lambda h, w, a, p: a.triu(1) @ h + torch.ones(h.size(1), h.size(1)).tril(-1) @ h,
    "constant": lambda h, w, a, p: h + torch.ones(D) + torch.tril(torch.ones(T, T)) @ h,
    "arange": lambda h, w, a, p: h * torch.arange(h.size(1)).unsqueeze(-1),
}
"""Tensors built in forward, from shape values (traced) or constants (``torch.ones(D)``,
which torch.fx computes while tracing)."""


@pytest.mark.parametrize("name", CREATED)
def test_each_created_tensor_is_every_models_own(name):
    torch.manual_seed(0)
    models = [Ops(CREATED[name]) for _ in range(M)]
    check_stacked(models, torch.randn(M, B, T, D), B * T * D)


def test_a_created_tensor_written_in_place_is_a_copy():
    """Where the forward may write in place, each created tensor is a real ``[M, ...]`` copy:
    M rows sharing one tensor's memory cannot be written."""
    torch.manual_seed(0)
    models = [Ops(lambda h, w, a, p: h + F.relu(torch.full((h.size(-1),), -1.0), True))
              for _ in range(M)]  # fmt: skip
    check_stacked(models, torch.randn(M, B, T, D), B * T * D)


class InPlaceLeaf(nn.Module):
    """``nn.ReLU(inplace=True)`` on a tensor built in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.act = nn.Linear(D, D), nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.act(torch.linspace(-1, 1, x.size(-1)))


def test_a_created_tensor_given_to_an_inplace_module_is_a_copy():
    torch.manual_seed(0)
    check_stacked([InPlaceLeaf() for _ in range(M)], torch.randn(M, B, T, D), B * T * D)


# -- what stays refused, saying what ---------------------------------------------------------


class Padded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(VOCAB, D))

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.table, padding_idx=0)


AT_RUN = {
    "fill from a tensor": (
        lambda h, w, a, p: h + torch.full((h.size(-1),), h.mean()),
        "forward calls torch.full on a tensor, which differs per model",
    ),
    "out=": (
        lambda h, w, a, p: h + torch.zeros(h.size(-1), out=torch.empty(0)),
        "forward calls torch.zeros with out=, writing a model's tensor",
    ),
    "F.linear of a vector weight": (
        lambda h, w, a, p: F.linear(h, w[0]),
        "forward calls F.linear with a weight other than [out, in]",
    ),
}


@pytest.mark.parametrize("name", [*AT_RUN, "F.embedding padding_idx"])
def test_what_has_no_per_model_form_is_refused_when_it_runs(name):
    """The graph builds; its first forward refuses, naming the call (the trial then runs
    the model under vmap)."""
    if name in AT_RUN:
        fn, reason = AT_RUN[name]
        models, x = [Ops(fn) for _ in range(2)], torch.randn(2, B, T, D)
    else:
        models, x = [Padded() for _ in range(2)], torch.randint(0, VOCAB, (2, B, T))
        reason = "forward calls F.embedding with padding_idx, max_norm or sparse"
    stack = ModelStack(models, CPU, "stacked")
    with pytest.raises(NotStackable, match=re.escape(reason)):
        stack.forward(x, train=True)
