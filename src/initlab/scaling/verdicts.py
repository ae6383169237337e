"""Verdicts from coordinate data: the slope of log(metric) against log(width), with a CI.

For each (module, step, metric): the least-squares slope of ``log(value)`` on ``log(width)``
over every width and seed, its 95% CI and p-value from the seeds' spread at each width
(:func:`initlab.scaling.fits.fit`: Welch–Satterthwaite, since the log-noise differs between
widths). Values ≤ 0 or not finite are left out; a fit needs ≥ 3 values over ≥ 2 widths.
**Flagged** when its p-value, Holm-adjusted over every fit of the check that can be flagged
(:func:`judge_family`), is below 5% and ``|slope| ≥`` :data:`PRACTICAL_SLOPE` (a tenfold
width change then moves the metric by ≥ 26%). Over depth (``--depths``), the same against
depth and against log(depth), at each width, for layers matched by role
(:mod:`initlab.scaling.roles`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from initlab.scaling.fits import CONFIDENCE, MIN_VALUES, Fit, fit
from initlab.scaling.roles import READOUT, LayerRoles, matched_rows
from initlab.stats import holm_adjust

PRACTICAL_SLOPE = 0.1
"""The smallest |slope| flagged: width^0.1 is +26% over a tenfold width change."""
FAMILY_ERROR = 1 - CONFIDENCE
"""The family-wise error rate :func:`judge_family` keeps: the chance that a check flags any
fit whose true slope is 0."""
AXES = ("width", "depth", "log_depth")
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
    only through the random-alignment floor (:func:`explain_finite_width`); not flagged."""
    p_value: float = 1.0
    """Two-sided p-value of slope 0 (:func:`initlab.scaling.fits.fit`)."""
    p_adjusted: float = 1.0
    """``p_value`` Holm-adjusted over the check's family of fits (:func:`judge_family`);
    the fit's own ``p_value`` for a diagnostic (``aligned``) fit."""

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


def judge_family(verdicts: list[Verdict]) -> list[Verdict]:
    """Flag the fits of :data:`JUDGED` metrics as one family: ``flagged`` iff the Holm-adjusted
    p-value (:func:`initlab.stats.holm_adjust`, over all of them) is below
    :data:`FAMILY_ERROR` and ``|slope| ≥`` :data:`PRACTICAL_SLOPE`. So a check of m fits
    flags a fit that does not move with probability ≤ 5% in all, not 5% per fit (≈ 0.05·m
    false flags). Diagnostic fits (``aligned``, ``aligned_out``) keep the one-fit rule,
    which :func:`explain_finite_width` reads."""
    family = [k for k, v in enumerate(verdicts) if v.metric in JUDGED]
    adjusted = holm_adjust([verdicts[k].p_value for k in family])
    out = list(verdicts)
    for k, p in zip(family, adjusted, strict=True):
        flag = p < FAMILY_ERROR and abs(out[k].slope) >= PRACTICAL_SLOPE
        out[k] = replace(out[k], flagged=flag, p_adjusted=p)
    return out


def width_verdicts(coords: pd.DataFrame) -> list[Verdict]:
    """One :class:`Verdict` per (depth, module, step, metric) fitted over widths, judged as
    one family (:func:`judge_family`)."""
    out, several = [], coords["depth"].nunique() > 1
    for (depth, *key), rows in coords.groupby(["depth", "module", "step", "metric"], sort=False):
        found = fit(np.log(rows["width"].to_numpy(float)), rows["value"].to_numpy(float))
        if found is not None:
            out.append(verdict(tuple(key), found, at=int(depth) if several else None))
    return judge_family(out)


JUDGED = ("l1", "std", "update")
"""The metrics whose fits are verdicts (``aligned``/``aligned_out`` only explain them)."""


def not_judged(coords: pd.DataFrame) -> list[dict]:
    """The (depth, module, step, metric) width fits of :data:`JUDGED` metrics that could not
    be made, each ``{module, step, metric, at, n, reason}``: too few positive finite values
    (a diverged run's NaNs, zeros). A metric that is exactly 0 at every width and seed (a
    zero-initialized readout at step 0, a layer without gradient yet) does not move with width
    and is not listed."""
    out, several = [], coords["depth"].nunique() > 1
    rows_of = coords[coords["metric"].isin(JUDGED)]
    for (depth, module, step, metric), rows in rows_of.groupby(
        ["depth", "module", "step", "metric"], sort=False
    ):
        values = rows["value"].to_numpy(float)
        if (values == 0).all() or fit(np.log(rows["width"].to_numpy(float)), values):
            continue
        bad = int((~np.isfinite(values)).sum())
        usable = int((np.isfinite(values) & (values > 0)).sum())
        reason = (
            f"{bad} of {len(values)} values not finite (training diverged?)"
            if bad
            else f"{usable} of {len(values)} values positive, a fit needs {MIN_VALUES} "
            "over 2 widths"
        )
        at = int(depth) if several else None
        out.append(dict(module=module, step=int(step), metric=metric, at=at, reason=reason))
    return out


