"""``build_report``: a :class:`ResultSet` (plus per-layer statistics) → report.html + report.md.

The sections, in order: summary (ranked), pairwise comparisons, learning curves, accuracy with
confidence intervals (test loss for sequence runs, which it ranks by), per-layer gradient
norms, trainability (only for depth × sigma_w² sweeps), failures, and the list of runs.
``docs/report.md`` explains how to read each. The runs' tasks name the score throughout
(accuracy, R², token accuracy: :mod:`initlab.ranking.scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from initlab.atomic_files import write_files
from initlab.config import RunConfig
from initlab.errors import InitlabError, closest_name, option
from initlab.ranking.scores import ACCURACY, Score
from initlab.report import layers, sections
from initlab.report.html import render_html
from initlab.report.markdown import render_markdown
from initlab.report.model import Report, Section
from initlab.results import ResultSet, with_model_arg_columns
from initlab.speclist import grouping_columns

DEFAULT_TITLE = "initlab report"
CONFIG_COLUMNS = tuple(f.name for f in fields(RunConfig))
HIDDEN_FACT_COLUMNS = {"seed", "extra", "track"}


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`build_report` wrote: the HTML page, the Markdown file and its PNGs."""

    out_dir: Path
    html: Path
    markdown: Path
    images: tuple[Path, ...]


def build_report(
    results: ResultSet,
    out_dir: str | Path,
    *,
    layer_stats: pd.DataFrame | None = None,
    title: str = DEFAULT_TITLE,
    group_by: Sequence[str] | None = None,
    extra_sections: Sequence[Section] = (),
) -> ReportPaths:
    """Write ``report.html`` (self-contained: inline CSS, base64 images, no scripts) and
    ``report.md`` with its PNGs into ``out_dir``; returns the paths.

    ``layer_stats``: tidy per-layer rows (``run_id, epoch, step, layer, metric, value``) for
    the gradient-norm heatmaps (default: ``results.layer_stats`` if the result set carries
    such a DataFrame); ``group_by``: the columns that define a group (default: the
    result set's own, usually ``init``); ``extra_sections``: sections placed first (a
    study's verdicts and figures).
    """
    if not isinstance(results, ResultSet):
        raise InitlabError(
            f"build_report takes a ResultSet (from initlab.compare, or "
            f"initlab.store.open_store(path).results()), got {type(results).__name__}"
        )
    report = assemble_report(
        results,
        layer_stats=layer_stats,
        title=title,
        group_by=group_by,
        extra_sections=extra_sections,
    )
    out = Path(out_dir)
    writers = {image.filename: _bytes_writer(image.png) for image in report.images()}
    html, markdown = render_html(report), render_markdown(report)
    writers["report.html"] = lambda p: p.write_text(html, encoding="utf-8")
    writers["report.md"] = lambda p: p.write_text(markdown, encoding="utf-8")
    paths = write_files(out, writers)
    return ReportPaths(out, out / "report.html", out / "report.md", tuple(paths[:-2]))


def _bytes_writer(data: bytes):
    """A writer of ``data`` for :func:`~initlab.atomic_files.write_files`."""
    return lambda path: path.write_bytes(data)


def assemble_report(
    results: ResultSet,
    *,
    layer_stats: pd.DataFrame | None = None,
    title: str = DEFAULT_TITLE,
    group_by: Sequence[str] | None = None,
    extra_sections: Sequence[Section] = (),
) -> Report:
    """The :class:`Report` object that :func:`build_report` renders (no files written)."""
    if layer_stats is None:  # a ResultSet that carries its runs' per-layer rows
        carried = getattr(results, "layer_stats", None)
        layer_stats = carried if isinstance(carried, pd.DataFrame) else None
    results = regroup(results, group_by)
    runs, keys = results.runs, results.group_by
    progress = [results.progress] if getattr(results, "progress", "") else []
    if runs.empty:
        note = sections.empty_section()
        return Report(title, ["no runs", *progress], [*extra_sections, note])
    ranked, score = sections.ranked(results), results.score
    parts = [
        *extra_sections,
        sections.summary_section(
            ranked,
            keys,
            results.verdict(),
            score,
            by_loss=results.reaches_by_loss(),
            tracked=layers.grad_norm_metric(layer_stats) is not None,
            reach=results.reach_threshold(),
        ),
        sections.pairwise_section(runs, keys, ranked, score),
        sections.curves_section(results.epochs, keys, score, results.reaches_by_loss()),
        sections.accuracy_section(runs, keys, ranked, score),
        sections.gradients_section(layer_stats, runs, keys),
        sections.trainability_section(runs, score),
        sections.failures_section(runs, keys),
        sections.runs_section(runs, keys, score),
    ]
    lines = facts(runs, keys, score)
    lines[1:1] = progress  # right after the run count it qualifies
    return Report(title, lines, [p for p in parts if p is not None])


