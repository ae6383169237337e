"""Terminal output shared by ``initlab sweep``, ``initlab compare`` and ``initlab results``:
the progress bar, the resume hint and the result tables."""

from __future__ import annotations

import errno
import sqlite3
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from initlab.config import RunConfig
from initlab.console import print_frame
from initlab.errors import InitlabError, some_names
from initlab.notes import InitlabNote, note
from initlab.ranking.groups import partitions
from initlab.ranking.scores import Score, parted_by_stuck
from initlab.ranking.stats import group_label
from initlab.ranking.summary_format import format_summary
from initlab.report.tables import ALPHA
from initlab.results import (
    SAVED_FILES,
    ResultSet,
    reach_legend,
    retry_hint,
)
from initlab.run_status import FAILED
from initlab.store import Store, open_store, store_path, study_dir
from initlab.store.versions import changed_files, user_specs
from initlab.sweep.interrupted import print_interrupted, resumable, resume_command
from initlab.sweep.progress import RichProgress
from initlab.sweep.runner import (
    Study,
    SweepInterrupted,
    SweepStopped,
    check_backend,
    run_sweep,
)
from initlab.sweep.spec import Spec
from initlab.task_names import CLASSIFICATION, SCORES
from initlab.winner import apply_line


def run_and_report(
    spec: Spec,
    configs: list[RunConfig],
    out: Path | None,
    *,
    title: str,
    console: Console,
    err: Console,
    ctx: typer.Context | None = None,
    **options,
) -> ResultSet:
    """Run a study with a progress bar into ``out`` (in memory when ``None``), save the CSVs
    and plot in ``out`` (beside the store when ``out`` names its file), print the summary,
    each group's first error and the ranking; exit 130 on Ctrl-C, 2 when the CSVs cannot be
    written, 1 when every run failed (the CSVs written all the same)."""
    study = Study.from_spec(spec)
    check_backend(options.get("backend", "local"), options.get("address"))  # before any file
    store_at, out = out, study_dir(out) if out is not None else None
    check_table_paths(out)
    with open_store(store_at if store_at is not None else ":memory:", create=True) as store:
        progress = RichProgress(err)
        try:
            report = run_sweep(configs, store, study, progress=progress, **options)
        except SweepInterrupted as stop:
            progress.stop()
            saved = resumable(store, progress.unfinished_runs())
            tables = save_interrupted(store, study.study_id, out)
            unfinished = progress.unfinished()
            print_interrupted(err, stop.report, store.path, ctx, unfinished, saved, tables)
            raise typer.Exit(130) from None
        except SweepStopped as stop:  # a full disk: one line, then the command that resumes
            progress.stop()
            err.print(f"error: {stop}", soft_wrap=True, markup=False, highlight=False)
            err.print(f"  {resume_command(ctx)}", soft_wrap=True, markup=False, highlight=False)
            raise typer.Exit(2) from None
        finally:
            progress.stop()
        if report.ran == 0 and report.already_done:
            err.print(f"{report.already_done} of {report.total} runs already done; nothing to run")
        where = f"; store: {store.path}" if store.path else ""
        err.print(report.line() + where, soft_wrap=True, markup=False)
        results = store.results(study.study_id)
    # the files first: printing may fail (`initlab compare ... | head` closes the pipe)
    paths, failure = save_tables(results, out, store_at)
    results.progress = retry_hint(results.progress)  # this command, not always a sweep
    print_results(results, console, title)
    if paths:
        console.print("wrote " + ", ".join(str(p) for p in paths), soft_wrap=True)
    if failure:
        err.print(f"error: {failure}", soft_wrap=True, markup=False, highlight=False)
        err.print(f"  {resume_command(ctx)}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(2)
    if nothing_finished(results):
        err.print(
            f"error: every one of the {len(results.runs)} runs failed (errors above)",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)
    return results


def nothing_finished(results: ResultSet) -> bool:
    """Whether the study has runs and every one of them ``failed`` (exit status 1)."""
    runs = results.runs
    return not runs.empty and "status" in runs and bool((runs["status"] == FAILED).all())


def save_interrupted(store: Store, study_id: str, out: Path | None) -> str:
    """After Ctrl-C: the CSVs and plot of the runs stored so far, as the normal end writes
    them, so no table of an earlier sweep is left looking current beside the store. What
    became of them, for :func:`~initlab.sweep.interrupted.print_interrupted` to say (``""``:
    no ``out``, or nothing to write and nothing from before): written, or, where they
    cannot be written (no finished run yet, a full disk, Ctrl-C again), that the CSVs in
    ``out`` are from before, or that there are none."""
    if out is None:
        return ""
    try:
        results = store.results(study_id)
        paths, failure = save_tables(results, out, store.path)
    except KeyboardInterrupt:
        paths, failure = [], "interrupted again"
    except Exception as exc:  # the store unreadable now: the runs stay in it, say so
        paths, failure = [], f"{type(exc).__name__}: {exc}"
    if paths:
        return f"wrote the tables of the finished runs in {out}"
    if (Path(out) / "summary.csv").exists():
        why = failure or "no run of this sweep finished yet"
        return f"the CSVs in {out} are from before this sweep ({why}); resuming replaces them"
    if failure:  # nothing from before either: say the tables are missing, and why
        return f"the tables of the finished runs were not written ({failure})"
    return ""


def check_table_paths(out: Path | None) -> None:
    """One line, before anything trains, when a directory sits where a table or the plot of
    this study goes (found only after training otherwise)."""
    for name in SAVED_FILES if out is not None else ():
        if (out / name).is_dir():
            raise InitlabError(
                f"{out / name} is a directory where this study writes its {name}; move it "
                "away or give another --out"
            )


def note_other_study(results: ResultSet, out: Path, store: Path | None = None) -> None:
    """A note when ``out``'s summary.csv holds runs this study has not, whose tables are
    about to be replaced by this one's while the runs stay in the store (``store``, by
    default ``out``'s): runs another study of the store holds, or runs of an earlier version
    of this study — the same spec, its model or data file since edited, so its run ids
    changed (re-recording the study unlinked the old ones)."""
    try:
        before = pd.read_csv(out / SAVED_FILES[0], usecols=["run_id"])["run_id"]
    except (OSError, ValueError, pd.errors.ParserError):  # none, or not ours to read
        return
    others = set(before.astype(str)) - set(results.runs["run_id"].astype(str))
    if not others:
        return
    held, stored = study_runs(store or out)
    earlier = (others & stored) - held
    csv, shown = out / SAVED_FILES[0], f"initlab results {out}"
    if earlier:
        note(
            f"{csv} held {len(earlier)} run(s) of an earlier version of this study, "
            f"{earlier_cause(results.runs)} and so under other run ids; this study's tables "
            f"replace them, and those runs stay in the store, left out (with a note) by {shown}"
        )
    if others - earlier:
        note(
            f"{csv} held {len(others - earlier)} run(s) of another study, which this "
            f"study's tables replace; those runs stay in the store: {shown}"
        )


def study_runs(path: Path) -> tuple[set[str], set[str]]:
    """``(ids of runs some study of the store at path holds, ids of every stored run)``;
    two empty sets when it cannot be read (its notes, such as runs left out, unsaid)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InitlabNote)
        try:
            with open_store(path) as store:
                ids = [set(store.runs(s)["run_id"]) for s in store.studies()["study_id"]]
                return set().union(*ids), set(store.statuses())
        except (InitlabError, OSError, sqlite3.Error):
            return set(), set()


def earlier_cause(runs: pd.DataFrame | Sequence[dict]) -> str:
    """Why runs of the same settings have other run ids: ``trained before models.py last
    changed (or keyed by an older initlab)``, naming the user files of ``runs`` (rows with
    ``model`` and ``dataset``); ``keyed by an older initlab`` for built-in ones alone."""
    rows = runs.to_dict("records") if isinstance(runs, pd.DataFrame) else runs
    specs = {spec for row in rows for spec in user_specs(row)}
    if not specs:
        return "keyed by an older initlab"
    files = changed_files([(tuple(specs), None)])
    return f"trained before {files} last changed (or keyed by an older initlab)"


def save_tables(
    results: ResultSet, out: Path | None, store: Path | None = None
) -> tuple[list[Path], str]:
    """``results.save(out)`` (nothing in memory or without runs): ``(paths, "")``, or
    ``([], line)`` saying why the CSVs could not be written (a full disk, a read-only
    directory) — the runs stay in the store (``store``, by default ``out``'s), and the files
    of before are left as they were."""
    if out is None or results.runs.empty:
        return [], ""
    note_other_study(results, out, store)
    try:
        return results.save(out), ""
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        name = exc.filename2 or exc.filename  # os.replace(temporary, target): the target
        where = f"{name}: {reason}" if name else reason
        fix = "free some space" if exc.errno == errno.ENOSPC else "fix that"
        return [], (
            f"cannot write the CSVs and plot in {out} ({where}); every run is saved in the "
            f"results store {store_path(store or out)}; {fix} and run the same command again "
            "to write them"
        )


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
