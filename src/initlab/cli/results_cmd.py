"""``initlab results DB_OR_DIR``: summarize, rank or export a results store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from initlab.cli import app
from initlab.cli.options import Within
from initlab.cli.outputs import check_output_dir
from initlab.cli.parsing import split_list
from initlab.cli.tables import print_frame
from initlab.console import stdout_console
from initlab.errors import InitlabError, UnknownNameError
from initlab.speclist import repeated

if TYPE_CHECKING:
    import pandas as pd

    from initlab.store import Store

out = stdout_console()


@app.command()
def results(
    path: Annotated[
        Path, typer.Argument(metavar="DB_OR_DIR", help="a study directory or its initlab.db")
    ],
    study: Annotated[
        str | None,
        typer.Option(help="a study's name or id (default: the only study, else all runs)"),
    ] = None,
    group_by: Annotated[
        str | None, typer.Option(help="settings to group by, e.g. init,activation")
    ] = None,
    export_format: Annotated[
        str | None,
        typer.Option("--export", help="write runs/epochs/layer_stats/studies as csv or parquet"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="the directory --export writes into")
    ] = None,
    within: Within = None,
) -> None:
    """Print a store's summary per group (mean ± std over seeds) and its ranking."""
    from initlab.notes import note
    from initlab.results import retry_hint
    from initlab.results_console import print_results
    from initlab.store import export
    from initlab.store.read import check_model_args, pooled_note

    if out_dir is not None and export_format is None:  # else written nowhere, silently
        raise InitlabError("--out is where --export writes: add --export csv (or parquet)")
    with _open(path) as store:
        study, listing = _pick_study(store, study)
        if export_format is not None:
            if out_dir is None:
                raise InitlabError("--export needs --out DIR (where to write the tables)")
            check_output_dir(out_dir)
            paths = export(store, export_format, out_dir, study)
            out.print("wrote " + ", ".join(str(p) for p in paths), soft_wrap=True)
            return
        keys = _settings(group_by, store, study, "--group-by")
        apart = _settings(within, store, study, "--within")  # the names --group-by takes
        found = store.results(study, group_by=keys)  # notes runs of an earlier version
    if apart:
        check_model_args(found.runs, apart)
    if keys is not None and (pooled := pooled_note(found.runs, found.group_by)):
        note(pooled)
    if apart:
        from initlab.report.build import ranked_apart  # and matplotlib: for --within only

        found = ranked_apart(found, apart, keys)
    if listing is not None:  # after every check: an error is then the only output
        print_frame(listing, out, title=f"{len(listing)} studies in {path}")
        out.print("showing all runs; pick one with --study NAME (or its id)")
    name = study or "all runs"
    again = "run the initlab compare that made it again" if name == "compare" else None
    found.progress = retry_hint(found.progress, again) if again else found.progress
    print_results(found, out, title=f"{name}: test accuracy by {' / '.join(found.group_by)}")


SPEC_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
"""Spec files (:func:`initlab.sweep.spec.load_spec`): given to ``results``, a sweep is meant."""


def _open(path: Path) -> Store:
    """The store at ``path``; a file that is no SQLite file (a spec, an ``.npz``) is refused
    with what ``results`` takes instead, not with ``store repair``'s wording."""
    from initlab.store import open_store, store_path
    from initlab.store.repair import NotSQLiteError

    try:
        return open_store(path)
    except NotSQLiteError as exc:
        head = f"{exc.path} is not an initlab results store (not an SQLite file)"
        if path.is_dir() or store_path(path) == path:  # a store's own name: not a mix-up
            raise InitlabError(
                f"{head}: no runs to show; move it away to run a study there"
            ) from None
        spec = f" (a spec file runs with: initlab sweep {path})"
        raise InitlabError(
            f"{head}: give the study's --out directory or its initlab.db"
            f"{spec if path.suffix.lower() in SPEC_SUFFIXES else ''}"
        ) from None


def _pick_study(store: Store, study: str | None) -> tuple[str | None, pd.DataFrame | None]:
    """The study asked for; else the only one; else ``None`` (all runs) with the studies to
    list."""
    if study is not None:
        store.resolve_study(study)  # unknown names fail here, with suggestions
        return study, None
    studies = store.studies()
    if len(studies) == 1:
        return str(studies["name"].iloc[0]), None
    if len(studies) > 1:
        return None, studies[["name", "study_id", "runs", "done", "failed", "updated_at"]]
    return None, None


def _settings(text: str | None, store: Store, study: str | None, flag: str) -> list[str] | None:
    """The settings ``text`` names (``--group-by``, ``--within``): :class:`RunConfig` fields
    or ``model_args.<name>``; an unknown one is named with the settings and the runs' model
    arguments (``widht``: did you mean ``model_args.width``?)."""
    from initlab.results import with_model_arg_columns
    from initlab.setting_names import MODEL_ARG, SETTINGS, is_setting

    if text is None:
        return None
    keys = split_list(text, flag)
    twice = repeated(keys)
    if twice is not None:
        raise InitlabError(f"'{twice}' is named twice in '{text}'; name each setting once")
    for key in keys:
        if not is_setting(key):
            columns = with_model_arg_columns(store.runs(study)).columns
            args = [str(c) for c in columns if str(c).startswith(MODEL_ARG)]
            raise UnknownNameError("setting", key, [*SETTINGS, *args])
    return keys