def regroup(results: ResultSet, group_by: Sequence[str] | None) -> ResultSet:
    """``results`` grouped by ``group_by`` (grouping columns joined onto the epochs)."""
    if group_by is None:
        return results
    keys = grouping_columns(group_by, "group_by", None)  # "init" is one name, not its letters
    if keys == results.group_by:
        return results
    missing = [k for k in keys if k not in results.runs]
    if missing:
        columns = _settings(results.runs)
        shown = ", ".join(f"'{m}'" for m in missing)
        hint = closest_name(missing[0], columns)
        guess = f"did you mean '{hint}'? " if hint else ""
        raise InitlabError(
            f"cannot group by {shown}: not a setting of these runs "
            f"({guess}valid: {', '.join(columns)})"
        )
    epochs = results.epochs
    absent = [k for k in keys if k not in epochs]
    if absent and not epochs.empty:
        lookup = results.runs[["run_id", *absent]].drop_duplicates("run_id")
        epochs = epochs.drop(columns=absent, errors="ignore").merge(lookup, on="run_id")
    within = [c for c in getattr(results, "within", ()) if c in keys]
    progress = getattr(results, "progress", "")
    return ResultSet(results.runs, epochs, keys, results.layer_stats, progress, within)


def _settings(runs: pd.DataFrame) -> list[str]:
    """The columns of ``runs`` to group by: the settings (``init``, ``model_args.width``),
    not the outcomes (``test_accuracy``, ``message``); every column when none is a setting."""
    columns = list(map(str, runs.columns))
    settings = [c for c in columns if c in CONFIG_COLUMNS or c.startswith("model_args.")]
    return settings or columns


def ranked_apart(
    results: ResultSet, within: Sequence[str], group_by: Sequence[str] | None = None
) -> ResultSet:
    """``results`` grouped by ``group_by`` (default: as they are) and the ``within`` columns,
    ranked and tested within each value of ``within`` (``--within model_args.width``: the
    inits at each width; :attr:`initlab.results.ResultSet.within`). A ``group_by`` of only
    ``within`` columns is refused: each ranking would hold one group."""
    if group_by and all(k in within for k in group_by):  # one group per value, ranked alone
        raise InitlabError(
            f"{option('--within')} {','.join(within)} leaves nothing to compare: "
            f"{option('--group-by')} {','.join(group_by)} groups by it too, one group per "
            f"value; group by another setting (e.g. {option('--group-by')} activation)"
        )
    keys = list(group_by or results.group_by)
    keys += [c for c in within if c not in keys]
    return regroup(results, keys).ranked_within(within)


def facts(runs: pd.DataFrame, group_by: Sequence[str], score: Score | None = None) -> list[str]:
    """A few lines about the data: counts, the task unless it is classification only (what
    ``test_accuracy`` holds), and the settings every run shares."""
    groups = runs.groupby(list(group_by), sort=False, dropna=False).ngroups
    seeds = runs["seed"].nunique() if "seed" in runs else 1
    lines = [
        f"{len(runs)} runs in {groups} groups (grouped by {', '.join(group_by)}), {seeds} seed(s)"
    ]
    score = score or Score.of_runs(runs)
    if score != ACCURACY:
        lines.append(f"task: {', '.join(score.tasks)}; {score.holds()}")
    shared = [f"{c}={v}" for c, v in shared_settings(runs, group_by).items()]
    if shared:
        lines.append("shared settings: " + ", ".join(shared))
    if ran_on := environment_line(runs):
        lines.append(ran_on)
    return lines


ENVIRONMENT_COLUMNS = {
    "initlab_version": "initlab", "torch_version": "torch", "python_version": "python",
    "blas": "BLAS", "engine": "engine", "host": "host",
}  # fmt: skip
"""The run columns that say where and with what a run was computed, and their labels."""


def environment_line(runs: pd.DataFrame) -> str:
    """``ran with: initlab 0.1.0, torch 2.13.0+cpu, …``: the versions, BLAS code path,
    engine and host of the runs, each value with its run count where they differ (a store
    resumed on another machine, whose last bits differ); ``""`` without those columns."""
    parts = []
    for column, label in ENVIRONMENT_COLUMNS.items():
        if column not in runs:
            continue
        counts = runs[column].dropna().astype(str).value_counts()
        if len(counts) == 1:
            parts.append(f"{label} {counts.index[0]}")
        elif len(counts) > 1:
            each = ", ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in counts.items())
            parts.append(f"{label} {each}")
    return "ran with: " + "; ".join(parts) if parts else ""


def shared_settings(runs: pd.DataFrame, group_by: Sequence[str]) -> dict[str, str]:
    """The settings every run has the same value of, outside ``group_by``: each model
    argument on its own (``model_args.depth`` shared while ``width`` is swept), and
    ``momentum`` only when a run's optimizer uses it (SGD with momentum)."""
    runs = with_model_arg_columns(runs)
    expanded = [c for c in runs.columns if c.startswith("model_args.")]
    columns = [c for c in CONFIG_COLUMNS if not (c == "model_args" and expanded)] + expanded
    momentum = "optimizer" not in runs or runs["optimizer"].eq("momentum").any()
    shared = {}
    for column in columns:
        if column not in runs or column in HIDDEN_FACT_COLUMNS or column in group_by:
            continue
        if column == "momentum" and not momentum:
            continue
        values = runs[column].dropna().astype(str).unique()
        if len(values) == 1:
            shared[column] = values[0]
    return shared
