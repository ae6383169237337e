"""Results of many runs as tidy tables: one row per run, one row per (run, epoch).

:class:`ResultSet` is what :func:`initlab.compare` returns and what the store reads back:
``runs`` and ``epochs`` are pandas DataFrames keyed by ``run_id``; :meth:`ResultSet.summary`
aggregates over seeds per group (by default per init scheme). ``test_accuracy`` holds each
run's task score (accuracy, R², token accuracy): :attr:`ResultSet.score` names it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from initlab.atomic_files import write_files
from initlab.errors import InitlabError, option
from initlab.ranking.groups import part_verdict, partitions, rank_within, without_unscored_ranks
from initlab.ranking.reach import epochs_to_target, reach_threshold
from initlab.ranking.scores import (
    ACCURACY,
    RESOLVED_TASK,
    Score,
    ranking_metric,
    run_tasks,
)
from initlab.ranking.stats import mean_ci
from initlab.ranking.summary_format import format_summary
from initlab.run_status import DIVERGED, FAILED, STUCK
from initlab.speclist import grouping_columns

if TYPE_CHECKING:
    from initlab.train.result import RunResult  # imports torch: reading results must not

AGAIN = "run the sweep again"
"""How :func:`progress_line` says to resume; where the command that ran is known, it says
``run the same command again`` instead (:func:`retry_hint`)."""


def retry_hint(progress: str, again: str = "run the same command again") -> str:
    """``progress`` (:func:`progress_line`) with its :data:`AGAIN` replaced by ``again``."""
    return progress.replace(AGAIN, again)


def progress_line(planned: int, finished: int, failed: int, saved: int = 0) -> str:
    """``2 of 8 runs of this study are finished (6 not run yet, 3 of them saved in epoch
    checkpoints: run the sweep again to finish)``; ``""`` when every planned run is
    finished. ``saved``: unfinished runs with a checkpoint to continue from."""
    missing = max(planned - finished - failed, 0)
    if planned <= 0 or finished >= planned or not (missing or failed):
        return ""
    parts = [f"{failed} failed"] if failed else []
    parts += [f"{missing} not run yet"] if missing else []
    parts += [f"{saved} of them saved in epoch checkpoints"] if saved else []
    action = "retry and finish" if failed and missing else "retry them" if failed else "finish"
    return (
        f"{finished} of {planned} runs of this study are finished ({', '.join(parts)}: "
        f"{AGAIN} to {action})"
    )


def model_arg_values(row: dict) -> dict:
    """``{"model_args.width": 64}`` from a run row's ``model_args`` (JSON text or a dict):
    the columns that sweeps over model arguments group by (lists as JSON text)."""
    args = row.get("model_args")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return {}
    if not isinstance(args, dict):
        return {}
    return {f"model_args.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in args.items()}


FACTORY_DEFAULT = "(default)"
"""A ``model_args.<name>`` cell of a run that did not give that argument (the factory's own
default): a value to group by, where an empty cell would drop the run from every groupby."""


def with_model_arg_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus a ``model_args.<name>`` column per model argument (see above); a run
    without that argument holds :data:`FACTORY_DEFAULT` (ints stay ints: no NaN)."""
    if runs.empty or "model_args" not in runs:
        return runs
    values = [model_arg_values(row) for row in runs[["model_args"]].to_dict("records")]
    extra = pd.DataFrame(values, index=runs.index, dtype=object)
    extra = extra.where(extra.notna(), FACTORY_DEFAULT)
    new = [c for c in extra.columns if c not in runs]
    return runs.join(extra[new]) if new else runs


SAVED_FILES = ("summary.csv", "epochs.csv", "by_group.csv", "curves.png", "layer_stats.csv")
"""What :meth:`ResultSet.save` writes (``layer_stats.csv`` when per-layer rows were tracked)."""


def _with_groups(epochs: pd.DataFrame, runs: pd.DataFrame, group_by: Sequence[str]):
    """``epochs`` with the grouping columns (and seed) it lacks taken from each run's row:
    runs regrouped by a setting, or two ResultSets' frames concatenated, curve the same."""
    wanted = [*group_by, "seed"]
    missing = [c for c in dict.fromkeys(wanted) if c not in epochs.columns and c in runs.columns]
    if not missing or epochs.empty or "run_id" not in epochs or "run_id" not in runs:
        return epochs
    return epochs.merge(runs[["run_id", *missing]], on="run_id", how="left")


