"""Optimizers by name: ``sgd``, ``momentum`` (SGD with heavy-ball momentum), ``adam``, ``adamw``.

These are plain ``torch.optim`` optimizers with PyTorch's formulas; the batched engine
re-implements exactly the same update rules for stacked parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from initlab.config import OPTIMIZERS
from initlab.errors import UnknownNameError

ADAMW_DEFAULT_WEIGHT_DECAY = 0.01

DESCRIPTIONS = {
    "sgd": "plain SGD: p ← p − lr·g",
    "momentum": "SGD with momentum μ: b ← μ·b + g; p ← p − lr·b",
    "adam": "Adam (β=(0.9, 0.999), ε=1e-8), bias-corrected",
    "adamw": "AdamW: Adam with decoupled weight decay (default 0.01)",
}


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer called ``name`` over ``params``.

    ``weight_decay`` is L2 (coupled) for sgd/momentum/adam and decoupled for adamw, whose
    default when ``weight_decay`` is 0 is PyTorch's 0.01.
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        decay = weight_decay or ADAMW_DEFAULT_WEIGHT_DECAY
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    raise UnknownNameError("optimizer", name, OPTIMIZERS)
