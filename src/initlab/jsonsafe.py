"""Numbers as strict JSON holds them: JSON has no NaN and no infinity (Python's ``json``
writes ``NaN``/``Infinity``, which other readers refuse). One convention for every file
initlab writes: a number that cannot be computed (NaN) is ``null``, an infinite one the
string ``"inf"`` or ``"-inf"``."""

from __future__ import annotations

import math
from typing import Any


def json_number(value: float) -> float | str | None:
    """``value`` as JSON holds it: finite as is, ``±inf`` as ``"inf"``/``"-inf"``, NaN as
    ``None`` (``null``)."""
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else str(value)


def strict_json(value: Any) -> Any:
    """``value`` with every float inside dicts, lists and tuples made :func:`json_number`."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
