"""Parameter checks shared by the schemes: each raises InitlabError naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from initlab.errors import InitlabError, closest_name
from initlab.ranges import FLOAT32_LIMIT


def check_real(name: str, value: float) -> None:
    """Raise :class:`InitlabError` unless ``value`` is a real number within ±1e38.

    Weights are float32: ``constant(value=1e308)`` passed a finiteness check and then failed
    every run at its first draw (``value cannot be converted to type float without overflow``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InitlabError(f"{name} must be a finite number, got {value!r}")
    if abs(value) > FLOAT32_LIMIT:
        raise InitlabError(
            f"{name} must be within ±{FLOAT32_LIMIT:g} (weights are float32), got {value:g}"
        )


def check_nonnegative(name: str, value: float) -> None:
    """Raise :class:`InitlabError` unless ``value`` is finite and >= 0."""
    check_real(name, value)
    if value < 0:
        raise InitlabError(f"{name} must be >= 0, got {value}")


def check_strictly_positive(name: str, value: float) -> None:
    """Raise :class:`InitlabError` unless ``value`` is finite and > 0."""
    check_real(name, value)
    if value <= 0:
        raise InitlabError(f"{name} must be > 0, got {value}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise :class:`InitlabError` unless ``value`` is one of ``choices`` (suggest the closest)."""
    if isinstance(value, str) and value in choices:
        return
    hint = closest_name(str(value), choices)
    suggestion = f"; did you mean '{hint}'?" if hint else ""
    raise InitlabError(f"{name} must be one of {', '.join(choices)}, got {value!r}{suggestion}")


def check_ndim(tensor: Tensor, allowed: Sequence[int], what: str) -> None:
    """Raise :class:`InitlabError` unless ``tensor.dim()`` is in ``allowed``."""
    if tensor.dim() not in allowed:
        dims = " or ".join(f"{d}-D" for d in allowed)
        raise InitlabError(
            f"needs a {dims} tensor ({what}), got shape {list(tensor.shape)} ({tensor.dim()}-D)"
        )
