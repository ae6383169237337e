"""Where a report's data comes from: a results store, or the CSVs of ``initlab compare --out``.

:func:`load_results` accepts

* a SQLite results store (a file, or a directory holding ``initlab.db``), read with
  :func:`initlab.store.open_store` — ``.results(study=...)`` and ``.layer_stats()``;
* a directory written by ``initlab compare --out``: ``summary.csv`` (one row per run) and
  ``epochs.csv``, plus ``layer_stats.csv`` if present.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from initlab.errors import InitlabError, option
from initlab.report.build import regroup
from initlab.results import ResultSet, with_model_arg_columns
from initlab.store import DB_NAME, open_store
from initlab.store.paths import folder_in_the_way
from initlab.store.read import varying
from initlab.store.repair import NotSQLiteError

RUNS_CSV, EPOCHS_CSV, LAYERS_CSV = "summary.csv", "epochs.csv", "layer_stats.csv"
DEFAULT_GROUP_BY = ("init",)


def load_results(
    path: str | Path, *, study: str | None = None
) -> tuple[ResultSet, pd.DataFrame | None]:
    """``(results, layer_stats)`` from a store or a CSV directory (see the module docstring).

    ``layer_stats`` is ``None`` when the source has none; with a store it is limited to the
    runs of ``results``. CSV results are grouped by every setting that varies between their
    runs, as a store's without a study (regroup with :func:`initlab.report.build.regroup`
    or ``build_report(group_by=...)``).
    """
    source = Path(path)
    if not source.exists():
        raise InitlabError(f"no such file or directory: {source}")
    if source.is_dir() and not (source / DB_NAME).exists():
        if study is not None:
            raise InitlabError(
                f"{option('--study')} needs a results store; {source} holds no {DB_NAME}"
            )
        return _from_csv_dir(source)
    db = source / DB_NAME if source.is_dir() else source
    if db.is_dir():
        raise folder_in_the_way(db)
    return _from_store(db, study)


def _from_store(db: Path, study: str | None) -> tuple[ResultSet, pd.DataFrame | None]:
    try:
        store = open_store(db)
    except NotSQLiteError:  # its message is for commands that write a store: report reads
        hint = (
            f"its directory: initlab report {db.parent}"
            if db.suffix == ".csv"
            else f"a study's --out directory (its {DB_NAME}, or the CSVs initlab compare wrote)"
        )
        raise InitlabError(
            f"{db} is not an initlab results store (not an SQLite file): give {hint}"
        ) from None
    try:
        if study is None:  # the only study, as `initlab results` picks it (its group_by)
            studies = store.studies()
            study = str(studies["name"].iloc[0]) if len(studies) == 1 else None
        results = store.results(study=study)
        layer_stats = store.layer_stats(study)
    finally:
        store.close()
    if layer_stats is not None and "run_id" in layer_stats and not results.runs.empty:
        layer_stats = layer_stats[layer_stats["run_id"].isin(results.runs["run_id"])]
    return results, layer_stats


def _from_csv_dir(directory: Path) -> tuple[ResultSet, pd.DataFrame | None]:
    missing = [name for name in (RUNS_CSV, EPOCHS_CSV) if not (directory / name).exists()]
    if missing and (directory / "recommendation.json").exists():  # the doctor's evidence
        raise InitlabError(
            f"{directory} holds `initlab doctor --trials` evidence: its verdict is in "
            "recommendation.json, the runs in trials.csv and curves.png; `initlab report` reads "
            "a results store or an `initlab compare --out` directory"
        )
    if missing:
        raise InitlabError(
            f"{directory} is neither a results store (no {DB_NAME}) nor an "
            f"`initlab compare --out` directory (missing {', '.join(missing)})"
        )
    runs = _read_csv(directory / RUNS_CSV)
    epochs = _read_csv(directory / EPOCHS_CSV)
    if "message" in runs:
        runs["message"] = [m if isinstance(m, str) else "" for m in runs["message"]]
    keys = [c for c in DEFAULT_GROUP_BY if c in runs]
    if not keys:
        raise InitlabError(f"{directory / RUNS_CSV} has no 'init' column: not a run table")
    layers = directory / LAYERS_CSV
    layer_stats = _read_csv(layers) if layers.exists() else None
    results = ResultSet(with_model_arg_columns(runs), epochs, keys)
    return regroup(results, varying(results.runs)), layer_stats


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"run_id": str, "hidden": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InitlabError(f"cannot read {path}: {err}") from err
