"""``epochs_to_90``: the first epoch at which a group's mean validation curve comes near the
best group's final value, one target for every group (:func:`reach_threshold`).

A score (accuracy, R²; token accuracy where sequence runs are ranked by it) has a natural
zero, and the target is 90% of the best final mean validation score ``S*``:
:func:`reach_target`, ``S* - 0.1 |S*|`` (``1.1 × S*`` for a negative ``S*``, an R² still below
0 early in a regression).

A loss has no such zero: 1.1 × the lowest final validation loss can lie above the loss of a
model that learned nothing (a user's sequence runs: 1.1 × 3.233 = 3.556 nats, above the test
tokens' unigram entropy of 3.17), so groups stuck at the unigram level "reached" it at their
first epoch. Runs ranked by test loss (sequences,
:meth:`initlab.results.ResultSet.reaches_by_loss`) wait instead until their mean validation
loss has come :data:`REACH_FRACTION` (90%) of the way down from where the groups started to
where the best one ended: :func:`reach_loss_target`, ``L* + 0.1 (L0 - L*)``, with ``L*`` the
lowest finite final mean validation loss of any group and ``L0`` the lowest finite
first-epoch mean validation loss of any group (at least ``L*``). Where a group learned
nothing, ``L0`` is at most its loss, near the targets' entropy, and the target lies 90% of
the way from there to the best; a group that starts far higher (an exploding init) does not
loosen it, as the highest start did (25 nats put it at 5.02, above every curve). A group
whose every run is stuck, diverged or failed reaches neither target
(:func:`epochs_to_target`).
"""

from __future__ import annotations

import math

import pandas as pd

from initlab.ranking.stats import first_epoch_reaching
from initlab.run_status import DIVERGED, FAILED, STUCK

REACH_FRACTION = 0.9
"""How near the best ``epochs_to_90`` waits for: 90% of the best final mean validation score,
or 90% of the way from the lowest first-epoch mean validation loss down to the lowest final
one (see the module docstring)."""

Curves = dict[tuple, pd.Series]
"""Each group's mean validation curve over seeds (key → values indexed by epoch)."""


def reach_target(best: float) -> float:
    """``best - (1 - REACH_FRACTION) |best|``: the score ``epochs_to_90`` waits for."""
    return best - (1 - REACH_FRACTION) * abs(best)


def reach_loss_target(best: float, start: float) -> float:
    """``start - REACH_FRACTION (start - best) = best + (1 - REACH_FRACTION)(start - best)``:
    the validation loss ``epochs_to_90`` waits for where runs are ranked by loss, lower first
    (``best``: the lowest final mean validation loss ``L*``; ``start``: the lowest first-epoch
    one ``L0``). ``start <= best`` (every group's loss rose) gives a target at or below
    ``best``, reached only by a curve that was lower before it rose."""
    return best + (1 - REACH_FRACTION) * (start - best)


def reach_legend(by_loss: bool = False) -> str:
    """What ``epochs_to_90`` counts, for a table's legend: ``first epoch whose mean
    validation score comes within 10% of the best group's final one``; for runs ranked by
    loss (``by_loss``: :meth:`initlab.results.ResultSet.reaches_by_loss`) the validation
    loss's form (:func:`reach_loss_target`)."""
    if by_loss:
        rest = f"{1 - REACH_FRACTION:.2g}"
        return (
            f"first epoch whose mean validation loss has come {REACH_FRACTION:.0%} of the way "
            "down from the lowest first-epoch mean validation loss of any group (L0) to the "
            f"best (lowest) group's final one (L*), i.e. is at most L* + {rest} × (L0 − L*)"
        )
    return (
        f"first epoch whose mean validation score comes within {1 - REACH_FRACTION:.0%} of "
        "the best group's final one"
    )


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def reach_threshold(curves: Curves, by_loss: bool) -> float:
    """What ``epochs_to_90`` waits for: :func:`reach_target` of the best final mean
    validation score (0: none), or :func:`reach_loss_target` of the lowest finite final mean
    validation loss and the lowest finite first-epoch one, at least the former (NaN: none; a
    diverged group's inf is neither). Each curve's epochs in order
    (:meth:`pandas.Series.sort_index`)."""
    ordered = [c.sort_index() for c in curves.values() if len(c)]
    finals = [float(c.iloc[-1]) for c in ordered]
    if not by_loss:
        return reach_target(max(finals, default=0))
    ends, starts = _finite(finals), _finite([float(c.iloc[0]) for c in ordered])
    if not ends or not starts:
        return math.nan
    return reach_loss_target(min(ends), max(min(starts), min(ends)))


def epochs_to_target(
    group: pd.DataFrame, curve: pd.Series, target: float, by_loss: bool = False
) -> float:
    """``epochs_to_90`` of one group: the first epoch of ``curve`` (its mean validation
    curve) at or above ``target``, at or below it with ``by_loss`` (a loss); NaN ("never")
    when it never gets there, or when no run of the group learned (each stuck at chance,
    diverged or failed) even if its curve touches the target: every group at chance would
    otherwise "reach" 90% of a best that is itself chance."""
    if "status" in group and group["status"].isin((STUCK, DIVERGED, FAILED)).all():
        return math.nan
    curve = curve.sort_index()
    if by_loss:
        return first_epoch_reaching(-curve, -target) if math.isfinite(target) else math.nan
    return first_epoch_reaching(curve, target) if target else math.nan
