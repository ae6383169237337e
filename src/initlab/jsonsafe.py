"""Numbers as strict JSON holds them: JSON has no NaN and no infinity (Python's ``json``
writes ``NaN``/``Infinity``, which other readers refuse). One convention for every file
initlab writes: a number that cannot be computed (NaN) is ``null``, an infinite one the
string ``"inf"`` or ``"-inf"``. :func:`dumps` writes a document so, however deep its numbers
sit."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def json_number(value: float) -> float | str | None:
    """``value`` as JSON holds it: finite as is, ``±inf`` as ``"inf"``/``"-inf"``, NaN as
    ``None`` (``null``)."""
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else str(value)


def strict_json(value: Any) -> Any:
    """``value`` with every float inside mappings, lists and tuples made :func:`json_number`,
    mappings as dicts with string keys, tuples as lists, and numpy or torch scalars (a
    ``shape == ()`` value with ``.item()``) as the Python number they hold."""
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return strict_json(value.item())
    return value


def dumps(document: Any, indent: int | None = None) -> str:
    """``document`` as strict JSON text (:func:`strict_json`, then ``allow_nan=False``, so a
    non-finite number that got past it raises rather than writing invalid JSON); anything
    else ``json`` cannot hold (a path, an enum) as its ``str``."""
    return json.dumps(strict_json(document), indent=indent, allow_nan=False, default=str)
