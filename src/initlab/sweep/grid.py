"""Expanding a :class:`~initlab.sweep.spec.Spec` into its runs, in a stable order — lazily.

Order: the cartesian product of the axes in the order the spec lists them (the first axis
varies slowest), then the ``[[include]]`` points in order, each point repeated over the
seeds (the innermost, fastest-varying axis). Points matching an ``[[exclude]]`` table are
dropped; a run that appears twice (an include equal to a grid point) is kept once, at its
first position. The order depends only on the spec, so positions are stable across runs.

Nothing here needs the whole grid in memory. :func:`count_runs` computes the number of
runs from the axes::

    runs = (Π_a |axis a| − excluded points) × |seeds| + runs of the includes not in the grid

where the excluded points are counted over the axes the exclude rules name only (times the
product of the others). :func:`iter_runs` yields the runs one by one, :func:`config_at`
builds the grid point at a position (mixed-radix decoding of the index, the last axis
fastest) and :func:`sample_runs` draws a uniform sample of runs for cost estimates.
:func:`expand` refuses a spec of more than ``max_runs`` runs (default
:data:`DEFAULT_MAX_RUNS`) before building any of them.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from initlab.config import DEFAULT_MAX_RUNS, RunConfig
from initlab.errors import InitlabError, option
from initlab.ranges import MAX_INT, Range
from initlab.setting_names import MODEL_ARG
from initlab.sweep.spec import Axis, Spec

MAX_COUNTED_POINTS = 2_000_000
"""The most combinations of excluded axes :func:`count_runs` enumerates."""
_MAX_RUNS_RANGE = Range(True, 1, high=MAX_INT)


def _point(axes: Sequence[Axis], combo: Sequence[tuple]) -> dict[str, Any]:
    point: dict[str, Any] = {}
    for axis, values in zip(axes, combo, strict=True):
        point.update(zip(axis.keys, values, strict=True))
    return point


def _excluded(point: dict[str, Any], rules: Sequence[dict[str, Any]]) -> bool:
    return any(_matches(point, rule) for rule in rules)


def _matches(point: dict[str, Any], rule: dict[str, Any]) -> bool:
    return all(key in point and point[key] == value for key, value in rule.items())


def run_settings(spec: Spec, point: dict[str, Any], seed: int) -> dict[str, Any]:
    """The :class:`RunConfig` keywords of ``point``: the fixed settings, then the point's
    (``model_args.width`` joins the fixed ``model_args``), then the seed."""
    settings = {**spec.fixed, "seed": seed}
    model_args = dict(spec.fixed.get("model_args", {}))
    for key, value in point.items():
        if key.startswith(MODEL_ARG):
            model_args[key[len(MODEL_ARG) :]] = value
        elif key != "seed":
            settings[key] = value
    if model_args:
        settings["model_args"] = model_args
    return settings


def make_config(spec: Spec, point: dict[str, Any], seed: int) -> RunConfig:
    """The run of ``point`` with ``seed``; an impossible combination names the point."""
    try:
        return RunConfig(**run_settings(spec, point, seed))
    except InitlabError as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
        raise InitlabError(f"run ({shown}): {exc}") from None


def grid_size(spec: Spec) -> int:
    """Points of the product of the axes (before excludes, without seeds)."""
    return math.prod(len(axis.values) for axis in spec.axes)


def count_runs(spec: Spec) -> int:
    """The number of runs :func:`iter_runs` yields, computed without expanding the grid."""
    grid = (grid_size(spec) - _count_excluded(spec)) * len(spec.seeds)
    return grid + sum(len(seeds) for _, seeds in _new_includes(spec))


def _count_excluded(spec: Spec) -> int:
    """Grid points matched by some exclude rule: enumerate only the axes the rules name."""
    keys = {k for axis in spec.axes for k in axis.keys}
    rules = [r for r in spec.exclude if set(r) <= keys]  # others never match a grid point
    if not rules:
        return 0
    named = {k for rule in rules for k in rule}
    touched = [a for a in spec.axes if named & set(a.keys)]
    size = math.prod(len(a.values) for a in touched)
    if size > MAX_COUNTED_POINTS:
        raise InitlabError(
            f"the [[exclude]] rules name axes with {size:,} combinations, too many to count; "
            "exclude along fewer axes or make them shorter"
        )
    matched = sum(
        _excluded(_point(touched, combo), rules)
        for combo in itertools.product(*(a.values for a in touched))
    )
    return matched * (grid_size(spec) // size)


def _position(spec: Spec, config: RunConfig) -> int | None:
    """The grid index of the point whose settings ``config`` has, or ``None``."""
    index = 0
    for axis in spec.axes:
        values = tuple(_setting(config, key) for key in axis.keys)
        if values not in axis.values:
            return None
        index = index * len(axis.values) + axis.values.index(values)
    return index


_MISSING = object()


def _setting(config: RunConfig, key: str, missing: Any = _MISSING) -> Any:
    if key.startswith(MODEL_ARG):
        return config.model_args.get(key[len(MODEL_ARG) :], missing)
    return getattr(config, key)


def _new_includes(spec: Spec) -> Iterator[tuple[dict[str, Any], tuple[int, ...]]]:
    """Each include point with the seeds of its runs that are not already in the grid or
    in an earlier include (an include's own ``seed`` replaces the spec's seeds)."""
    seen: set[str] = set()
    for include in spec.include:
        seeds = (include["seed"],) if "seed" in include else spec.seeds
        config = make_config(spec, include, seeds[0])
        index = _position(spec, config)
        in_grid = index is not None and config_at(spec, index, seeds[0]).key() == config.key()
        in_grid = in_grid and not _excluded(_point_at(spec, index), spec.exclude)
        fresh = []
        for seed in seeds:
            key = config.replace(seed=seed).key()
            if not (in_grid and seed in spec.seeds) and key not in seen:
                seen.add(key)
                fresh.append(seed)
        if fresh:
            yield include, tuple(fresh)


def _point_at(spec: Spec, index: int) -> dict[str, Any]:
    """The axes' values at grid position ``index`` (mixed radix, the last axis fastest)."""
    combo = []
    for axis in reversed(spec.axes):
        index, digit = divmod(index, len(axis.values))
        combo.append(axis.values[digit])
    return _point(spec.axes, combo[::-1])


