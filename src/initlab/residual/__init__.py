"""Residual-aware initialization for any model: find the branches, apply a rule.

A residual network adds each branch's output to a running stream, ``h ← skip(h) + f(h)``;
with ordinary per-layer schemes the stream's variance grows with the number of branches L.
:func:`find_structure` finds the branches (``torch.fx``, or module names where tracing
fails); :func:`apply_residual` applies one of :data:`RESIDUAL_RULES` (see
:mod:`initlab.residual.rules` for each rule's formula) after the per-layer scheme.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ACCEPTED": "names",
    "ADDS_PARAMETERS": "names",
    "ALIASES": "names",
    "RESIDUAL_RULES": "names",
    "canonical_rule": "names",
    "ResidualResult": "rules",
    "apply_residual": "rules",
    "apply_residual_rule": "rules",
    "Branch": "structure",
    "Structure": "structure",
    "find_structure": "structure",
    "residual_branches": "structure",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Load a public name on first use: ``initlab.residual.names`` stays free of torch."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value
