"""How to give your own model the init that won a comparison, as its runs had it.

A compare run's init is more than its name: the output layer gets ``output_init``
(``glorot_uniform`` unless ``same``), biases the bias policy, and a residual rule or an
embedding scheme may follow. ``initlab.initialize(model, "he_normal")`` alone would put He on
the output layer too. :func:`apply_line` writes the call that reproduces the winning group's
runs, when there is a winner (:func:`~initlab.ranking.verdict.has_winner`: every other
group told apart from it, Holm-adjusted) and the groups differ only in such init settings.
"""

from __future__ import annotations

import pandas as pd

from initlab.ranking.verdict import has_winner
from initlab.results import ResultSet
from initlab.run_status import STUCK

DATA_DEPENDENT = ("lsuv",)
"""Inits that set the weights from a forward pass: the call needs ``data=``. A residual rule
needs it too: the runs found the branches of a model torch.fx cannot trace from a forward
pass on their inputs, and without ``data`` :func:`initlab.initialize` guesses them from the
module names (a different L, a different scale)."""
INIT_SETTINGS = ("init", "output_init", "bias", "residual_init", "embedding_init")
"""Grouping columns that are part of how a model is initialized (nothing else may differ)."""


def apply_line(results: ResultSet, ranked: pd.DataFrame | None = None) -> str:
    """``apply it as these runs did: initlab.initialize(model, 'he_normal', ...)`` for the
    winning group, or ``""`` (no single winner, or groups that differ in more than init);
    ``ranked``: ``results.ranking()`` when the caller has it already."""
    if not set(results.group_by) <= set(INIT_SETTINGS) or results.runs.empty:
        return ""
    ranked = results.ranking() if ranked is None else ranked
    if ranked["within"].nunique() > 1 or not has_winner(ranked):
        return ""  # no line without a verdict: all runs failed, a constant test set, a tie
    best = ranked.iloc[0]
    keys = dict(zip(results.group_by, (best[k] for k in results.group_by), strict=True))
    match = pd.Series(True, index=results.runs.index)
    for column, value in keys.items():  # None/NaN keys (an unused setting) match NaN
        cell = results.runs[column]
        match &= cell.isna() if pd.isna(value) else cell == value
    if not match.any() or (results.runs.loc[match, "status"] == STUCK).all():
        return ""  # a best group that learned nothing (every run of a study stuck) wins nothing
    run = results.runs[match].iloc[0]
    if run["init"] == "default" and _missing(run, "residual_init", "embedding_init"):
        return "keep the model as its factory built it (init 'default')"
    args = [repr(run["init"])]
    if (
        run["init"] != "default"
        and not _missing(run, "output_init")
        and run["output_init"] != "same"
    ):
        args.append(f"output_init={run['output_init']!r}")
    if run["init"] != "default" and not _missing(run, "bias"):
        args.append(f"bias={run['bias']!r}")
    if not _missing(run, "residual_init"):
        args.append(f"residual_init={run['residual_init']!r}")
    if not _missing(run, "embedding_init"):
        args.append(f"embedding_init={run['embedding_init']!r}")
    if run["init"] in DATA_DEPENDENT or not _missing(run, "residual_init"):
        args.append("data=a_batch_of_inputs")
    return f"apply it as these runs did: initlab.initialize(model, {', '.join(args)})"


def _missing(run: pd.Series, *names: str) -> bool:
    """Every one of ``names`` absent, empty or at its do-nothing value in ``run``."""
    quiet = {"none", "default", ""}
    return all(pd.isna(run.get(n)) or str(run.get(n)) in quiet for n in names)
