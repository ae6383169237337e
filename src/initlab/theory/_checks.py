"""Input validation shared by the theory modules (every bad input is an InitlabError)."""

from __future__ import annotations

import numpy as np

import initlab.activations as activations
from initlab.errors import InitlabError


def canonical(activation: str) -> str:
    """The registry name of ``activation`` (aliases resolved); unknown → UnknownNameError."""
    return activations.get(activation).name


def nonnegative(name: str, value: float | np.ndarray, *, allow_inf: bool = False) -> np.ndarray:
    """``value`` as a float64 array, checked ``>= 0`` and finite (``inf`` only if allowed)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InitlabError(f"{name} must be a number >= 0, got {value!r}") from exc
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise InitlabError(f"{name} must be >= 0, got {value!r}")
    if not allow_inf and np.any(np.isinf(arr)):
        raise InitlabError(f"{name} must be finite, got {value!r}")
    return arr


def scalar_or_array(arr: np.ndarray, *inputs: float | np.ndarray) -> float | np.ndarray:
    """A Python float when every input was a scalar, else the array itself."""
    if all(np.ndim(x) == 0 for x in inputs):
        return float(np.asarray(arr).reshape(-1)[0])
    return arr


def positive_int(name: str, value: int) -> int:
    """``value`` checked to be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InitlabError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
