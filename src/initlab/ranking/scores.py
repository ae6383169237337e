"""What a set of runs' score is called: their resolved tasks name it.

A run's ``test_accuracy`` (and its epochs' ``val_accuracy``/``train_accuracy``) hold the
score of the task it trained for (:data:`initlab.task_names.SCORES`): accuracy for
classification, R² for regression, token accuracy for sequences. The results store records
each run's resolved task (``resolved_task``). A run without one (recorded before the column
existed, or read from an older ``summary.csv``) takes its config's ``task``; ``auto`` there
reads as classification, as it did before other tasks existed.

:class:`Score` names the score of a set of runs for tables, legends and figures, and says
whether the ``stuck`` rule (accuracy not above the majority class's share of the test
labels, or token accuracy the most frequent token's, with a loss not below the labels'
entropy; R² not significantly above 0: :func:`initlab.train.result.final_status`)
applies: to every task.
``initlab compare/sweep/results`` (:mod:`initlab.results_console`), ``initlab report``
(:mod:`initlab.report`) and :class:`~initlab.results.ResultSet` use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from initlab.ranking.stats import group_label
from initlab.run_status import OK, STUCK, STUCK_R2_RULE, STUCK_RULE, STUCK_TASKS, STUCK_TOKEN_RULE
from initlab.task_names import CLASSIFICATION, REGRESSION, SCORES, SEQUENCE, TASKS

RESOLVED_TASK = "resolved_task"
"""The run column holding the task a run trained for (see the module docstring)."""
MIXED_SCORE = "score"
"""The score's name when the runs mix tasks (``test score``)."""


def run_task(recorded: object, configured: object) -> str:
    """One run's task: the ``recorded`` (resolved) one, else the ``configured`` one unless it
    is ``auto`` or unknown, else classification."""
    for task in (recorded, configured):
        if isinstance(task, str) and task in TASKS:
            return task
    return CLASSIFICATION


def run_tasks(runs: pd.DataFrame) -> pd.Series:
    """Each run's task (:func:`run_task` of its ``resolved_task`` and ``task`` columns)."""
    empty = pd.Series(None, index=runs.index, dtype=object)
    recorded = runs.get(RESOLVED_TASK, empty)
    configured = runs.get("task", empty)
    tasks = [run_task(r, c) for r, c in zip(recorded, configured, strict=True)]
    return pd.Series(tasks, index=runs.index, dtype=object)


