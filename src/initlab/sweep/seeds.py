"""Run seeds as a spec or ``compare(seeds=...)`` gives them: a count ``n`` (seeds
``0..n-1``) or an explicit list of distinct seeds."""

from __future__ import annotations

from typing import Any

from initlab.errors import InitlabError
from initlab.ranges import RANGES

MAX_SEEDS = 1_000_000
"""The largest seed count (``seeds = N``); more would be over any sane run limit."""


def seed_list(value: Any, where: str = "seeds") -> tuple[int, ...]:
    """A count ``n`` (seeds 0..n-1, at most :data:`MAX_SEEDS`) or an explicit list of
    distinct seeds, each in the range of :data:`initlab.ranges.RANGES` ``["seed"]``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise InitlabError(f"{where}: need at least one seed, got {value}")
        if value > MAX_SEEDS:
            raise InitlabError(f"{where} must be a count in [1, {MAX_SEEDS:,}], got {value}")
        return tuple(range(value))
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
