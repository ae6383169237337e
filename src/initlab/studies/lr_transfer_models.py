"""Factories for the ``lr-transfer`` study: SP or muP with **one** learning rate.

The study trains through initlab's engine, which gives every parameter of a model the same
learning rate. muP's per-parameter learning rates (:mod:`initlab.scaling.parametrize`) are
folded into the model instead, as multipliers (the abc-parametrization of Tensor Programs
V, §B): each Linear computes ``F.linear(x, c_w·w, c_b·b)`` and stores ``w = W / c_w``. With
a global learning rate η the update of the effective weight ``W = c·w`` is

- Adam (invariant to the gradient's scale, ε aside): ``ΔW = c · Δw ≈ c · η`` → ``c = r``;
- SGD (``∂L/∂w = c ∂L/∂W``): ``ΔW = c² · η · ∂L/∂W`` → ``c = √r``;

for the learning-rate factor ``r`` muP gives the parameter. Initial effective weights are
muP's exactly. (Weight decay would not be equivalent; the study uses none.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.errors import InitlabError
from initlab.models.scalable import mlp as scalable_mlp
from initlab.scaling.parametrize import Parametrized, parametrized
from initlab.scaling.shapes import Factory


class ScaledLinear(nn.Linear):
    """``F.linear(x, weight_mult · weight, bias_mult · bias)``."""

    weight_mult: float = 1.0
    bias_mult: float = 1.0

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.bias_mult
        return F.linear(x, self.weight * self.weight_mult, bias)


def multiplier(lr_factor: float, optimizer: str) -> float:
    """``c`` such that a global learning rate gives the factor ``r`` (module docs)."""
    return lr_factor if optimizer == "adam" else math.sqrt(lr_factor)


@torch.no_grad()
def fold_learning_rates(built: Parametrized) -> nn.Module:
    """``built.model`` with each ``nn.Linear`` replaced by a :class:`ScaledLinear` whose
    multipliers carry its per-parameter learning-rate factors. Refuses a model with a
    parameter outside an ``nn.Linear`` whose factor is not 1 (nothing would carry it: e.g.
    an embedding under muP with SGD)."""
    model = built.model
    linear = {
        f"{name}.{p}" if name else p
        for name, module in model.named_modules()
        if type(module) is nn.Linear
        for p, _ in module.named_parameters(recurse=False)
    }
    unfolded = [n for n, _ in model.named_parameters() if n not in linear]
    lost = [n for n in unfolded if built.lr_factor.get(n, 1.0) != 1.0]
    if lost:
        raise InitlabError(
            f"cannot fold the learning-rate factors of {', '.join(lost)} into multipliers "
            "(only nn.Linear layers are folded)"
        )
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear:
            continue
        scaled = ScaledLinear(module.in_features, module.out_features, module.bias is not None)
        scaled.weight_mult = multiplier(built.lr_factor[f"{name}.weight"], built.optimizer)
        scaled.weight.copy_(module.weight / scaled.weight_mult)
        if module.bias is not None:
            scaled.bias_mult = multiplier(built.lr_factor[f"{name}.bias"], built.optimizer)
            scaled.bias.copy_(module.bias / scaled.bias_mult)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, scaled)
    return model


def mlp(
    width: int = 64,
    param: str = "mup",
    optimizer: str = "adam",
    base_width: int = 64,
    depth: int = 3,
    input_size: int = 64,
    num_classes: int = 10,
) -> nn.Module:
    """The built-in width-``width`` MLP (:func:`initlab.models.scalable.mlp`) under ``param``
    (``sp`` or ``mup``, normalized at ``base_width``) for ``optimizer``, trainable with one
    learning rate. The caller seeds the RNG (the engine does)."""
    return folded(
        scalable_mlp,
        param,
        width=width,
        base_width=base_width,
        optimizer=optimizer,
        kwargs={"depth": int(depth), "input_size": int(input_size), "num_classes": num_classes},
    )


def folded(
    factory: Factory,
    param: str,
    *,
    width: int,
    base_width: int,
    optimizer: str,
    kwargs: dict,
) -> nn.Module:
    """``factory(width=width, **kwargs)`` under ``param`` (normalized at ``base_width``) for
    ``optimizer``, its learning-rate factors folded in (:func:`fold_learning_rates`): a model
    one learning rate trains as muP's parameter groups would. The seed of the base and target
    builds is one draw from the caller's RNG (the engine seeds it)."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    built = parametrized(
        factory,
        param,
        width=int(width),
        base_width=int(base_width),
        optimizer=optimizer,
        lr=1.0,
        seed=seed,
        kwargs=kwargs,
    )
    return fold_learning_rates(built)
