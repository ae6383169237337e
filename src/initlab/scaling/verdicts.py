"""Verdicts from coordinate data: the slope of log(metric) against log(width), with a CI.

For each (module, step, metric): the least-squares slope of ``log(value)`` on ``log(width)``
over every width and seed, its 95% CI and p-value from the seeds' spread at each width
(:func:`initlab.scaling.fits.fit`: Welch–Satterthwaite, since the log-noise differs between
widths). Values ≤ 0 or not finite are left out; a fit needs ≥ 3 values over ≥ 2 widths.
**Flagged** when its p-value, Holm-adjusted over every fit of the check that can be flagged
(:func:`judge_family`), is below 5% and ``|slope| ≥`` :data:`PRACTICAL_SLOPE` (a tenfold
width change then moves the metric by ≥ 26%). One series is one hypothesis however many
names it has (the logits' std and the readout's). Over depth (``--depths``), at each width,
for layers matched by role (:mod:`initlab.scaling.roles`): one law per series, exponential
(log metric against depth) or a power (against log depth), whichever leaves the smaller
residual, and only that one is tested (:func:`depth_verdicts`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from initlab.scaling.fits import CONFIDENCE, Fit, depth_law, fit, holm_distinct, series_key
from initlab.scaling.roles import LayerRoles, matched_rows

PRACTICAL_SLOPE = 0.1
"""The smallest |slope| flagged: width^0.1 is +26% over a tenfold width change."""
FAMILY_ERROR = 1 - CONFIDENCE
"""The family-wise error rate :func:`judge_family` keeps: the chance that a check flags any
fit whose true slope is 0."""
METRIC_WORDS = {
    "l1": "mean |output|",
    "std": "output std",
    "update": "update |ΔW·x|",
    "aligned": "aligned update",
    "aligned_out": "aligned output",
}


@dataclass(frozen=True)
class Verdict:
    """One fit: ``slope`` of log(metric) against ``axis`` with its 95% CI, and ``flagged``."""

    module: str
    step: int
    metric: str
    slope: float
    ci_low: float
    ci_high: float
    flagged: bool
    n: int
    axis: str = "width"
    at: int | None = None
    """The depth of a width fit (with ``--depths``), the width of a depth fit."""
    sentence: str = ""
    finite_width: bool = False
    """A fit that passes the flag rule while its layer's floor-free fit does not: it moves
    only through the random-alignment floor
    (:func:`initlab.scaling.evidence.explain_finite_width`); not flagged."""
    p_value: float = 1.0
    """Two-sided p-value of slope 0 (:func:`initlab.scaling.fits.fit`)."""
    p_adjusted: float = 1.0
    """``p_value`` Holm-adjusted over the check's family of fits (:func:`judge_family`);
    the fit's own ``p_value`` for a diagnostic (``aligned``) fit."""
    explained: str = ""
    """Why a fit that moves is not flagged nor inconclusive: muP's readout at init
    (:func:`explain_readout_init`) or a readout rescaled before the logits
    (:func:`initlab.scaling.evidence.explain_rescaled_readout`)."""
    law: str = ""
    """A depth fit's law (:data:`initlab.scaling.fits.LAWS`): ``exponential`` (``axis``
    ``depth``), ``power`` (``log_depth``), or ``undetermined`` (two depths fit both exactly);
    "" for width fits."""

    @property
    def direction(self) -> str:
        return "grows" if self.slope > 0 else "shrinks"

    def to_dict(self) -> dict:
        return asdict(self)


def is_flagged(slope: float, low: float, high: float) -> bool:
    """One fit on its own: CI excludes 0 and the slope is large enough to matter
    (:data:`PRACTICAL_SLOPE`). A check's verdicts use :func:`judge_family` instead."""
    return (low > 0 or high < 0) and abs(slope) >= PRACTICAL_SLOPE


def verdict(
    key: tuple[str, int, str], found: Fit, axis: str = "width", at: int | None = None
) -> Verdict:
    """The :class:`Verdict` of one fit of ``(module, step, metric)``, flagged by the
    one-fit rule (:func:`is_flagged`) until :func:`judge_family` judges it in its family."""
    module, step, metric = key
    return Verdict(
        module,
        int(step),
        metric,
        found.slope,
        found.ci_low,
        found.ci_high,
        is_flagged(found.slope, found.ci_low, found.ci_high),
        found.n,
        axis,
        at,
        p_value=found.p_value,
        p_adjusted=found.p_value,
    )


