"""Run seeds as a spec or ``compare(seeds=...)`` gives them: a count ``n`` (seeds
``0..n-1``) or an explicit list of distinct seeds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from initlab.config import plain
from initlab.errors import InitlabError
from initlab.ranges import MAX_INT, RANGES

MAX_SEEDS = 1_000_000
"""The largest seed count (``seeds = N``); more would be over any sane run limit."""


def seed_list(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """A count ``n`` (seeds 0..n-1, at most :data:`MAX_SEEDS`) or an explicit list (any
    sequence: a tuple, a range, an array) of distinct seeds, each in the range of
    :data:`initlab.ranges.RANGES` ``["seed"]``. Numpy integers count as ints
    (:func:`initlab.config.plain`); a float count (``2.0``) or a negative seed → one line."""
    value = _as_seeds(value)
    if isinstance(value, float):
        raise InitlabError(f"{where} must be a whole number or a list of seeds, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InitlabError(f"{where}: a count of seeds cannot be negative, got {value}")
        if value < 1:
            raise InitlabError(f"{where}: need at least one seed, got {value}")
        if value > MAX_SEEDS:
            raise InitlabError(f"{where} must be a count in [1, {MAX_SEEDS:,}], got {value}")
        return tuple(range(value))
    negative = [s for s in value if isinstance(s, int) and s < 0] if isinstance(value, list) else []
    if negative:
        raise InitlabError(f"{where}: seed {negative[0]} is negative (seeds are integers >= 0)")
    listed = value if isinstance(value, list) else []
    huge = [s for s in listed if isinstance(s, int) and s > MAX_INT]
    if huge:
        raise InitlabError(f"{where}: seed {huge[0]} is above 2^63 - 1, the largest seed")
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(s, int) and not isinstance(s, bool) and RANGES["seed"].contains(s) for s in value
    )
    if not ok:
        raise InitlabError(f"{where} must be a count (3) or a list of seeds ([0, 1, 2])")
    if not value:
        raise InitlabError(f"{where}: need at least one seed")
    if len(set(value)) != len(value):
        raise InitlabError(f"{where} lists a seed twice: {list(value)}")
    return tuple(value)


def _as_seeds(value: Any) -> Any:
    """A count as a Python number, any other iterable (a tuple, range, array) as a list of
    Python numbers; strings and tables as they are (refused by :func:`seed_list`)."""
    value = plain(value)
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        return [plain(s) for s in value]
    return value
