"""How much a check's verdicts can say: inconclusive fits and blow-ups.

A fit that is not flagged has not shown that nothing moves: with two widths and two seeds a
slope's 95% CI can be 0.2–1.9, which no multiple-testing rule flags and which no one should
read as flat. So the coordinate check says "nothing moves with width" only when every judged
fit **bounds** its slope near 0 (docs/scaling.md §3):

- a judged width fit (``l1``, ``std``, ``update`` and the logits; not flagged, not explained
  as finite width) is **inconclusive** when its 95% CI is not inside
  ``(−FLAT_BOUND, +FLAT_BOUND)``, ``FLAT_BOUND = ½``: the smallest nonzero exponent that a
  wrong parametrization gives a layer in §2's table (NTK's ±½; SP's +½ and +1). A CI inside
  ±½ rules every one of them out at 95%; ``width^½`` is ×3.2 over a tenfold width change.
- a series **blows up** when the median over seeds of a judged metric grows at least
  ``BLOWUP_FACTOR = 100``-fold (two orders of magnitude): from the smallest to the largest
  width at one step (``across="width"``), or from its first positive step to the last one at
  one width (``across="step"``, training diverging). A blow-up is reported whether or not its
  fit could be made or flagged.
- a fit that moves only through the random-alignment floor (:func:`explain_finite_width`) is
  not flagged, and marked ``finite_width``;
- a width fit that **could not be made** (:func:`not_judged`: a diverged run's NaNs, too few
  positive values) is listed, never counted as a pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pandas as pd

from initlab.errors import option
from initlab.scaling.fits import MIN_VALUES, PER_X_VALUES, fit
from initlab.scaling.verdicts import JUDGED, Verdict

FLAT_BOUND = 0.5
"""A judged fit supports "nothing moves" only when its 95% CI lies inside ±FLAT_BOUND."""
BLOWUP_FACTOR = 100.0
"""A series whose median grows this many times (across widths or steps) has blown up."""


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


def readout_scale(
    coords: pd.DataFrame, readout: str | None, depth: int | None = None
) -> pd.Series | None:
    """How the model's forward rescales its readout's output before returning it: per width,
    the median over depths, seeds and steps of ``std(logits) / std(readout output)``, when
    that ratio is not exactly 1 everywhere (a ``MuReadout``-style ``head(x) * base/width``:
    ``base/width``); ``None`` when the readout's output is the model's (a reshape keeps its
    std), or the readout is unknown. The readout's last call is the one compared; ``depth``:
    at that depth only (the readout's name can change with depth)."""
    if readout is None:
        return None
    std = coords[(coords["metric"] == "std") & ((coords["depth"] == depth) | (depth is None))]
    calls = [m for m in dict.fromkeys(std["module"]) if m.split("[")[0] == readout]
    if not calls:
        return None
    key = ["depth", "width", "seed", "step"]
    mine = std[std["module"] == calls[-1]].set_index(key)["value"]
    logits = std[std["module"] == "(logits)"].set_index(key)["value"]
    both = pd.concat([mine, logits], axis=1, keys=["readout", "logits"], join="inner")
    if both.empty or (both["readout"] == both["logits"]).all():
        return None
    return (both["logits"] / both["readout"]).groupby(level="width").median()


def explain_rescaled_readout(
    verdicts: list[Verdict], scale: pd.Series | None, readout: str | None, depth: int | None
) -> list[Verdict]:
    """When the forward rescales the readout's output (``scale``, :func:`readout_scale`),
    the readout's own width fits say nothing about the logits: its raw update under a
    ``head(x) * base/width`` grows as width^1 with Adam at lr η, which is right, since the
    logits' is width^0. Those fits are then not flagged (``explained``); the logits' fits
    (module ``(logits)``) judge the readout. ``depth``: the depth ``scale`` was measured at
    (width fits at other depths are left as they are)."""
    if scale is None or readout is None:
        return verdicts
    why = f"`{readout}`'s output is rescaled before the logits: the logits' fits judge it"
    return [
        replace(v, flagged=False, explained=why, sentence="")
        if v.axis == "width"
        and v.metric in JUDGED
        and v.module.split("[")[0] == readout
        and v.at in (None, depth)
        else v
        for v in verdicts
    ]


def rescaled_note(readout: str, scale: pd.Series) -> str:
    """The line saying that the readout's output is rescaled before the logits, by how much
    at the smallest and largest widths, and what that means for its verdicts."""
    first, last = scale.index[0], scale.index[-1]
    return (
        f"the model's forward rescales `{readout}`'s output before returning it (logits std / "
        f"its std: ×{scale.iloc[0]:.3g} at width {first}, ×{scale.iloc[-1]:.3g} at width "
        f"{last}): `{readout}`'s own fits are not flagged and the model logits' fits judge the "
        f"readout (a MuReadout-style multiplier; under {option('--param mup')} it adds to "
        "muP's own readout rule, zero init and lr η/width)"
    )


def inconclusive(verdicts: Iterable[Verdict], bound: float = FLAT_BOUND) -> list[Verdict]:
    """The judged width fits that neither flag nor bound the slope: not flagged, not
    finite-width, not ``explained`` (muP's readout at init, a rescaled readout), metric in
    :data:`~initlab.scaling.verdicts.JUDGED`, and a 95% CI ``[ci_low, ci_high]`` not inside
    ``(−bound, bound)``."""
    return [
        v
        for v in verdicts
        if v.axis == "width"
        and v.metric in JUDGED
        and not v.flagged
        and not v.finite_width
        and not v.explained
        and not (-bound < v.ci_low and v.ci_high < bound)
    ]


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


def _name(module: str) -> str:
    return "the model logits" if module == "(logits)" else f"`{module}`"


def inconclusive_line(fits: list[Verdict], shown: int = 3) -> str:
    """ "N fit(s) neither flagged nor shown flat (…: 95% CI not within ±0.5: …); more seeds
    or widths" naming the ``shown`` widest CIs. Neither "a slope may be material" alone: a
    CI entirely past +0.5 is not flagged when the family's Holm adjustment (over every fit)
    leaves its p at 0.05 or more."""
    widest = sorted(fits, key=lambda v: -max(abs(v.ci_low), abs(v.ci_high)))[:shown]
    examples = "; ".join(
        f"{_name(v.module)} {v.metric} at step {v.step}"
        + ("" if v.at is None else f", depth {v.at}")
        + f" CI {v.ci_low:.2f}–{v.ci_high:.2f}"
        for v in widest
    )
    more = f"; … {len(fits) - shown} more" if len(fits) > shown else ""
    return (
        f"inconclusive: {len(fits)} fit(s) neither flagged (Holm-adjusted p < 0.05 over all "
        f"the fits) nor shown flat (95% CI within ±{FLAT_BOUND:g}): {examples}{more}; more "
        f"seeds ({option('--seeds')}) or widths ({option('--widths')}) narrow them"
    )


def _medians(rows: pd.DataFrame, by: list[str]) -> pd.Series:
    """Median over seeds of the positive finite values, per ``by``."""
    ok = rows[np.isfinite(rows["value"]) & (rows["value"] > 0)]
    return ok.groupby(by, sort=True)["value"].median()


def _growth(series: pd.Series) -> tuple[float, float, int, int] | None:
    """``(first, last, at_first, at_last)`` of a series indexed by width or step, when its
    last value is at least :data:`BLOWUP_FACTOR` times its first."""
    if len(series) < 2:
        return None
    first, last = float(series.iloc[0]), float(series.iloc[-1])
    if last < BLOWUP_FACTOR * first:
        return None
    return first, last, int(series.index[0]), int(series.index[-1])


def blowups(coords: pd.DataFrame) -> list[dict]:
    """Every judged series that grows ≥ :data:`BLOWUP_FACTOR`-fold (module docstring), as
    ``{module, metric, across, step, width, at, first, last, from, to, factor}``: across
    ``width`` at a ``step`` (``width`` None), across ``step`` at a ``width`` (``step``
    None), or, with several depths, across ``depth`` at a ``width`` and ``step``
    (:data:`ACROSS`); ``at`` the depth when there are several; ``from``/``to`` the widths,
    steps or depths."""
    rows = coords[coords["metric"].isin(JUDGED)]
    several = coords["depth"].nunique() > 1
    out = []
    for across, (kept, fixed) in ACROSS.items():
        if across == "depth" and not several:
            continue
        medians = _medians(rows, [kept, "module", "metric", fixed, across])
        for (held, module, metric, value), series in medians.groupby(level=[0, 1, 2, 3]):
            found = _growth(series.droplevel([0, 1, 2, 3]))
            if found is None:
                continue
            first, last, start, end = found
            at = {kept: int(held), fixed: int(value)}
            out.append(
                {
                    "module": module,
                    "metric": metric,
                    "across": across,
                    "step": at.get("step"),
                    "width": at.get("width"),
                    "at": at.get("depth") if several else None,
                    "first": first,
                    "last": last,
                    "from": start,
                    "to": end,
                    "factor": last / first,
                }
            )
    return out


ACROSS = {"width": ("depth", "step"), "step": ("depth", "width"), "depth": ("width", "step")}
"""What a series grows across → the two coordinates held fixed. Across depths only the
modules every depth has are compared (the input layer, the readout, the logits): growth
there is the signal propagation's, not training's."""


def blowup_line(found: list[dict]) -> str:
    """ "blow-up: N series grow ≥100-fold (… the largest); training diverged or the scale does
    not fit the width" naming the largest growth across widths and across steps."""
    parts = []
    for across in ACROSS:
        these = [b for b in found if b["across"] == across]
        if not these:
            continue
        b = max(these, key=lambda b: b["factor"])
        where = ", ".join(f"at {k} {b[k]}" for k in ("step", "width") if b[k] is not None)
        depth = "" if b["at"] is None or across == "depth" else f", depth {b['at']}"
        parts.append(
            f"{len(these)} across {across}s, the largest {_name(b['module'])} {b['metric']} "
            f"{where}{depth}: {b['first']:.3g} at {across} {b['from']} → {b['last']:.3g} at "
            f"{across} {b['to']} (×{b['factor']:.3g})"
        )
    return (
        f"blow-up: {len(found)} series grow ≥{BLOWUP_FACTOR:g}-fold ({'; '.join(parts)}): "
        f"training diverged or a scale does not fit the width; lower {option('--lr')} or check "
        "the parametrization"
        + (
            "; across depths: the signal grows with depth (residual branches without "
            "1/sqrt(depth) scaling or norms? docs/residual.md)"
            if any(b["across"] == "depth" for b in found)
            else ""
        )
    )


def seed_pooling_note(seeds: int) -> list[str]:
    """One line when there are too few seeds for every width to have its own noise in the
    fits (:data:`~initlab.scaling.fits.PER_X_VALUES`)."""
    if seeds >= PER_X_VALUES:
        return []
    return [
        f"with {seeds} seed(s) the fits take one seed noise for every width (pooled least "
        f"squares); {option(f'--seeds {PER_X_VALUES}')} or more gives each width its own, "
        "which a noisier small width needs (docs/scaling.md §3)"
    ]


def finite_width_note(count: int) -> str:
    """The line saying how many ``update`` fits were left unflagged as finite-width."""
    return (
        f"{count} fit(s) of updates (or of a zero-initialized readout's output) move with "
        "width only through the random-alignment floor of ΔW·x (∝ width^−½ under muP) while "
        "their aligned part does not: finite width, not flagged (docs/scaling.md §6)"
    )


def readout_init_note(count: int) -> str:
    """The line saying how many fits of the output layer (or logits) shrink at init as
    muP's readout rule allows, and were therefore not flagged."""
    return (
        f"{count} fit(s) of the output layer (or the logits) shrink with width at step 0 as "
        "muP's readout init allows (variance ≤ 1/fan_in², or 0): expected, not flagged "
        "(docs/scaling.md §3)"
    )