def judge_family(
    verdicts: list[Verdict], series: Sequence[Hashable] | None = None
) -> list[Verdict]:
    """Flag the fits of :data:`JUDGED` metrics as one family: ``flagged`` iff the Holm-adjusted
    p-value is below :data:`FAMILY_ERROR` and ``|slope| ≥`` :data:`PRACTICAL_SLOPE`. So a
    check of m hypotheses flags one that does not move with probability ≤ 5% in all, not 5%
    per fit (≈ 0.05·m false flags). ``series[k]`` (:func:`~initlab.scaling.fits.series_key`)
    says which fits are the same hypothesis: Holm runs over the distinct ones
    (:func:`~initlab.scaling.fits.holm_distinct`), so a series under two names (the logits'
    std and the readout's) is counted once. Diagnostic fits (``aligned``, ``aligned_out``)
    keep the one-fit rule, which
    :func:`initlab.scaling.evidence.explain_finite_width` reads."""
    family = [k for k, v in enumerate(verdicts) if v.metric in JUDGED]
    keys = family if series is None else [series[k] for k in family]
    adjusted = holm_distinct([verdicts[k].p_value for k in family], keys)
    out = list(verdicts)
    for k, p in zip(family, adjusted, strict=True):
        flag = p < FAMILY_ERROR and abs(out[k].slope) >= PRACTICAL_SLOPE
        out[k] = replace(out[k], flagged=flag, p_adjusted=p)
    return out


def width_verdicts(coords: pd.DataFrame) -> list[Verdict]:
    """One :class:`Verdict` per (depth, module, step, metric) fitted over widths, judged as
    one family (:func:`judge_family`)."""
    out, keys, several = [], [], coords["depth"].nunique() > 1
    for (depth, *key), rows in coords.groupby(["depth", "module", "step", "metric"], sort=False):
        x, y = np.log(rows["width"].to_numpy(float)), rows["value"].to_numpy(float)
        found = fit(x, y)
        if found is not None:
            out.append(verdict(tuple(key), found, at=int(depth) if several else None))
            keys.append(series_key(x, y))
    return judge_family(out, keys)


JUDGED = ("l1", "std", "update")
"""The metrics whose fits are verdicts (``aligned``/``aligned_out`` only explain them)."""


def depth_verdicts(
    coords: pd.DataFrame, roles: Mapping[int, LayerRoles] | None = None
) -> list[Verdict]:
    """One fit over depth per (width, module, step, metric), under the law that fits it
    (:func:`~initlab.scaling.fits.depth_law`), judged as one family (:func:`judge_family`:
    one hypothesis per distinct series, so neither a second law nor a second name for the
    same values counts twice); modules present at every depth only (``blocks.7`` does not
    exist at depth 2).
    ``roles`` (per depth, :mod:`initlab.scaling.roles`): match the readout across depths as
    ``(readout)`` and refuse names whose role changes; without it, names are matched as they
    are. Choosing the law by residual is close to choosing the larger |t| of the two, which
    raises the chance of a false flag a little (a flat series at depths 2–16, 3 seeds: 5.4%
    for a nominal 5%; ``tests/test_scaling_depth_law.py``)."""
    if coords["depth"].nunique() < 2:
        return []
    depths = coords["depth"].nunique()
    rows_of = coords if roles is None else matched_rows(coords, roles)
    out, keys = [], []
    for (width, *key), rows in rows_of.groupby(["width", "module", "step", "metric"], sort=False):
        if rows["depth"].nunique() < depths:
            continue
        d, y = rows["depth"].to_numpy(float), rows["value"].to_numpy(float)
        axis, law = depth_law(d, y)
        found = fit(d if axis == "depth" else np.log(d), y)
        if found is not None:
            out.append(replace(verdict(tuple(key), found, axis, int(width)), law=law))
            keys.append(series_key(d, y))
    return judge_family(out, keys)
