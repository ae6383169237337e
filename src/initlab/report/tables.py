"""The report's tables: ranked group summary, pairwise Welch tests, run list, failures.

Numbers come from :meth:`ResultSet.summary` and :mod:`initlab.ranking.stats`; the functions here
rank, compare and format them as display strings. ``score``
(:class:`~initlab.ranking.scores.Score`) names what ``test_accuracy`` holds (accuracy, R², token
accuracy); the ``stuck`` count is shown where the rule applies (classification and token
sequences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from initlab.curves import group_label
from initlab.ranking.groups import rank_within, without_unscored_ranks
from initlab.ranking.scores import ACCURACY, RESOLVED_TASK, Score, parted_by_stuck, ranking_metric
from initlab.ranking.stats import ALPHA, holm_adjust, pairwise_comparisons
from initlab.ranking.stats import group_label as stats_label
from initlab.run_status import DIVERGED, FAILED

MAX_ALL_PAIRS = 8
"""With more groups than this, each group is compared with the best-ranked one only."""
RUN_COLUMNS = (
    "seed",
    "status",
    "test_accuracy",
    "final_train_loss",
    "final_val_accuracy",
    "epochs_done",
    "train_seconds",
    "message",
)


def ranked_summary(
    summary: pd.DataFrame, runs: pd.DataFrame, group_by: Sequence[str], within: Sequence[str] = ()
) -> pd.DataFrame:
    """``summary`` in the order of :func:`initlab.ranking.stats.rank_groups` (best mean test
    accuracy first, or lowest test loss for sequence runs; groups without a finite accuracy
    last, unranked: ``rank`` ``<NA>``, see :func:`initlab.ranking.groups.without_unscored_ranks`)
    with ``rank``, ``group`` (a label), ``p_vs_best``, ``p_holm`` and ``tied_with_best``
    (Welch's test against the best group, Holm-adjusted over every pair of groups) added; runs
    on different data are ranked apart, one partition after the other, and so are the values
    of the ``within`` columns (:func:`initlab.ranking.groups.rank_within`; its ``within``
    column names the partition), ranks restarting at 1."""
    keys = list(group_by)
    if summary.empty:
        return summary.assign(rank=[], group=[], p_vs_best=[], p_holm=[], tied_with_best=[])
    ranking = rank_within(runs, keys, alpha=ALPHA, within=within)
    ranking = ranking[["rank", *keys, "n", "p_vs_best", "p_holm", "tied_with_best", "within"]]
    ranked = ranking.merge(summary, on=keys, how="inner", sort=False)
    labels = ranked[keys].itertuples(index=False, name=None)
    ranked.insert(1, "group", [group_label(k, keys) for k in labels])
    ranked["rank"] = ranked.groupby("within", sort=False).cumcount() + 1
    return without_unscored_ranks(ranked).drop(columns=["n"]).reset_index(drop=True)


def loss_ranked(ranked: pd.DataFrame, score: Score) -> bool:
    """Whether ``ranked`` (:func:`ranked_summary`) is ranked by test loss: sequence runs
    (:attr:`Score.by_loss`) whose summary has their ``test_loss``, as
    :func:`~initlab.ranking.scores.ranking_metric` ranks them then."""
    return score.by_loss and "test_loss" in ranked


def summary_table(ranked: pd.DataFrame, score: Score = ACCURACY) -> pd.DataFrame:
    """:func:`ranked_summary` as display strings: mean ± std, the CI's bounds, counts; each
    group's task when the runs mix tasks; ``stuck`` only where the rule applies. Ranked by
    test loss (:func:`loss_ranked`), the test loss comes first and the 95% CI is its own
    (cut at 0); else the score's (cut to the values it can take)."""
    by_loss = loss_ranked(ranked, score)
    rows = []
    for r in ranked.to_dict("records"):
        task = {"task": r[RESOLVED_TASK]} if RESOLVED_TASK in r else {}
        rows.append(
            {
                "rank": "—" if pd.isna(r["rank"]) else str(r["rank"]),
                "group": r["group"],
                **task,
                "runs": str(r["runs"]),
                **_score_cells(r, score, by_loss),
                "final train loss": _num(r["final_train_loss"]),
                "epochs to 90%": _epochs(r["epochs_to_90"]),
                "worse than best?": _vs_best(r["rank"], r["p_holm"], r["tied_with_best"], score),
                "diverged": str(r["diverged"]),
                "stuck": str(r["stuck"]),
                "failed": str(r["failed"]),
            }
        )
    frame = pd.DataFrame(rows)
    return frame if score.stuck_applies else frame.drop(columns=["stuck"], errors="ignore")


def _score_cells(r: dict, score: Score, by_loss: bool) -> dict[str, str]:
    """A summary row's score columns: ``test accuracy (mean ± std)`` and its ``95% CI``
    (``mean ± ci95``), then ``test loss (mean ± std)`` where the row has one; ``by_loss``:
    the test loss and its own ``95% CI`` (``test_loss ± test_loss_ci95``) first."""
    scored = {f"{score.name()} (mean ± std)": _pm(r["test_accuracy"], r["test_accuracy_std"])}
    if by_loss:
        mean, ci = r["test_loss"], r.get("test_loss_ci95", math.nan)
        return {
            "test loss (mean ± std)": _pm(mean, r["test_loss_std"]),
            "95% CI": _interval(*Score.clip(mean - ci, mean + ci, score.ranked_range())),
            **scored,
        }
    mean, ci = r["test_accuracy"], r["ci95"]
    scored["95% CI"] = _interval(*Score.clip(mean - ci, mean + ci, score.score_range()))
    if "test_loss" in r:
        scored["test loss (mean ± std)"] = _pm(r["test_loss"], r["test_loss_std"])
    return scored


def group_accuracies(
    runs: pd.DataFrame,
    group_by: Sequence[str],
    order: Sequence[str],
    column: str = "test_accuracy",
) -> dict[str, list[float]]:
    """Finite test accuracies (or another run ``column``: ``test_loss``) of each group's
    runs, keyed by label in ``order``."""
    values: dict[str, list[float]] = {label: [] for label in order}
    for key, group in runs.groupby(list(group_by), sort=False, dropna=False):
        accuracy = pd.to_numeric(group[column], errors="coerce")
        values.setdefault(group_label(key, group_by), []).extend(
            float(a) for a in accuracy if math.isfinite(a)
        )
    return values


def pairwise_table(
    runs: pd.DataFrame, group_by: Sequence[str], ranked: pd.DataFrame, score: Score = ACCURACY
) -> tuple[pd.DataFrame, tuple[int, ...]]:
    """Every pair of groups (best-ranked first) from
    :func:`initlab.ranking.stats.pairwise_comparisons` as display strings, and the rows whose
    Holm-adjusted p < :data:`~initlab.ranking.stats.ALPHA` (to highlight).

    Columns: the two groups, the difference of mean test scores (A − B) with its Welch
    95% interval, the two-sided Welch p-value, its Holm adjustment, and ``Holm p < 0.05``.
    Pairs are formed and adjusted within each partition of ``ranked`` (:func:`family_pairs`),
    as the summary's "worse than best?" is, over every pair (the same adjusted p in both
    tables); with more than :data:`MAX_ALL_PAIRS` groups in a partition only the pairs with
    its best are listed.
    """
    keys = list(group_by)
    order = {k: i for i, k in enumerate(ranked[keys].itertuples(index=False, name=None))}
    position = [order.get(k, len(order)) for k in runs[keys].itertuples(index=False, name=None)]
    by_rank = runs.iloc[np.argsort(position, kind="stable")]
    metric, _ = ranking_metric(runs)
    pairs = family_pairs(pairwise_comparisons(by_rank, keys, metric), ranked, keys)
    compared = score.ranked_name().removeprefix("test ")
    label = {stats_label(k): group_label(k, keys) for k in order}
    low, high = score.ranked_range()  # a difference of two such values lies within ±(high - low)
    span = (-(high - low), high - low)
    rows, strong = [], []
    for i, pair in enumerate(pairs.to_dict("records")):
        p, holm = pair["p_value"], pair["p_holm"]
        if _finite(holm) and holm < ALPHA:
            strong.append(i)
        rows.append(
            {
                "group A": label.get(pair["group_a"], pair["group_a"]),
                "group B": label.get(pair["group_b"], pair["group_b"]),
                f"Δ {compared} (A − B)": _signed(pair["diff"]),
                "Δ 95% CI (Welch)": _interval(
                    *Score.clip(pair["diff_low"], pair["diff_high"], span), True
                ),
                "p (Welch)": _p(p),
                "p (Holm)": _p(pair["p_holm"]),
                f"Holm p < {ALPHA:g}": "n/a"
                if not _finite(holm)
                else ("yes" if holm < ALPHA else "no"),
            }
        )
    return pd.DataFrame(rows), tuple(strong)


def _partition(ranked: pd.DataFrame) -> pd.Series:
    """Each ranked group's partition label (its ``within``; ``""`` when ranked as one)."""
    return ranked["within"] if "within" in ranked else pd.Series("", index=ranked.index)


def family_pairs(pairs: pd.DataFrame, ranked: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The ``pairs`` tested in the report, one family per partition of ``ranked`` (its
    ``within`` column: one dataset, task or ``--within`` value), families in ranked order:
    pairs of groups of the same partition only; of a partition of more than
    :data:`MAX_ALL_PAIRS` groups only those with its best group (ranked first, so it is
    ``group_a``); ``p_holm`` adjusted over every pair of the partition, as the summary's
    (:func:`initlab.ranking.stats.rank_groups`) is, whichever are listed."""
    if pairs.empty:
        return pairs
    labels = ranked[keys].itertuples(index=False, name=None)
    parts = _partition(ranked)
    part = {stats_label(k): w for k, w in zip(labels, parts, strict=True)}
    families = []
    for name, size in parts.value_counts(sort=False).items():
        family = pairs[pairs["group_a"].map(part).eq(name) & pairs["group_b"].map(part).eq(name)]
        family = family.assign(p_holm=holm_adjust(family["p_value"].tolist()))
        if size > MAX_ALL_PAIRS and len(family):
            family = family[family["group_a"] == family["group_a"].iloc[0]]
        families.append(family)
    return pd.concat(families, ignore_index=True)


def family_note(ranked: pd.DataFrame) -> str:
    """Which pairs :func:`family_pairs` lists and adjusts together, in words, when that is
    not simply every pair (``""`` then)."""
    parts = _partition(ranked)
    sizes = parts.value_counts(sort=False)
    if len(sizes) == 1:
        if sizes.iloc[0] <= MAX_ALL_PAIRS:
            return ""
        pairs = len(ranked) * (len(ranked) - 1) // 2
        return (
            f"{len(ranked)} groups: each is listed against the best, its p Holm-adjusted over "
            f"all {pairs} pairs, as the summary's 'worse than best?' is."
        )
    many = (
        f"; where there are more than {MAX_ALL_PAIRS} groups, each with the best there only"
        if sizes.max() > MAX_ALL_PAIRS
        else ""
    )
    return (
        f"Groups are compared within each of {len(sizes)} partitions "
        f"({', '.join(map(str, sizes.index))}){many}; Holm-adjusted within each."
    )


def runs_table(
    runs: pd.DataFrame,
    group_by: Sequence[str],
    *,
    with_task: bool = False,
    with_loss: bool = False,
) -> pd.DataFrame:
    """One row per run: id, grouping columns, seed, status, metrics, message (as strings);
    with ``with_task``, the task each run trained for after its grouping columns; with
    ``with_loss`` (sequence runs), ``test_loss`` after ``test_accuracy``."""
    task = [RESOLVED_TASK] if with_task else []
    metrics = list(RUN_COLUMNS)
    if with_loss:
        metrics.insert(metrics.index("test_accuracy") + 1, "test_loss")
    columns = [c for c in ("run_id", *group_by, *task, *metrics) if c in runs]
    shown = runs[list(dict.fromkeys(columns))].copy()
    for column in shown:
        shown[column] = shown[column].map(_cell)
    return shown.reset_index(drop=True)


def failures_table(runs: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame:
    """The runs that diverged or failed, with their messages."""
    if runs.empty or "status" not in runs:
        return pd.DataFrame()
    bad = runs[runs["status"].isin([DIVERGED, FAILED])]
    columns = [c for c in ("run_id", *group_by, "seed", "status", "epochs_done", "message")]
    return runs_table(bad[[c for c in dict.fromkeys(columns) if c in bad]], group_by)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _signed(value: float) -> str:
    return "—" if not _finite(value) else f"{value:+.4f}"


def _interval(low: float, high: float, signed: bool = False) -> str:
    if not (_finite(low) and _finite(high)):
        return "—"
    return f"[{low:+.4f}, {high:+.4f}]" if signed else f"[{low:.4f}, {high:.4f}]"


def _vs_best(rank: int, p: float, tied: bool, score: Score) -> str:
    if pd.isna(rank):
        return "n/a"
    if rank == 1:
        return "best"
    if not _finite(p):
        return "n/a"
    if parted_by_stuck(tied, p, ALPHA):
        return f"yes: {score.stuck_phrase()} (p = {_p(p)})"
    return f"{'undecided' if tied else 'yes'} (p = {_p(p)})"


def _pm(mean: float, std: float) -> str:
    if not _finite(mean):
        return "—"
    return f"{mean:.4f}" if not _finite(std) else f"{mean:.4f} ± {std:.4f}"


def _num(value: float) -> str:
    return "—" if not _finite(value) else f"{value:.4f}"


def _epochs(value: float) -> str:
    return "never" if not _finite(value) else f"{value:g}"


def _p(p: float) -> str:
    if not _finite(p):
        return "—"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"
