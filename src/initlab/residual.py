"""Residual-aware initialization: tame the sum of many residual branches at init.

A residual network adds each branch's output to a running stream, ``h ← h + f(h)``; with
ordinary per-layer schemes the stream's variance grows with the number of branches L. Two
rules fix it, applied after the per-layer scheme:

* ``"zero"`` (SkipInit, De & Smith 2020; Fixup's zero rule, Zhang et al. 2019): the last
  layer of every residual branch starts at zero, so each block is the identity at init
  (exactly, for activations with phi(0) = 0: relu, tanh, linear, selu, elu, gelu, silu,
  softsign). The units are *not* symmetric: each feeds a different coordinate of the stream,
  so their gradients differ.
* ``"fixup"`` (Zhang et al. 2019): with m layers per branch, the branch's layers except the
  last are scaled by ``L^(-1/(2m-2))`` and the last is zeroed. For single-layer branches
  (m = 1, initlab's residual MLP) the formula is undefined; initlab scales the branch's one
  layer by ``L^(-1/2)``, which keeps ``E[h_L²] <= e·E[h_0²]`` since ``(1 + 1/L)^L < e``
  — for branches whose output has zero mean (linear, tanh). A ReLU-family branch ends in a
  positive-mean activation whose means add up along the stream: the rule still cuts the
  growth from exponential in L (~10^14 at L = 32) to a few hundred, but does not bound it.

A residual block is any module with ``residual == True`` and a ``branch_layers`` list of its
Linear/Conv layers in order (initlab's MLP blocks have both).
"""

from __future__ import annotations

import torch
from torch import nn

from initlab.errors import InitlabError

RESIDUAL_RULES = ("none", "zero", "fixup")


def residual_branches(model: nn.Module) -> list[list[nn.Module]]:
    """The layers of every residual branch of ``model``, in module order."""
    return [
        list(m.branch_layers)
        for m in model.modules()
        if getattr(m, "residual", False) is True and hasattr(m, "branch_layers")
    ]


@torch.no_grad()
def apply_residual_rule(model: nn.Module, rule: str) -> int:
    """Apply ``rule`` (see the module docstring) to every residual branch; returns how many
    branches were changed. ``"none"`` changes nothing."""
    if rule not in RESIDUAL_RULES:
        raise InitlabError(
            f"residual rule must be one of {', '.join(RESIDUAL_RULES)}, got '{rule}'"
        )
    branches = residual_branches(model) if rule != "none" else []
    count = len(branches)
    for layers in branches:
        if rule == "zero" or (rule == "fixup" and len(layers) > 1):
            _zero(layers[-1])
        if rule == "fixup":
            m = len(layers)
            scale = count ** (-0.5) if m == 1 else count ** (-1.0 / (2 * m - 2))
            for layer in layers if m == 1 else layers[:-1]:
                layer.weight.mul_(scale)
    return count


def _zero(layer: nn.Module) -> None:
    layer.weight.zero_()
    if getattr(layer, "bias", None) is not None:
        layer.bias.zero_()