@dataclass(frozen=True)
class Score:
    """The score of runs of ``tasks`` (distinct, in the order of :data:`TASKS`)."""

    tasks: tuple[str, ...] = (CLASSIFICATION,)

    @classmethod
    def of(cls, tasks: Iterable[str]) -> Score:
        """The score of runs with these tasks (classification when there are none)."""
        order = {task: i for i, task in enumerate(TASKS)}
        distinct = tuple(sorted(set(tasks), key=lambda t: (order.get(t, len(order)), t)))
        return cls(distinct or (CLASSIFICATION,))

    @classmethod
    def of_runs(cls, runs: pd.DataFrame) -> Score:
        """The score of a run table (:func:`run_tasks`)."""
        return cls.of(run_tasks(runs))

    @property
    def mixed(self) -> bool:
        """Whether the runs have more than one task (their scores differ)."""
        return len(self.tasks) > 1

    def name(self, split: str = "test") -> str:
        """``test accuracy``, ``test R²``, ``validation token accuracy``; ``test score`` for
        mixed tasks; without ``split`` the bare name (``accuracy``, ``R²``, ``score``)."""
        bare = MIXED_SCORE if self.mixed else SCORES[self.tasks[0]].removeprefix("test ")
        return f"{split} {bare}" if split else bare

    def per_task(self) -> str:
        """``test R²``, or for mixed tasks each one's: ``each task's score (classification:
        test accuracy, regression: test R²)``."""
        if not self.mixed:
            return self.name()
        named = ", ".join(f"{task}: {SCORES[task]}" for task in self.tasks)
        return f"each task's score ({named})"

    def holds(self) -> str:
        """``test_accuracy holds the test R²`` (or each task's score, for mixed tasks)."""
        return f"test_accuracy holds {'' if self.mixed else 'the '}{self.per_task()}"

    @property
    def stuck_applies(self) -> bool:
        """Whether any run can be ``stuck`` (no better than a constant prediction: every
        known task has the rule, :func:`initlab.train.result.final_status`)."""
        return any(task in STUCK_TASKS for task in self.tasks)

    def stuck_phrase(self) -> str:
        """How a ``stuck`` run is described: ``stuck at chance`` (classification, sequences),
        ``stuck at the mean`` (regression: R² not significantly above 0, no better than
        predicting the targets' mean), ``stuck at chance or the mean`` when the runs mix
        both kinds."""
        kinds = [
            "the mean" if task == REGRESSION else "chance"
            for task in self.tasks
            if task in STUCK_TASKS
        ]
        return "stuck at " + " or ".join(dict.fromkeys(sorted(kinds)) or ["chance"])

    def stuck_rule(self) -> str:
        """``stuck: test accuracy not above the majority-class share of the test labels
        (one-sided binomial test, p ≥ 0.05)`` (:data:`~initlab.run_status.STUCK_RULE`,
        its token form for sequences; each task's rule named when they mix; ``""`` when no
        run can be stuck)."""
        rules = {CLASSIFICATION: STUCK_RULE, SEQUENCE: STUCK_TOKEN_RULE, REGRESSION: STUCK_R2_RULE}
        said = [(task, rules[task]) for task in self.tasks if task in rules]
        if len(said) == 1 and not self.mixed:
            return f"stuck: {said[0][1]}"
        return "; ".join(f"stuck ({task} runs): {rule}" for task, rule in said)

    @property
    def by_loss(self) -> bool:
        """Whether these runs are ranked by test loss, lower first: sequence runs. Token
        accuracy counts only whether the top token is right; a language model's loss (and
        perplexity, ``exp(loss)``) is what it is trained and judged on, and two inits can
        differ 3-fold in perplexity at the same token accuracy."""
        return self.tasks == (SEQUENCE,)

    def ranked_name(self) -> str:
        """The name of what ranks these runs: ``test loss`` for sequences, else :meth:`name`."""
        return LOSS_NAME if self.by_loss else self.name()

    def loss_note(self) -> str:
        """The legend of the loss columns shown for sequence runs (``""`` without any)."""
        if SEQUENCE not in self.tasks:
            return ""
        ranked = " (what ranks them)" if self.by_loss else ""
        return f"test_loss: mean cross-entropy per token{ranked}, perplexity: exp(test_loss). "

    @property
    def bounded(self) -> bool:
        """Whether every score lies in [0, 1] (accuracies do; R² can be any negative)."""
        return REGRESSION not in self.tasks

    def score_range(self) -> tuple[float, float]:
        """The values the score can take: ``(0, 1)`` for accuracies, ``(-inf, 1)`` with R²."""
        return (0.0 if self.bounded else -math.inf), 1.0

    def ranked_range(self) -> tuple[float, float]:
        """The values of what ranks the runs (:meth:`ranked_name`): a loss ``(0, inf)``,
        else :meth:`score_range`."""
        return (0.0, math.inf) if self.by_loss else self.score_range()

    @staticmethod
    def clip(low: float, high: float, limits: tuple[float, float]) -> tuple[float, float]:
        """An interval cut to ``limits``: Student's t from two or three seeds reaches past
        the values a score can take (an accuracy's ``[0.9452, 1.0468]``)."""
        return max(low, limits[0]), min(high, limits[1])

    def column_note(self) -> str:
        """What the ``test_accuracy`` column holds, opening a legend: ``test accuracy: `` for
        classification, else ``test_accuracy: test R², ``."""
        if self.tasks == (CLASSIFICATION,):
            return f"{self.name()}: "
        return f"test_accuracy: {self.per_task()}, "


LOSS_NAME = "test loss"


def ranking_metric(runs: pd.DataFrame) -> tuple[str, bool]:
    """``(column, higher_is_better)`` that ranks ``runs``: ``("test_loss", False)`` for
    sequence runs (:attr:`Score.by_loss`) that recorded it, else ``("test_accuracy", True)``."""
    if Score.of_runs(runs).by_loss and "test_loss" in runs:
        return "test_loss", False
    return "test_accuracy", True


ACCURACY = Score()
"""The score of classification runs: test accuracy (the default wherever none is given)."""


