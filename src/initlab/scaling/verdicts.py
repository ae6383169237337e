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

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from initlab.errors import option
from initlab.scaling.fits import CONFIDENCE, Fit, depth_law, fit, holm_distinct, series_key
from initlab.scaling.mup_rules import MUP_FIX, MUP_KEEPS, MUP_LOWERS, NAMES
from initlab.scaling.roles import READOUT, LayerRoles, matched_rows

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


def cause(
    verdict: Verdict, param: str, optimizer: str, kind: str, tie: str = "", attention: bool = False
) -> str:
    """Why a flagged module moves with width, and what muP does about it (``tie``: why its
    weight, shared with another layer, does not get its own rule; ``attention``: the model
    has attention, whose 1/d scale muP needs, :func:`initlab.scaling.coords.has_attention`)."""
    setting = f"under {NAMES.get(param, param)} with {NAMES.get(optimizer, optimizer)}"
    if tie:
        return f"{setting}, {tie}"
    if readout_shrinks_at_init(verdict, kind):
        return readout_init_cause(verdict, param, setting)
    if verdict.step == 0 and param == "default":
        return (
            f"the factory's initialization (checked as built, {option('--param default')}) has "
            "a scale that depends on width; variance ∝ 1/fan_in (SP, NTK, muP; muP's output "
            "layer: 0 or 1/fan_in²) keeps it flat"
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
            f"them){also}, and whether the factory applies muP itself (multipliers, a 1/width "
            f"readout: muP twice; check it as built with {option('--param default')})"
        )
    fix = MUP_FIX.get((kind, optimizer), "see docs/scaling.md for muP's rule")
    if verdict.slope > 0:
        return f"updates too large for this width {setting}; {fix}"
    if verdict.metric != "update":  # a size, not the update: the init may still dominate it
        return (
            f"its size shrinks as width grows {setting}: the init's scale carried forward "
            "(compare its step-0 fit) or updates too small to move it"
        )
    if (kind, optimizer) in MUP_LOWERS:  # muP's rule lowers this layer's rate: no cure
        fix = "muP lowers this layer's learning rate, so that is not the cure; check its inputs"
    elif (kind, optimizer) in MUP_KEEPS:  # muP does here what this run did
        fix = f"{fix}, as this run did: an effect of other layers, not this one's rule"
    return f"updates vanish as width grows {setting} (features stop learning); {fix}"


MUP_READOUT_SLOPE = -0.5
"""muP's readout init (variance ≤ 1/fan_in², Tensor Programs V Table 3, or 0) makes the
readout's output at init shrink as width^s with s ≤ −½: fan_in terms of variance ≤ 1/fan_in²
on O(1) inputs sum to a variance ≤ 1/fan_in (SP's 1/fan_in: s = 0). A fit whose 95% CI
reaches ``MUP_READOUT_SLOPE + PRACTICAL_SLOPE`` is read as within it (slopes within
:data:`PRACTICAL_SLOPE` are finite-width corrections)."""


MUP_READOUT_INIT = "muP's readout init (variance ≤ 1/fan_in²)"
"""The ``explained`` of a fit :func:`explain_readout_init` unflags."""


def within_mup_readout(verdict: Verdict) -> bool:
    """The fit shrinks (95% CI below 0) and its CI reaches muP's readout law
    (:data:`MUP_READOUT_SLOPE`, up to :data:`PRACTICAL_SLOPE`)."""
    return verdict.ci_high < 0 and verdict.ci_low <= MUP_READOUT_SLOPE + PRACTICAL_SLOPE


def readout_shrinks_at_init(verdict: Verdict, kind: str) -> bool:
    """A width fit of an output layer's (or the logits') size at step 0 whose slope is < 0:
    what muP's readout init does (:data:`MUP_READOUT_SLOPE`), not a growing init."""
    return (
        verdict.axis == "width"
        and verdict.step == 0
        and verdict.slope < 0
        and verdict.metric in ("l1", "std")
        and kind in ("output", "logits")
    )


def readout_init_cause(verdict: Verdict, param: str, setting: str) -> str:
    """The sentence of an output layer (or the logits) shrinking at init: muP-compatible when
    its 95% CI reaches muP's law (:func:`within_mup_readout`: its variance can be
    ≤ 1/fan_in²), else between SP's law (flat) and muP's."""
    who = (
        f"the factory's output layer (checked as built, {option('--param default')})"
        if param == "default"
        else f"the output layer's init {setting}"
    )
    if within_mup_readout(verdict):
        flat = "; SP's and NTK's 1/fan_in would keep it flat" if param != "mup" else ""
        return (
            f"{who} shrinks with width as muP's readout does (variance ≤ 1/fan_in², or 0; "
            f"or its output scaled by 1/width in the forward): muP-compatible, not a "
            f"defect{flat}"
        )
    return (
        f"{who} shrinks faster than SP's 1/fan_in (flat) and more slowly than muP's readout "
        "(variance ≤ 1/fan_in²: width^−½ or steeper), so it follows neither; muP "
        "zero-initializes the output layer or gives it variance 1/fan_in²"
    )


def explain_readout_init(
    verdicts: list[Verdict], param: str, kinds: Mapping[str, str]
) -> list[Verdict]:
    """Under muP, or for the factory's own init (``default``: the model as its author built
    it, a muP readout being a deliberate choice), mark each output layer (or logits) fit
    that shrinks at init within muP's rule (:func:`readout_shrinks_at_init`,
    :func:`within_mup_readout`) ``explained``, not flagged: muP allows any readout variance
    ≤ 1/fan_in², so its output may vanish with width at step 0 (the updates make the logits
    Θ(1) after it). Under SP and NTK, which initlab applied itself, they stay flagged, with
    a sentence saying that they are muP-compatible (:func:`readout_init_cause`)."""
    if param not in ("mup", "default"):
        return verdicts
    out = []
    for v in verdicts:
        kind = module_kind(v.module, kinds)
        if readout_shrinks_at_init(v, kind) and within_mup_readout(v):
            v = replace(v, flagged=False, explained=MUP_READOUT_INIT)
        out.append(v)
    return out


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
        return f"{text}: {law_words(verdict)}"
    return f"{text}: {cause(verdict, param, optimizer, kind, tie, attention)}"


def law_words(verdict: Verdict) -> str:
    """What a depth fit's law says (mean-field theory, docs/theory.md): an exponential in
    depth is a network off criticality (ordered: decays; chaotic or exploding: grows), a
    power of depth what critical initializations give."""
    if verdict.law == "undetermined":
        return "two depths cannot tell an exponential from a power of depth (add a depth)"
    if verdict.law == "power":
        return (
            "a power of depth fits better than an exponential: polynomial, as at criticality "
            "(the edge of chaos, or residual branches scaled with depth)"
        )
    factor = math.exp(verdict.slope)
    side = "ordered side: it vanishes" if verdict.slope < 0 else "chaotic or exploding side"
    return (
        f"an exponential in depth fits better than a power (×{factor:.2f} per unit of depth): "
        f"off criticality, on the {side} (mean-field theory, docs/theory.md)"
    )


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
