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
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from initlab.scaling.verdicts import JUDGED, Verdict

FLAT_BOUND = 0.5
"""A judged fit supports "nothing moves" only when its 95% CI lies inside ±FLAT_BOUND."""
BLOWUP_FACTOR = 100.0
"""A series whose median grows this many times (across widths or steps) has blown up."""


def inconclusive(verdicts: Iterable[Verdict], bound: float = FLAT_BOUND) -> list[Verdict]:
    """The judged width fits that neither flag nor bound the slope: not flagged, not
    finite-width, metric in :data:`~initlab.scaling.verdicts.JUDGED`, and a 95% CI
    ``[ci_low, ci_high]`` not inside ``(−bound, bound)``."""
    return [
        v
        for v in verdicts
        if v.axis == "width"
        and v.metric in JUDGED
        and not v.flagged
        and not v.finite_width
        and not (-bound < v.ci_low and v.ci_high < bound)
    ]


def _name(module: str) -> str:
    return "the model logits" if module == "(logits)" else f"`{module}`"


def inconclusive_line(fits: list[Verdict], shown: int = 3) -> str:
    """ "N fit(s) could not be told from a material slope (95% CI not within ±0.5: …); more
    seeds or widths" naming the ``shown`` widest CIs."""
    widest = sorted(fits, key=lambda v: -max(abs(v.ci_low), abs(v.ci_high)))[:shown]
    examples = "; ".join(
        f"{_name(v.module)} {v.metric} at step {v.step}"
        + ("" if v.at is None else f", depth {v.at}")
        + f" CI {v.ci_low:.2f}–{v.ci_high:.2f}"
        for v in widest
    )
    more = f"; … {len(fits) - shown} more" if len(fits) > shown else ""
    return (
        f"inconclusive: {len(fits)} fit(s) could not be told from a material slope (95% CI "
        f"not within ±{FLAT_BOUND:g}: {examples}{more}); more seeds (--seeds) or widths "
        "(--widths) narrow them"
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
    ``width`` at a ``step`` (``width`` None), or across ``step`` at a ``width`` (``step``
    None); ``at`` the depth when there are several; ``from``/``to`` the widths or steps."""
    rows = coords[coords["metric"].isin(JUDGED)]
    several = coords["depth"].nunique() > 1
    out = []
    for across, fixed in (("width", "step"), ("step", "width")):
        medians = _medians(rows, ["depth", "module", "metric", fixed, across])
        for (depth, module, metric, value), series in medians.groupby(level=[0, 1, 2, 3]):
            found = _growth(series.droplevel([0, 1, 2, 3]))
            if found is None:
                continue
            first, last, start, end = found
            out.append(
                {
                    "module": module,
                    "metric": metric,
                    "across": across,
                    "step": int(value) if fixed == "step" else None,
                    "width": int(value) if fixed == "width" else None,
                    "at": int(depth) if several else None,
                    "first": first,
                    "last": last,
                    "from": start,
                    "to": end,
                    "factor": last / first,
                }
            )
    return out


def blowup_line(found: list[dict]) -> str:
    """ "blow-up: N series grow ≥100-fold (… the largest); training diverged or the scale does
    not fit the width" naming the largest growth across widths and across steps."""
    parts = []
    for across in ("width", "step"):
        these = [b for b in found if b["across"] == across]
        if not these:
            continue
        b = max(these, key=lambda b: b["factor"])
        where = f"at step {b['step']}" if across == "width" else f"at width {b['width']}"
        depth = "" if b["at"] is None else f", depth {b['at']}"
        parts.append(
            f"{len(these)} across {across}s, the largest {_name(b['module'])} {b['metric']} "
            f"{where}{depth}: {b['first']:.3g} at {across} {b['from']} → {b['last']:.3g} at "
            f"{across} {b['to']} (×{b['factor']:.3g})"
        )
    return (
        f"blow-up: {len(found)} series grow ≥{BLOWUP_FACTOR:g}-fold ({'; '.join(parts)}): "
        "training diverged or a scale does not fit the width; lower --lr or check the "
        "parametrization"
    )
