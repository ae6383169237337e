"""Did the trials learn anything to compare: the chance level and overfitting.

The trials rank candidates by their final validation loss (:mod:`initlab.doctor.verdict`).
Two cases make that ranking say little, and the verdict says so:

- **At chance.** Every candidate's mean *lowest* validation loss (each run's minimum over
  its epochs, averaged over runs) is no more than :data:`CHANCE_MARGIN` below the labels'
  entropy ``H = -Σ_c p_c log p_c`` (:func:`chance_loss`, the loss of predicting the label
  frequencies): none learned more than those frequencies at any point, so the trials
  compared the loss at init. The lowest, not the final, loss: a run that learned and then
  overfit ends above ``H`` though it learned.
- **Overfit.** Every candidate's mean final loss is more than :data:`OVERFIT_MARGIN` above
  its mean lowest loss: the runs passed over a small training set so many times that the
  validation loss rose again, and the final losses rank overfit models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from initlab.errors import option
from initlab.train.result import majority_baseline

CHANCE_MARGIN = 0.01
"""A mean lowest validation loss less than this fraction below the labels' entropy is at
chance (:func:`at_chance`)."""
OVERFIT_MARGIN = 0.1
"""A mean final validation loss more than this fraction above the candidate's mean lowest
one, and :data:`OVERFIT_FLOOR` nats above it, is overfit (:func:`overfit`)."""
OVERFIT_FLOOR = 0.05
"""The least rise, in nats, that counts: 0.020 → 0.025 is 25% of a loss near 0, and noise."""


def lowest_loss(epochs: Sequence[dict]) -> float:
    """The lowest validation loss over a run's epochs (NaN without a finite one)."""
    values = [e["val_loss"] for e in epochs if math.isfinite(e.get("val_loss", math.nan))]
    return float(min(values)) if values else math.nan


def chance_loss(labels: torch.Tensor) -> float:
    """The loss of predicting the training labels' frequencies for every example: their
    entropy ``-sum_c p_c log p_c`` in nats (class labels, or token targets without their
    padding); NaN for float targets (regression), which have no such level here."""
    if labels.is_floating_point():
        return math.nan
    return majority_baseline(labels).entropy


def _lowest(ranked: pd.DataFrame) -> pd.Series:
    """Each candidate's mean lowest loss; its final one where none was recorded."""
    return ranked["lowest"].fillna(ranked["final"]) if "lowest" in ranked else ranked["final"]


def at_chance(ranked: pd.DataFrame, chance: float) -> bool:
    """Whether every candidate that finished has a mean lowest validation loss no more than
    :data:`CHANCE_MARGIN` below ``chance`` (:func:`chance_loss`): none learned more than
    the labels' frequencies, so the trials compared little more than the loss at init."""
    lows = _lowest(ranked)[ranked["final"].notna()].dropna()
    return (
        math.isfinite(chance)
        and len(lows) > 0
        and bool((lows >= chance * (1 - CHANCE_MARGIN)).all())
    )


def overfit(ranked: pd.DataFrame) -> bool:
    """Whether every candidate that finished ends more than :data:`OVERFIT_MARGIN` (and
    :data:`OVERFIT_FLOOR` nats) above its own mean lowest validation loss."""
    both = ranked[["final"]].assign(lowest=_lowest(ranked)).dropna()
    rose = (both["final"] > both["lowest"] * (1 + OVERFIT_MARGIN)) & (
        both["final"] - both["lowest"] > OVERFIT_FLOOR
    )
    return len(both) > 0 and bool(rose.all())


def caveat(ranked: pd.DataFrame, chance: float) -> tuple[bool, bool, str]:
    """``(at_chance, overfit, text)``: the two checks and the sentence the verdict appends
    (starting ``; but``, ``""`` when neither holds; at chance is said first)."""
    if at_chance(ranked, chance):
        return True, False, (
            f"; but no candidate learned more than the labels' frequencies: every mean "
            f"validation loss stayed within {CHANCE_MARGIN:.0%} of {chance:.4g} or above it "
            "(their entropy, the loss of predicting those frequencies), so the trials "
            f"compared little more than the loss at init; a larger {option('--budget')}, or "
            f"another {option('--lr')} or {option('--optimizer')}, would show which init learns"
        )  # fmt: skip
    if overfit(ranked):
        return False, True, (
            f"; but every candidate overfit: its mean validation loss ended more than "
            f"{OVERFIT_MARGIN:.0%} above its lowest (see trials.csv), so the final losses "
            "rank overfit models; more training data, or a smaller "
            f"{option('--budget')} (fewer passes over it), compares the inits where they learn"
        )  # fmt: skip
    return False, False, ""