def stuck_not_tied(ranked: pd.DataFrame, runs: pd.DataFrame, group_by: list[str]) -> pd.DataFrame:
    """``ranked`` (:func:`initlab.ranking.stats.rank_groups` of ``runs``) with ``tied_with_best``
    false for every group all of whose runs are ``stuck`` (at chance) while none of the best
    group's is: with two seeds, zeros at 0.10 against He at 0.89 is Welch p = 0.09 after
    Holm, "cannot be told from the best", yet its runs were each tested at chance already.
    A best group stuck in some of its runs has not shown that it learns: Welch's test alone
    decides then. A regression group is parted only when every run's R² is at most 0 (no
    better than the mean at all): a run of R² 0.09 whose test could not tell it from the
    mean is no evidence against a group of 0.07 that passed it. And only when every run of
    the best group scored better than every run of the stuck one (the most extreme outcome
    of a rank test): 47, 49 and 51 right of 360 against a stuck 45, 46 and 47 is a run's
    test passed just above the line and failed just below it, not a group that learned
    against one that did not."""
    if ranked.empty or "status" not in runs or "group" not in ranked:
        return ranked
    keys = list(group_by)
    first = ranked["group"].iloc[0]
    groups = {group_label(k): g for k, g in runs.groupby(keys, sort=False, dropna=False)}
    if first not in groups or (groups[first]["status"] == STUCK).any():
        return ranked
    stuck = _stuck_in_every_run(runs, keys)
    below = _below_the_best(ranked, runs, keys)
    apart = ranked["group"].map(lambda g: stuck.get(g, False) and below.get(g, False))
    apart = apart.fillna(False).astype(bool)
    apart.iloc[0] = False
    return ranked.assign(tied_with_best=ranked["tied_with_best"] & ~apart)


def stuck_groups(runs: pd.DataFrame, group_by: list[str]) -> set[str]:
    """The labels of the groups stuck at chance (regression: at or below the mean) in every
    run, when some group learned in a run (none: nothing ranks above them). A ranking puts
    them after a group of one finite run that scores better
    (:func:`initlab.ranking.stats.rank_groups`' ``stuck``): two stuck seeds ranked "best" over
    one seed that learned, because one seed cannot be tested."""
    if "status" not in runs or runs.empty:
        return set()
    stuck = _stuck_in_every_run(runs, list(group_by))
    return {label for label, s in stuck.items() if s} if not all(stuck.values()) else set()


def _stuck_in_every_run(runs: pd.DataFrame, keys: list[str]) -> dict[str, bool]:
    """Group label → whether every run that has a score is ``stuck`` (a failed or diverged
    run has none: it neither clears nor condemns the group) and, for regression, at most at
    the mean (R² ≤ 0; see :func:`stuck_not_tied`)."""
    runs = runs[runs["status"].isin((OK, STUCK))]
    stuck = {
        group_label(key): bool((g["status"] == STUCK).all())
        for key, g in runs.groupby(keys, sort=False, dropna=False)
    }
    scores = pd.to_numeric(runs.get("test_accuracy", pd.Series(dtype=float)), errors="coerce")
    at_mean = (run_tasks(runs) != REGRESSION) | (scores.reindex(runs.index) <= 0)
    degenerate = {
        group_label(key): bool(g.all())
        for key, g in at_mean.groupby([runs[k] for k in keys], sort=False, dropna=False)
    }
    return {label: s and degenerate.get(label, True) for label, s in stuck.items()}


def _below_the_best(ranked: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> dict:
    """Group → whether each of its runs scored worse, by the ranked metric, than every run
    of the best group (``ranked``'s first)."""
    metric = str(ranked["metric"].iloc[0]) if "metric" in ranked else "test_accuracy"
    higher = metric != "test_loss"
    values = pd.to_numeric(runs.get(metric, pd.Series(dtype=float)), errors="coerce")
    groups = {
        group_label(key): values.reindex(g.index)
        for key, g in runs.groupby(keys, sort=False, dropna=False)
    }
    best = groups.get(ranked["group"].iloc[0], pd.Series(dtype=float))
    line = best.min() if higher else best.max()
    return {
        label: bool((v < line).all() if higher else (v > line).all()) for label, v in groups.items()
    }


def parted_by_stuck(tied: bool, p_holm: float, alpha: float = 0.05) -> bool:
    """Whether only :func:`stuck_not_tied` parts a group from the best: not tied, although
    its Holm-adjusted p (``>= alpha``) could not tell it from the best."""
    return not tied and p_holm == p_holm and p_holm >= alpha