def config_at(spec: Spec, index: int, seed: int) -> RunConfig:
    """The run at grid position ``index`` (``0 <= index <`` :func:`grid_size`) with ``seed``."""
    return make_config(spec, _point_at(spec, index), seed)


def iter_runs(spec: Spec) -> Iterator[RunConfig]:
    """Every run of ``spec``, in the documented order, each once — one at a time.

    The grid has no duplicates (a value listed twice is refused when the spec is read), so
    only the includes are compared with it.
    """
    for combo in itertools.product(*(axis.values for axis in spec.axes)):
        point = _point(spec.axes, combo)
        if not _excluded(point, spec.exclude):
            for seed in spec.seeds:
                yield make_config(spec, point, seed)
    for include, seeds in _new_includes(spec):
        for seed in seeds:
            yield make_config(spec, include, seed)


def sample_runs(spec: Spec, size: int, seed: int = 0) -> list[RunConfig]:
    """About ``size`` runs drawn uniformly (with replacement) from the grid, plus every new
    include run when there are at most ``size`` of them: for cost estimates of huge specs."""
    rng = random.Random(seed)
    total = grid_size(spec)
    runs: list[RunConfig] = []
    for _ in range(size * 4):  # rejection of excluded points; gives up on mostly-excluded
        if len(runs) >= size or total == 0:
            break
        point = _point_at(spec, rng.randrange(total))
        if not _excluded(point, spec.exclude):
            runs.append(make_config(spec, point, rng.choice(spec.seeds)))
    includes = list(itertools.islice(_new_includes(spec), size + 1))
    if len(includes) <= size:
        runs += [make_config(spec, inc, s) for inc, seeds in includes for s in seeds]
    return runs


def check_max_runs(spec: Spec, max_runs: int | None = DEFAULT_MAX_RUNS) -> int:
    """The number of runs of ``spec``; :class:`InitlabError` when over ``max_runs``
    (``None``: no limit) or when every point is excluded."""
    total = count_runs(spec)
    if max_runs is not None:
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
            raise InitlabError(f"max_runs must be {_MAX_RUNS_RANGE.describe()}, got {max_runs!r}")
        if total > max_runs:
            raise InitlabError(
                f"spec '{spec.name}' has {total:,} runs, over the limit of {max_runs:,}: "
                f"make the grid smaller or raise the limit ({option(f'--max-runs {total}')})"
            )
    if total == 0:
        raise InitlabError(f"spec '{spec.name}' has no runs (every grid point is excluded)")
    return total


def expand(spec: Spec, max_runs: int | None = DEFAULT_MAX_RUNS) -> list[RunConfig]:
    """Every run of ``spec`` as a :class:`RunConfig`, in the documented order, no duplicates;
    refused at once, before any run is built, when there are more than ``max_runs``."""
    check_max_runs(spec, max_runs)
    return list(iter_runs(spec))


def swept_values(config: RunConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """``config``'s values of ``keys`` for display (``hidden`` as ``100-100``)."""
    shown = {}
    for key in keys:
        value = _setting(config, key, None)
        shown[key] = "-".join(map(str, value)) if key == "hidden" else value
    return shown
