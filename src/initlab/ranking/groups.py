"""Ranking comparable runs: which runs may be ranked together, and their ranking.

Runs on different data or tasks are not one scale: :func:`partitions` splits them, and
:func:`rank_within` ranks each part by its :func:`~initlab.ranking.scores.ranking_metric` (test
accuracy or R², higher first; test loss for sequence runs, lower first) with Welch's test
against the best and Holm's adjustment (:func:`initlab.ranking.stats.rank_groups`); its ``metric``
column names the run column ranked, which ``mean`` and the interval are of.
:func:`part_verdict` says what a part's ranking supports
(:func:`initlab.ranking.verdict.verdict`). :class:`initlab.results.ResultSet` and the
report use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

import initlab.curves as curves
from initlab.ranking.scores import Score, ranking_metric, run_tasks, stuck_groups, stuck_not_tied
from initlab.ranking.stats import group_label, rank_groups
from initlab.ranking.verdict import verdict
from initlab.run_status import DIVERGED, FAILED, OK, STUCK
from initlab.task_names import REGRESSION

DATA_COLUMNS = ("dataset", "task")
"""Grouping columns that change what a score means: groups that differ in them are ranked
and tested apart (:func:`partitions`)."""


def partitions(
    runs: pd.DataFrame, group_by: Sequence[str], within: Sequence[str] = ()
) -> list[tuple[str, pd.DataFrame]]:
    """The sets of runs whose scores can be compared, labelled, in order of appearance: one
    per value of the grouping's :data:`DATA_COLUMNS` and ``within`` columns when they have
    several (accuracies on two datasets, or an accuracy and an R², are not one scale; the
    user's ``within``: inits compared at each width), else one per task when the runs mix
    tasks, else ``[("", runs)]``."""
    keys = [k for k in group_by if (k in DATA_COLUMNS or k in within) and k in runs]
    if keys and runs.groupby(keys, sort=False, dropna=False).ngroups > 1:
        parts = runs.groupby(keys, sort=False, dropna=False)
        return [(curves.group_label(key, keys), part) for key, part in parts]
    tasks = run_tasks(runs)
    if tasks.nunique() > 1:
        return [(task, runs[tasks == task]) for task in dict.fromkeys(tasks)]
    return [("", runs)]


def rank_within(
    runs: pd.DataFrame, group_by: Sequence[str], alpha: float = 0.05, within: Sequence[str] = ()
) -> pd.DataFrame:
    """:func:`initlab.ranking.stats.rank_groups` of each of the :func:`partitions`, one after the
    other, with their label in a ``within`` column (``""`` for one): ranks restart at 1, and
    each group is tested against the best of its own partition only."""
    ranked = [
        _ranked(part, group_by, alpha).assign(within=label)
        for label, part in partitions(runs, group_by, within)
    ]
    return pd.concat(ranked, ignore_index=True)


def _ranked(runs: pd.DataFrame, group_by: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """:func:`initlab.ranking.stats.rank_groups` of comparable runs by their
    :func:`~initlab.ranking.scores.ranking_metric`, groups stuck at chance apart
    (:func:`~initlab.ranking.scores.stuck_not_tied`) and ranked after a group of one run that
    scored better (:func:`~initlab.ranking.scores.stuck_groups`), with a ``metric`` column before
    ``mean`` naming the run column ranked (``test_loss``, lower first, or
    ``test_accuracy``): the column that ``mean``, ``std`` and the interval are of."""
    metric, higher = ranking_metric(runs)
    stuck = stuck_groups(runs, list(group_by))
    ranked = rank_groups(runs, group_by, metric, higher, alpha, stuck=stuck)
    if "mean" in ranked:
        ranked.insert(int(ranked.columns.get_loc("mean")), "metric", metric)
    return stuck_not_tied(ranked, runs, list(group_by))


def part_verdict(runs: pd.DataFrame, group_by: Sequence[str], unfinished: bool = False) -> str:
    """The verdict on comparable runs: why no run has a score though some finished
    (:func:`undefined_scores`, also for a single group), else
    :func:`initlab.ranking.verdict.verdict` (the winner, ties and the seeds to separate
    them; with the statuses of the runs without a score, to say why the best two lack two
    scores each; ``unfinished``: the study has runs still to train)."""
    if undefined := undefined_scores(runs):
        return f"no verdict: {undefined}"
    ranked = without_unscored_ranks(_ranked(runs, group_by))
    if not _constant(ranked) and (nothing := nothing_learned(runs, group_by)):
        return nothing
    lost = {
        group_label(key): [s for s in group["status"] if s in (DIVERGED, FAILED)]
        for key, group in runs.groupby(list(group_by), sort=False, dropna=False)
    } if "status" in runs else {}  # fmt: skip
    stuck = Score.of_runs(runs).stuck_phrase()
    said = verdict(ranked, lost=lost, unfinished=unfinished, stuck_phrase=stuck)
    return said + mostly_stuck(runs) if said.startswith("no winner") else said


def mostly_stuck(runs: pd.DataFrame) -> str:
    """``; but 7 of the 9 finished runs are stuck at chance …`` (at the mean, for
    regression: :meth:`~initlab.ranking.scores.Score.stuck_phrase`) when more than half of the
    finished runs are ``stuck``: the seeds a verdict asks for would mostly add runs that
    learned nothing; ``""`` otherwise."""
    if "status" not in runs:
        return ""
    finished = runs["status"][runs["status"].isin((OK, STUCK))]
    stuck = int((finished == STUCK).sum())
    if not len(finished) or 2 * stuck <= len(finished):
        return ""
    return (
        f"; but {stuck} of the {len(finished)} finished runs are "
        f"{Score.of_runs(runs).stuck_phrase()}: train "
        "longer (more epochs) or try another learning rate or optimizer before adding seeds"
    )


def _constant(ranked: pd.DataFrame) -> bool:
    """Whether the best two groups have two scores each and every one of them the same
    value per group (Welch's test undefined): a test set too small to tell, which the
    verdict says, is the likelier cause than "nothing learned"."""
    if len(ranked) < 2 or (ranked["n"].iloc[:2] < 2).any():
        return False
    return bool(pd.isna(ranked["p_vs_best"].iloc[1]))


def nothing_learned(runs: pd.DataFrame, group_by: Sequence[str]) -> str:
    """``no winner: none of the 8 finished runs learned …`` when two or more groups have
    finished runs and every one of them is ``stuck`` at chance: ranking chance-level scores,
    or asking for more seeds to separate them, says nothing about the inits. ``""``
    otherwise."""
    if "status" not in runs or runs.groupby(list(group_by), dropna=False).ngroups < 2:
        return ""
    finished = runs["status"][runs["status"].isin((OK, STUCK))]
    if finished.empty or not (finished == STUCK).all():
        return ""
    return (
        f"no winner: none of the {len(finished)} finished runs learned (each is "
        f"{Score.of_runs(runs).stuck_phrase()}, see the stuck rule); more seeds will not "
        "change that: train longer "
        "(more epochs), or try another learning rate or optimizer"
    )


def undefined_scores(runs: pd.DataFrame) -> str:
    """``R² undefined: the test targets are constant`` when no run has a finite score and
    some regression run finished (``ok``): R² = 1 − SSE/SST has SST = 0; ``""`` otherwise
    (scores to rank, or only diverged/failed runs, which the verdict names)."""
    if "status" not in runs or "test_accuracy" not in runs:
        return ""
    scores = pd.to_numeric(runs["test_accuracy"], errors="coerce")
    if scores.notna().any():
        return ""
    finished = runs["status"].isin((OK, STUCK)) & (run_tasks(runs) == REGRESSION)
    return "R² undefined: the test targets are constant" if finished.any() else ""


def without_unscored_ranks(ranked: pd.DataFrame) -> pd.DataFrame:
    """``ranked`` (:func:`initlab.ranking.stats.rank_groups`) with no rank, and never tied with the
    best, for the groups without a single finite score (every run diverged or failed):
    there is nothing to rank them by. Their ``rank`` is ``<NA>`` (an ``Int64`` column)."""
    unscored = ranked["n"] == 0 if "n" in ranked else pd.Series(False, index=ranked.index)
    if not unscored.any():
        return ranked
    ranked = ranked.copy()
    ranked["rank"] = ranked["rank"].astype("Int64").mask(unscored)
    ranked["tied_with_best"] = ranked["tied_with_best"].astype(bool) & ~unscored
    return ranked
