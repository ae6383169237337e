"""The results in the terminal, as ``initlab compare``, ``initlab sweep`` and
``initlab results`` print them: the summary per group, each group's first error, the
ranking, its legend and the verdict.

Apart from :mod:`initlab.sweep.ui` (which runs a study, then prints this): reading and
printing a stored study imports no torch and no training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from initlab.console import print_frame
from initlab.errors import some_names
from initlab.ranking.groups import partitions
from initlab.ranking.reach import reach_legend
from initlab.ranking.scores import Score, parted_by_stuck
from initlab.ranking.stats import ALPHA, group_label
from initlab.ranking.summary_format import format_summary
from initlab.results import ResultSet
from initlab.run_status import FAILED
from initlab.task_names import CLASSIFICATION, SCORES
from initlab.winner import apply_line

if TYPE_CHECKING:
    from rich.console import Console


def print_results(results: ResultSet, console: Console, title: str) -> None:
    """The summary per group (mean ± std over seeds, flags) and the ranking. The runs' tasks
    name the score (:attr:`ResultSet.score`: accuracy, R², token accuracy), also in
    ``title`` where it says ``test accuracy``; the ``stuck`` rule of each task."""
    summary = results.summary()
    progress = getattr(results, "progress", "")
    if summary.empty:
        console.print("no finished runs yet")
        if progress:
            console.print(progress, soft_wrap=True, markup=False, highlight=False)
        return
    score = results.score
    title = title.replace(SCORES[CLASSIFICATION], score.name())
    print_frame(format_summary(summary), console, title=title)
    if progress:
        console.print(progress, soft_wrap=True, markup=False, highlight=False)
    errors = failure_lines(results.runs, results.group_by)
    if errors:
        console.print("failed runs (each group's first error):")
    for line in errors:
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    stuck = f"{score.stuck_rule()}; " if score.stuck_applies else ""
    console.print(
        f"{score.column_note()}{score.loss_note()}mean ± std over seeds. epochs_to_90: "
        f"{reach_legend(results.reaches_by_loss())} (never: not by the last "
        "epoch, or no run of the group learned). "
        f"{stuck}diverged: loss became NaN/inf."
    )
    print_ranking(results, console, score)


def print_ranking(results: ResultSet, console: Console, score: Score) -> None:
    """The ranking table(s) — one per dataset or task when the runs span several
    (:func:`initlab.ranking.groups.partitions`) — their legend and the verdict; for a single group
    only a verdict saying why it has no score (R² undefined), if it is so."""
    ranked = results.ranking()
    if len(ranked) <= 1:
        if said := results.verdict():
            console.print(said, soft_wrap=True, markup=False, highlight=False)
        return
    parts = partitions(results.runs, results.group_by, results.within)
    scores = {label: Score.of_runs(runs) for label, runs in parts}
    for within, part in ranked.groupby("within", sort=False):
        name = scores.get(within, score).ranked_name()
        title = f"ranking by {name}" + (f" within {within}" if within else "")
        limits = scores.get(within, score).ranked_range()
        print_frame(ranking_table(part, name, limits), console, title=title)
    stuck = f"; stuck: worse, {score.stuck_phrase()} in every run while no run of the best is"
    stuck = stuck if score.stuck_applies else ""
    apart = " Runs on different data are ranked apart." if ranked["within"].nunique() > 1 else ""
    if results.within and ranked["within"].nunique() > 1:
        apart = f" Groups are ranked and tested within each {', '.join(results.within)}."
    console.print(
        "95% CI: Student t over seeds, cut to the values the score can take. p vs best: "
        "Welch's t-test against rank 1, Holm-adjusted over every pair of groups; vs best: "
        "worse where p < 0.05, undecided where p >= 0.05 (the seeds cannot tell it from the "
        f"best, which does not show it is as good){stuck}.{apart}"
    )
    console.print(results.verdict(), soft_wrap=True, markup=False, highlight=False)
    if line := apply_line(results, ranked):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def ranking_table(
    ranked: pd.DataFrame,
    score: str = SCORES[CLASSIFICATION],
    limits: tuple[float, float] = (0.0, 1.0),
) -> pd.DataFrame:
    """:func:`initlab.ranking.stats.rank_groups`'s table formatted for display; ``score`` names the
    ranked column: its mean and 95% interval, cut to ``limits``, the values it can take
    (:meth:`initlab.ranking.scores.Score.ranked_range`; the summary's ± is the std)."""
    if ranked.empty:
        return ranked
    accuracy = zip(ranked["mean"], ranked["ci"], strict=True)
    return pd.DataFrame(
        {
            "rank": ["—" if pd.isna(r) else str(r) for r in ranked["rank"]],
            "group": ranked["group"],
            f"{score} (mean [95% CI])": [_mean_ci(m, c, limits) for m, c in accuracy],
            "seeds": [f"{n}/{r}" for n, r in zip(ranked["n"], ranked["runs"], strict=True)],
            "p vs best": ["" if p != p else f"{p:.3g}" for p in ranked["p_holm"]],
            "vs best": [
                _vs_best(r, t, p)
                for r, t, p in zip(
                    ranked["rank"], ranked["tied_with_best"], ranked["p_holm"], strict=True
                )
            ],
        }
    )


def _vs_best(rank: object, tied: bool, p: float) -> str:
    """The ranking's ``vs best`` cell: ``best`` for rank 1, ``undecided`` when the seeds
    cannot tell the group from the best, ``stuck`` when only the stuck rule parts them
    (:func:`initlab.ranking.scores.stuck_not_tied`), ``worse`` when Welch's test does, ``''``
    untested (fewer than two finite scores)."""
    if pd.isna(rank):
        return ""
    if rank == 1:
        return "best"
    if tied:
        return "undecided"
    if parted_by_stuck(tied, p, ALPHA):
        return "stuck"
    return "worse" if p == p else ""


def _mean_ci(mean: float, ci: float, limits: tuple[float, float]) -> str:
    if mean != mean:
        return "—"
    if ci != ci:
        return f"{mean:.4f}"
    low, high = Score.clip(mean - ci, mean + ci, limits)
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def failure_lines(runs: pd.DataFrame, group_by: Sequence[str], width: int = 160) -> list[str]:
    """One line per distinct error of the ``failed`` runs, first seen first: ``default,
    zeros: RuntimeError: bad batch`` (the groups it failed, each group's first error only;
    the message's first line, cut to ``width`` characters with ``…``)."""
    if runs.empty or "status" not in runs or "message" not in runs:
        return []
    keys = [k for k in group_by if k in runs]
    failed = runs[runs["status"] == FAILED]
    by_message: dict[str, list[str]] = {}
    for key, group in failed.groupby(keys, sort=False, dropna=False) if keys else []:
        text = next((str(m) for m in group["message"] if isinstance(m, str) and m), "")
        line = text.strip().splitlines()[0] if text.strip() else "(no message)"
        line = line if len(line) <= width else line[: width - 1] + "…"
        by_message.setdefault(line, []).append(group_label(key))
    return [f"{some_names(groups)}: {line}" for line, groups in by_message.items()]