def depth_verdicts(
    coords: pd.DataFrame, roles: Mapping[int, LayerRoles] | None = None
) -> list[Verdict]:
    """Fits over depth (linear and log) per (width, module, step, metric), judged as one
    family (:func:`judge_family`); modules present at every depth only (``blocks.7`` does
    not exist at depth 2). ``roles`` (per depth, :mod:`initlab.scaling.roles`): match the
    readout across depths as ``(readout)`` and refuse names whose role changes; without it,
    names are matched as they are."""
    if coords["depth"].nunique() < 2:
        return []
    depths = coords["depth"].nunique()
    rows_of = coords if roles is None else matched_rows(coords, roles)
    out = []
    for (width, *key), rows in rows_of.groupby(["width", "module", "step", "metric"], sort=False):
        if rows["depth"].nunique() < depths:
            continue
        d = rows["depth"].to_numpy(float)
        for axis, x in (("depth", d), ("log_depth", np.log(d))):
            found = fit(x, rows["value"].to_numpy(float))
            if found is not None:
                out.append(verdict(tuple(key), found, axis, int(width)))
    return judge_family(out)


FLOOR_FREE = {"update": "aligned", "l1": "aligned_out", "std": "aligned_out"}
"""The metric whose fit says whether a fit of the key metric moves only through the
random-alignment floor."""


DIAGNOSTIC = frozenset(FLOOR_FREE.values())
"""Metrics that explain other fits and are never flagged themselves."""


def explain_finite_width(verdicts: list[Verdict]) -> list[Verdict]:
    """Unflag each flagged ``update`` fit whose layer's ``aligned`` fit (same axis,
    depth/width, module and step) says the slope is the floor's (:func:`floor_only`), and each
    flagged ``l1``/``std`` fit whose ``aligned_out`` fit (a zero-initialized readout) says so;
    mark them ``finite_width``. The aligned fits themselves are diagnostics:
    never flagged (the verdicts stay those of l1, std, update and the logits).

    ``update`` mixes the aligned part of ΔW·x with its random-alignment floor (see
    :func:`initlab.scaling.coords.aligned_update`); a zero-initialized readout's output is
    its accumulated update, the same mixture. Under every parametrization of
    docs/scaling.md §2 the floor's exponent is the aligned part's minus ½ (a width-sized
    fan_in) or equal to it (a finite fan_in), so it can only dilute a real exponent at small
    widths, never create one: a slope that the aligned part does not share is the floor
    fading, a finite-width effect."""
    fits = {(v.axis, v.at, v.module, v.step, v.metric): v for v in verdicts}
    out = []
    for v in verdicts:
        other = fits.get((v.axis, v.at, v.module, v.step, FLOOR_FREE.get(v.metric, "")))
        if v.flagged and other is not None and floor_only(v, other):
            v = replace(v, flagged=False, finite_width=True)
        elif v.metric in DIAGNOSTIC:
            v = replace(v, flagged=False)
        out.append(v)
    return out


def floor_only(fit: Verdict, aligned: Verdict) -> bool:
    """``fit``'s slope is not its aligned part's: the aligned fit would not be flagged, has
    every value ``fit`` has (none clamped to 0) and its 95% CI excludes ``fit``'s slope."""
    return (
        not aligned.flagged
        and aligned.n == fit.n
        and not aligned.ci_low <= fit.slope <= aligned.ci_high
    )


NAMES = {
    "sp": "SP",
    "ntk": "NTK",
    "mup": "muP",
    "default": "the factory's own init (default)",
    "sgd": "SGD",
    "adam": "Adam",
}
MUP_FIX = {
    ("input", "sgd"): "muP scales this layer's learning rate by width",
    ("input", "adam"): "muP keeps this layer's learning rate (η) and init",
    ("hidden", "sgd"): "muP keeps this layer's SGD learning rate (η) and scales the output "
    "layer's by 1/width",
    ("hidden", "adam"): "muP scales this layer's learning rate by 1/width",
    ("output", "sgd"): "muP scales this layer's learning rate by 1/width",
    ("output", "adam"): "muP scales this layer's learning rate by 1/width",
    ("logits", "sgd"): "muP scales the output layer's learning rate by 1/width and "
    "zero-initializes it",
    ("logits", "adam"): "muP scales the output layer's learning rate by 1/width and "
    "zero-initializes it",
}


