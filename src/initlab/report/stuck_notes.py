"""The report's note under the summary for each group stuck in every run: its likely cause
(:func:`stuck_reasons`): a constant init's unbroken symmetry, the settings that differ from a
group where the same init learned, else the signal at init."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import pandas as pd

from initlab.ranking.scores import ACCURACY, Score
from initlab.report.tables import _finite


def stuck_reasons(
    ranked: pd.DataFrame, keys: Sequence[str], score: Score = ACCURACY, tracked: bool = False
) -> list[str]:
    """One line for each group whose every run was stuck (at chance, or at the mean for
    regression: :meth:`Score.stuck_phrase`), with its likely cause.

    A constant ``init`` (``zeros``, ``ones``, ``constant(...)``) gives a hidden layer's
    units equal weights: equal outputs, equal gradients, so the symmetry between them is
    never broken. Any other init is pointed to ``diagnose`` (a command the shell takes as
    it is: the spec quoted) and, when the runs recorded them (``tracked``), to the
    per-layer gradients."""
    lines = []
    records = ranked.to_dict("records")
    learned = {}  # init -> a group of it where some run learned (another lr, more epochs)
    for r in records:
        bad = sum(r.get(k, 0) for k in ("stuck", "diverged", "failed") if _finite(r.get(k, 0)))
        if "init" in keys and bad < r["runs"]:  # a run that neither stuck nor broke
            learned.setdefault(r.get("init"), r)
    for r in records:
        stuck = r.get("stuck", 0)
        if not (_finite(stuck) and 0 < stuck == r["runs"]):
            continue
        spec = r.get("init") if "init" in keys else None
        head = f"{r['group']}: every run {score.stuck_phrase()}."
        if spec in learned and len(keys) > 1 and not _constant(str(spec)):
            lines.append(f"{head} {_learned_elsewhere(r, learned[spec], keys)}")
            continue
        check = (
            f"initlab diagnose --init {shlex.quote(str(spec))}, given the runs' model and data "
            "(--model and --data, or --hidden and --activation for the built-in MLP),"
            if spec
            else ""
        )
        if spec and _constant(str(spec)):
            lines.append(
                f"{head} A constant init gives the units of a hidden layer identical weights: "
                "they compute the same function and, below the last hidden layer, receive the "
                "same gradient, so they stay copies of one unit: the symmetry is never broken "
                "(only the last hidden layer, fed distinct gradients by the random output "
                "layer, can drift apart, and it reads copies). With zeros the zero weights "
                "also block the gradient below the last hidden layer: with ReLU (ReLU'(0) = 0) "
                "no hidden weight moves; with tanh and two or more hidden layers (tanh(0) = 0 "
                f"feeds the last one) only its biases do. {check} shows it layer by layer."
            )
        else:
            look = [
                *(["the per-layer gradients below"] if tracked else []),
                *([check.rstrip(",")] if check else []),
            ]
            see = f": see {' and '.join(look)}" if look else ""
            lines.append(
                f"{head} The usual cause is the signal at init (vanishing or exploding through "
                f"depth, saturated or dead units){see}."
            )
    return lines


TRAINING_SETTINGS = frozenset(
    {
        "lr",
        "epochs",
        "optimizer",
        "momentum",
        "weight_decay",
        "batch_size",
        "lr_schedule",
        "warmup_steps",
        "clip_norm",
    }
)
"""Settings of how a model is trained, not of what is trained: an init stuck under one lr
and learning under another points to the lr."""


def _learned_elsewhere(stuck: dict, there: dict, keys: Sequence[str]) -> str:
    """Why a group is stuck when its init learned in the group ``there``: the grouping
    settings that differ, named with both values. Training settings alone (:data:`
    TRAINING_SETTINGS`) are the likely cause; a setting of the model or data (depth, batch
    norm, width) may be what the init cannot carry, as He et al. 2015's deep nets and the
    batch-norm study show, so the init is not cleared."""
    differ = [k for k in keys if k != "init" and str(stuck.get(k)) != str(there.get(k))]
    named = ", ".join(f"{k} {stuck.get(k)} here, {there.get(k)} there" for k in differ)
    said = f"The same init learned in {there['group']} ({named})"
    if set(differ) <= TRAINING_SETTINGS:
        return (
            f"{said}: the training settings, not the init, are the likely cause here; train "
            "longer or try another learning rate."
        )
    return (
        f"{said}: the init and these settings together are the cause, not the init alone: "
        "at another depth or width, or without batch norm, the same scale can let the signal "
        "vanish or explode through the layers (initlab diagnose with these settings shows "
        "where)."
    )


def _constant(spec: str) -> bool:
    """Whether ``spec`` parses to an initializer that fills every entry with one value."""
    from initlab.initializers import parse  # imports torch: only for a group stuck throughout
    from initlab.initializers.basic import Constant

    try:
        return isinstance(parse(spec).sampler, Constant)
    except Exception:  # 'default', a user's name: not a constant that initlab knows
        return False
