"""Terminal output of ``initlab sweep`` and ``initlab compare``: the progress bar, the resume
hint, the saved tables, then the results (:mod:`initlab.results_console`)."""

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
from initlab.errors import InitlabError
from initlab.notes import InitlabNote, note
from initlab.results import SAVED_FILES, ResultSet, retry_hint
from initlab.results_console import print_results
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