def cause(
    verdict: Verdict, param: str, optimizer: str, kind: str, tie: str = "", attention: bool = False
) -> str:
    """Why a flagged module moves with width, and what muP does about it (``tie``: why its
    weight, shared with another layer, does not get its own rule; ``attention``: the model
    has attention, whose 1/d scale muP needs, :func:`initlab.scaling.coords.has_attention`)."""
    setting = f"under {NAMES.get(param, param)} with {NAMES.get(optimizer, optimizer)}"
    if tie:
        return f"{setting}, {tie}"
    if verdict.step == 0 and param == "default":
        return (
            "the factory's initialization (checked as built, --param default) has a scale "
            "that depends on width; variance ∝ 1/fan_in (SP, NTK, muP; muP's output layer: 0 "
            "or 1/fan_in²) keeps it flat"
        )
    if verdict.step == 0:
        return (
            f"the initialization's scale depends on width {setting}; muP initializes with "
            "variance ∝ 1/fan_in (the output layer: 0 or 1/fan_in²)"
        )
    if param == "mup":
        also = " and that attention uses 1/d" if attention else ""
        return (
            f"not expected {setting}: check the parameter kinds (`initlab scaling` prints "
            f"them){also}"
        )
    fix = MUP_FIX.get((kind, optimizer), "see docs/scaling.md for muP's rule")
    if verdict.slope > 0:
        return f"updates too large for this width {setting}; {fix}"
    return f"updates vanish as width grows {setting} (features stop learning); {fix}"


def sentence(
    verdict: Verdict, param: str, optimizer: str, kind: str, tie: str = "", attention: bool = False
) -> str:
    """ "`blocks.3.fc2` output grows as width^0.49 by step 3 (95% CI 0.41–0.57): ..."
    (:func:`cause` for ``tie`` and ``attention``)."""
    what = "logits std" if verdict.module == "(logits)" else METRIC_WORDS.get(verdict.metric)
    name = {"(logits)": "the model", READOUT: "the readout"}.get(
        verdict.module, f"`{verdict.module}`"
    )
    power = {
        "width": f"width^{verdict.slope:.2f}",
        "log_depth": f"depth^{verdict.slope:.2f}",
        "depth": f"exp({verdict.slope:.2f}·depth)",
    }[verdict.axis]
    where = (
        ""
        if verdict.at is None
        else (f" at width {verdict.at}" if verdict.axis != "width" else f" at depth {verdict.at}")
    )
    text = (
        f"{name} {what} {verdict.direction} as {power} by step "
        f"{verdict.step}{where} (95% CI {verdict.ci_low:.2f}–{verdict.ci_high:.2f})"
    )
    if verdict.axis != "width":
        return text
    return f"{text}: {cause(verdict, param, optimizer, kind, tie, attention)}"


def module_kind(module: str, kinds: dict[str, str]) -> str:
    """The kind of a traced module: its weight's (``logits`` for the model's output)."""
    if module == "(logits)":
        return "logits"
    return kinds.get(f"{module.split('[')[0]}.weight", "hidden")


def module_tie(module: str, ties: Mapping[str, str]) -> str:
    """Why ``module``'s weight does not get its own rule because it is tied ("" when it
    does); ``ties["(logits)"]`` for the logits."""
    if module == "(logits)":
        return ties.get(module, "")
    return ties.get(f"{module.split('[')[0]}.weight", "")


def with_sentences(
    verdicts: list[Verdict],
    param: str,
    optimizer: str,
    kinds: dict[str, str],
    ties: Mapping[str, str] | None = None,
    attention: bool = False,
) -> list[Verdict]:
    """The verdicts, the flagged ones with their sentence. ``ties``: parameter name → why it
    does not get its own module's rule (:func:`initlab.scaling.parametrize.tie_hint`), and
    ``"(logits)"`` → the same for a tied readout; ``attention``: whether the model has
    attention (only then do the sentences mention its 1/d scale)."""
    out, ties = [], dict(ties or {})
    for v in verdicts:
        text = ""
        if v.flagged:
            tie = module_tie(v.module, ties)
            kind = module_kind(v.module, kinds)
            text = sentence(v, param, optimizer, kind, tie, attention)
        out.append(replace(v, sentence=text))
    return out
