"""Expanding a :class:`~initlab.sweep.spec.Spec` into its runs, in a stable order.

Order: the cartesian product of the axes in the order the spec lists them (the first axis
varies slowest), then the ``[[include]]`` points in order, each point repeated over the
seeds (the innermost, fastest-varying axis). Points matching an ``[[exclude]]`` table are
dropped; a run that appears twice (an include equal to a grid point) is kept once, at its
first position. The order depends only on the spec, so positions are stable across runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.sweep.spec import Spec


def grid_points(spec: Spec) -> Iterator[dict[str, Any]]:
    """The swept settings of each point (without seeds and fixed settings), in order."""
    for combo in itertools.product(*(axis.values for axis in spec.axes)):
        point: dict[str, Any] = {}
        for axis, values in zip(spec.axes, combo, strict=True):
            point.update(zip(axis.keys, values, strict=True))
        if not any(_matches(point, rule) for rule in spec.exclude):
            yield point
    yield from (dict(inc) for inc in spec.include)


def _matches(point: dict[str, Any], rule: dict[str, Any]) -> bool:
    return all(key in point and point[key] == value for key, value in rule.items())


def expand(spec: Spec) -> list[RunConfig]:
    """Every run of ``spec`` as a :class:`RunConfig`, in the documented order, no duplicates."""
    configs: dict[str, RunConfig] = {}
    for point in grid_points(spec):
        seeds = [point["seed"]] if "seed" in point else spec.seeds
        for seed in seeds:
            settings = {**spec.fixed, **point, "seed": seed}
            try:
                config = RunConfig(**settings)
            except InitlabError as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
                raise InitlabError(f"run ({shown}): {exc}") from None
            configs.setdefault(config.key(), config)
    if not configs:
        raise InitlabError(f"spec '{spec.name}' has no runs (every grid point is excluded)")
    return list(configs.values())


def swept_values(config: RunConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """``config``'s values of ``keys`` for display (``hidden`` as ``100-100``)."""
    shown = {}
    for key in keys:
        value = getattr(config, key)
        shown[key] = "-".join(map(str, value)) if key == "hidden" else value
    return shown
