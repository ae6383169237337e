"""Stacked equivalents of conv leaf modules for :mod:`initlab.train.stacked` (none yet)."""

from __future__ import annotations

from torch import Tensor, nn

FUNCTIONS: set = set()
"""Graph functions safe on ``[M, B, ...]`` tensors besides the elementwise ones."""
METHODS: set[str] = set()
"""Tensor methods safe on ``[M, B, ...]`` tensors besides the elementwise ones."""


def replacement(name: str, module: nn.Module, tensors: dict[str, Tensor]) -> nn.Module | None:
    """The stacked equivalent of the leaf ``module`` (``tensors``: its stacked
    parameters and buffers by attribute name), or ``None`` if this module has none."""
    return None