class ResultSet:
    """Runs and their per-epoch curves, grouped for comparison by ``group_by`` columns.

    ``layer_stats`` (optional) holds the runs' tidy per-layer rows recorded during training
    (``run_id, epoch, step, layer, metric, value``); ``progress`` (optional) is a line saying
    that the study these runs belong to is not finished (:func:`progress_line`), read from
    the store, which knows the runs the study planned.
    """

    def __init__(
        self,
        runs: pd.DataFrame,
        epochs: pd.DataFrame,
        group_by: Sequence[str] = ("init",),
        layer_stats: pd.DataFrame | None = None,
        progress: str = "",
        within: Sequence[str] = (),
    ) -> None:
        present = list(runs.columns) if not runs.empty else None
        group_by = grouping_columns(group_by, "group_by", present)
        within = grouping_columns(within, "within", None)
        self.runs, self.epochs, self.group_by = runs, _with_groups(epochs, runs, group_by), group_by
        self.layer_stats = layer_stats if layer_stats is not None else pd.DataFrame()
        self.progress = progress
        outside = [c for c in within if c not in self.group_by]
        if outside:
            named = option(f"--within {','.join(outside)}", f"within {outside}")
            raise InitlabError(
                f"{named}: not a grouping column (grouped by {', '.join(self.group_by)}); "
                "group by it too"
            )
        self.within = list(within)
        """Grouping columns whose every value is ranked and tested apart (:func:`partitions`:
        ``["model_args.width"]`` ranks the inits at each width), beside the data's own."""

    def ranked_within(self, columns: Sequence[str]) -> ResultSet:
        """These results, ranked and tested within each value of the grouping ``columns``."""
        return ResultSet(
            self.runs, self.epochs, self.group_by, self.layer_stats, self.progress, columns
        )

    @classmethod
    def from_results(
        cls, results: Iterable[RunResult], group_by: Sequence[str] = ("init",)
    ) -> ResultSet:
        rows, epoch_rows, layer_rows = [], [], []
        group_by = grouping_columns(group_by, "group_by", None)  # "init" is one name
        for result in results:
            row = result.summary_row()
            row.update(model_arg_values(row))
            rows.append(row)
            keys = {k: row[k] for k in ("run_id", *group_by, "seed") if k in row}
            epoch_rows += [{**keys, **e} for e in result.epochs]
            layer_rows += [{"run_id": row.get("run_id"), **r} for r in result.layer_stats]
        frames = (pd.DataFrame(rows), pd.DataFrame(epoch_rows), pd.DataFrame(layer_rows))
        return cls(frames[0], frames[1], group_by, frames[2])

    @property
    def score(self) -> Score:
        """What ``test_accuracy`` holds, from the runs' tasks (:mod:`initlab.ranking.scores`)."""
        return Score.of_runs(self.runs)

    def summary(self) -> pd.DataFrame:
        """Per group, over its seeds: ``test_accuracy`` (the test score, see :attr:`score`)
        mean, ``test_accuracy_std`` and ``ci95``, the half-width of the score's Student-t 95%
        interval ``mean ± t(0.975, n−1)·std/√n`` (:func:`~initlab.ranking.stats.mean_ci`); with
        sequence runs also ``test_loss`` (mean cross-entropy per token), ``test_loss_std``,
        ``test_loss_ci95`` (the loss's half-width: the interval of what ranks sequence runs,
        :meth:`ranking`) and ``perplexity`` (``exp(test_loss)``); the final train loss,
        ``epochs_to_90`` (:mod:`initlab.ranking.reach`: to a validation loss where
        :meth:`reaches_by_loss`) and counts of diverged/stuck/failed runs; when the runs mix
        tasks, each group's ``resolved_task`` after its keys."""
        if self.runs.empty:
            return pd.DataFrame()
        by_loss, curves, target = self._reach()
        tasks = run_tasks(self.runs) if self.score.mixed else None
        losses = self.score.loss_note() != "" and "test_loss" in self.runs
        rows = []
        keyed = _by_keys(self.runs, self.group_by)  # a NaN key: a setting the group leaves unset
        for key, group in keyed.groupby(self.group_by, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            mean, std, ci = mean_ci(group["test_accuracy"])
            curve = curves.get(key, pd.Series(dtype=float))
            named = {} if tasks is None else {RESOLVED_TASK: _joined(tasks[group.index])}
            rows.append(
                {
                    **dict(zip(self.group_by, key, strict=True)),
                    **named,
                    "runs": len(group),
                    "test_accuracy": mean,
                    "test_accuracy_std": std,
                    "ci95": ci,
                    **(_loss_columns(group) if losses else {}),
                    "final_train_loss": group["final_train_loss"].mean(),
                    "epochs_to_90": epochs_to_target(group, curve, target, by_loss),
                    "diverged": int((group["status"] == DIVERGED).sum()),
                    "stuck": int((group["status"] == STUCK).sum()),
                    "failed": int((group["status"] == FAILED).sum()),
                }
            )
        return pd.DataFrame(rows)

    def ranking(self) -> pd.DataFrame:
        """The groups best first by their ranked metric, with Welch's p against the best, its
        Holm adjustment and ``tied_with_best`` (:func:`initlab.ranking.stats.rank_groups`), within
        each set of comparable runs (:func:`rank_within`: one ranking per dataset or task).
        ``metric`` names the run column that ranks each row's partition, and ``mean``,
        ``std``, ``ci``, ``ci_low``, ``ci_high`` are that column's over the group's seeds:
        ``test_loss`` (mean cross-entropy per token, lower first) for sequence runs that
        recorded it, else ``test_accuracy`` (higher first: accuracy, R² or token accuracy,
        :attr:`score`). :meth:`summary`'s ``ci95`` is ``test_accuracy``'s half-width always;
        for sequence runs its ``test_loss_ci95`` is this ``ci``. A group is shown worse than
        the best only where ``p_holm < 0.05``: where no test was possible (fewer than two
        finished seeds on either side) ``p_vs_best`` is NaN and ``tied_with_best`` False,
        which means *untested*, not *worse*; :meth:`verdict` says so in words.
        ``ci_low``/``ci_high`` are the Student-t interval ``mean ± ci`` as computed: it can
        pass the values the score can take (1.18 for an accuracy), which the printed tables
        and the report cut off."""
        if self.runs.empty:
            return pd.DataFrame()
        return without_unscored_ranks(rank_within(self.runs, self.group_by, within=self.within))

    def verdict(self) -> str:
        """:func:`part_verdict` of each set of comparable runs (:func:`partitions`), one line
        each, labelled with its dataset or task when there are several."""
        if self.runs.empty:
            return ""
        said = [
            (label, part_verdict(part, self.group_by, unfinished=bool(self.progress)))
            for label, part in partitions(self.runs, self.group_by, self.within)
        ]
        return "\n".join(f"{label}: {text}" if label else text for label, text in said if text)

    def reaches_by_loss(self) -> bool:
        """Whether ``epochs_to_90`` counts epochs to a validation loss
        (:func:`~initlab.ranking.reach.reach_legend`): for runs ranked by test loss
        (:func:`~initlab.ranking.scores.ranking_metric`) whose epochs recorded ``val_loss``;
        else to a validation score, as their ranking's column is."""
        ranked_by = ranking_metric(self.runs)[0] if not self.runs.empty else ""
        return ranked_by == "test_loss" and "val_loss" in self.epochs

    def reach_threshold(self) -> float:
        """The mean validation value ``epochs_to_90`` waits for (:mod:`initlab.ranking.reach`): a
        score (90% of the best final one), or where :meth:`reaches_by_loss` a loss (90% of
        the way from the highest first-epoch mean validation loss down to the lowest final
        one); NaN without runs or curves to set it."""
        return self._reach()[2] if not self.runs.empty else math.nan

    def _reach(self) -> tuple[bool, dict[tuple, pd.Series], float]:
        """``(by_loss, mean validation curves per group, the epochs_to_90 target)``."""
        by_loss = self.reaches_by_loss()
        curves = self._mean_val_curves("val_loss" if by_loss else "val_accuracy")
        if not curves:
            return by_loss, curves, math.nan
        return by_loss, curves, reach_threshold(curves, by_loss)

    def _mean_val_curves(self, column: str = "val_accuracy") -> dict[tuple, pd.Series]:
        """Each group's validation ``column`` per epoch, the mean over its seeds, in epoch
        order (a group key as a tuple)."""
        if self.epochs.empty or column not in self.epochs:
            return {}
        by_epoch = self.epochs.groupby([*self.group_by, "epoch"], sort=False, dropna=False)
        mean, levels = by_epoch[column].mean(), list(range(len(self.group_by)))
        curves = {}
        for key, curve in mean.groupby(level=levels, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            curves[key] = curve.droplevel(list(range(len(self.group_by)))).sort_index()
        return curves

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``summary.csv`` (one row per run), ``epochs.csv``, ``by_group.csv``,
        ``curves.png`` and, when tracked, ``layer_stats.csv`` into ``out_dir`` (an older
        ``layer_stats.csv`` there, of other runs, is deleted when these have none); returns
        the paths written.

        Atomic (:func:`write_files`): each file is written beside its final name and renamed
        over it only once all are complete, so a full disk (an ``OSError``, raised) leaves
        the files of before untouched, never an empty or truncated one."""
        from initlab.arguments import check_out
        from initlab.curves import plot_curves

        check_out(out_dir, "save", optional=False)
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InitlabError(f"save({str(out)!r}): a file is there; save takes a directory")
        out.mkdir(parents=True, exist_ok=True)
        by_loss = self.reaches_by_loss()  # the curves of what ranks the runs
        writers: dict[str, Callable[[Path], object]] = {
            "summary.csv": lambda p: self.runs.to_csv(p, index=False),
            "epochs.csv": lambda p: self.epochs.to_csv(p, index=False),
            "by_group.csv": lambda p: self.summary().to_csv(p, index=False),
            "curves.png": lambda p: plot_curves(
                self.epochs, self.group_by, p, self.score.name("validation"), by_loss
            ),
        }
        if not self.layer_stats.empty:
            writers["layer_stats.csv"] = lambda p: self.layer_stats.to_csv(p, index=False)
        stale = [] if "layer_stats.csv" in writers else ["layer_stats.csv"]  # another set's
        return write_files(out, writers, remove=stale)

    def plot(self, path: str | Path | None = None) -> Path | Any:
        """Training loss and validation score curves (validation loss where
        :meth:`reaches_by_loss`: sequence runs ranked by it), mean over seeds with a ±1 std
        band, per group: written to ``path`` (PNG; returns it), or, without one, returned as
        a matplotlib ``Figure`` (a notebook shows it)."""
        from initlab.atomic_files import write_error
        from initlab.curves import check_figure_path, curves_figure, plot_curves

        if path is None:
            validation = self.score.name("validation")
            return curves_figure(self.epochs, self.group_by, validation, self.reaches_by_loss())
        target = check_figure_path(path, "plot")
        try:
            return plot_curves(
                self.epochs, self.group_by, target, self.score.name("validation"),
                self.reaches_by_loss(),
            )  # fmt: skip
        except OSError as exc:  # /proc/x.png, a full disk: one line, nothing left half-written
            raise write_error(exc) from None

    def __str__(self) -> str:
        """The summary table, and what ``test_accuracy`` holds when it is not accuracy."""
        text = format_summary(self.summary()).to_string(index=False)
        return text + (f"\n{self.score.holds()}" if self.score != ACCURACY else "")

    def _head(self) -> list[str]:
        """The lines above the table: the run count and grouping, then :attr:`progress`
        (the study is not finished) when there is one."""
        head = f"ResultSet: {len(self.runs)} runs grouped by {', '.join(self.group_by)}"
        return [head, self.progress] if self.progress else [head]

    def __repr__(self) -> str:
        head = "\n".join(self._head())
        return f"{head}\n{self}" if not self.runs.empty else head

    def _repr_html_(self) -> str:
        """A notebook's view: :meth:`__repr__`'s header lines (the progress line included,
        so a partial result does not look complete), HTML-escaped, above the summary table
        and what ``test_accuracy`` holds when it is not accuracy."""
        head = "".join(f"<p>{html.escape(line)}</p>" for line in self._head())
        if self.runs.empty:
            return head
        table = format_summary(self.summary()).to_html(index=False)
        holds = f"<p>{html.escape(self.score.holds())}</p>" if self.score != ACCURACY else ""
        return head + table + holds


def _loss_columns(group: pd.DataFrame) -> dict[str, float]:
    """A group's ``test_loss`` mean, std and 95% half-width ``test_loss_ci95`` over seeds
    (:func:`~initlab.ranking.stats.mean_ci`) and its ``perplexity``, ``exp(mean test_loss)`` (the
    geometric mean of the runs' perplexities)."""
    mean, std, ci = mean_ci(pd.to_numeric(group["test_loss"], errors="coerce"))
    return {
        "test_loss": mean,
        "test_loss_std": std,
        "test_loss_ci95": ci,
        "perplexity": math.exp(mean),
    }


def _joined(tasks: pd.Series) -> str:
    """A group's task (``classification/regression`` should a group mix them)."""
    return "/".join(dict.fromkeys(tasks))


def _by_keys(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``runs`` ordered by ``keys``, the first one slowest, each key's values in the order
    they first appear (``--group-by model_args.width,init``: every init at width 4, then at
    8, as asked, not every width of the first init first)."""
    ranks = pd.DataFrame({k: pd.factorize(runs[k])[0] for k in keys})  # by position: the
    return runs.iloc[ranks.sort_values(list(keys), kind="stable").index]  # labels may repeat
