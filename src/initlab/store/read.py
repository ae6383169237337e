"""Reading a results store into pandas DataFrames (used by :class:`initlab.store.Store`).

Runs come back in a stable order: a study's runs in grid order, all runs by finish time.
"""

from __future__ import annotations

import json
import sqlite3
import typing
from collections.abc import Sequence
from dataclasses import fields

import pandas as pd

from initlab.checkpoints import Checkpoints
from initlab.config import ARCHITECTURE_SETTINGS, AS_BUILT, AS_BUILT_UNUSED, SAME, RunConfig
from initlab.errors import InitlabError, UnknownNameError
from initlab.notes import note
from initlab.results import ResultSet, progress_line, with_model_arg_columns
from initlab.run_status import FINISHED
from initlab.speclist import grouping_columns
from initlab.store.schema import EPOCH_METRICS, RESULT_COLUMNS
from initlab.store.versions import current_runs

_REAL_RESULTS = [n for n, sql in RESULT_COLUMNS if sql == "REAL"]
_HINTS = typing.get_type_hints(RunConfig)
_BOOL_FIELDS = [f.name for f in fields(RunConfig) if _HINTS[f.name] is bool]
_FLOAT_FIELDS = [f.name for f in fields(RunConfig) if _HINTS[f.name] is float]


def resolve_study(conn: sqlite3.Connection, study: str | None) -> str | None:
    """The id of the study named ``study`` (latest of that name), with that id or id prefix."""
    if study is None:
        return None
    rows = conn.execute("SELECT study_id, name FROM studies ORDER BY updated_at DESC").fetchall()
    if any(study == sid for sid, _ in rows):
        return study
    named = [sid for sid, name in rows if name == study]
    if len(named) > 1:
        note(
            f"{len(named)} studies are named '{study}': showing the latest ({named[0]}); "
            f"name another by its id ({', '.join(named[1:])})"
        )
    if named:
        return named[0]
    prefixed = [sid for sid, _ in rows if len(study) >= 4 and sid.startswith(study)]
    if len(prefixed) == 1:
        return prefixed[0]
    raise UnknownNameError("study", study, sorted({n for _, n in rows} | {s for s, _ in rows}))


def only_study(conn: sqlite3.Connection) -> str | None:
    """The id of the store's one study; ``None`` when it holds none or several."""
    rows = conn.execute("SELECT study_id FROM studies LIMIT 2").fetchall()
    return rows[0][0] if len(rows) == 1 else None


def study_group_by(conn: sqlite3.Connection, study_id: str | None) -> list[str] | None:
    if study_id is None:
        return None
    row = conn.execute("SELECT group_by FROM studies WHERE study_id=?", (study_id,)).fetchone()
    return json.loads(row[0]) if row else None


def studies(conn: sqlite3.Connection) -> pd.DataFrame:
    query = """
        SELECT s.study_id, s.name, s.group_by, COUNT(sr.run_id) AS runs,
               SUM(r.status IN ('ok', 'stuck', 'diverged')) AS done,
               SUM(r.status = 'failed') AS failed, s.created_at, s.updated_at
        FROM studies s LEFT JOIN study_runs sr ON sr.study_id = s.study_id
        LEFT JOIN runs r ON r.run_id = sr.run_id
        GROUP BY s.study_id ORDER BY s.updated_at"""
    frame = pd.read_sql_query(query, conn)
    for column in ("done", "failed"):
        frame[column] = frame[column].fillna(0).astype(int)
    return frame


def study_progress(
    conn: sqlite3.Connection, study_id: str | None, checkpoints: Checkpoints | None = None
) -> str:
    """:func:`initlab.results.progress_line` of a study: how many of the runs it planned
    are finished, failed, not run yet, and how many of the unfinished ones have a
    checkpoint in ``checkpoints`` (``""`` when all are finished or for no study)."""
    if study_id is None:
        return ""
    query = """
        SELECT sr.run_id, r.status IN ('ok', 'stuck', 'diverged'), r.status = 'failed'
        FROM study_runs sr LEFT JOIN runs r ON r.run_id = sr.run_id WHERE sr.study_id = ?"""
    rows = conn.execute(query, (study_id,)).fetchall()
    finished = sum(bool(done) for _, done, _ in rows)
    failed = sum(bool(bad) for _, _, bad in rows)
    unfinished = [run_id for run_id, done, _ in rows if not done]
    saved = sum(checkpoints.has(r) for r in unfinished) if checkpoints else 0
    return progress_line(len(rows), finished, failed, saved)


def _select(table: str, study_id: str | None, order: str) -> tuple[str, tuple]:
    if study_id is None:
        return f"SELECT t.* FROM {table} t ORDER BY {order}", ()
    join = "JOIN study_runs s ON s.run_id = t.run_id AND s.study_id = ?"
    return f"SELECT t.* FROM {table} t {join} ORDER BY s.position, {order}", (study_id,)


def run_configs(conn: sqlite3.Connection, statuses: Sequence[str]) -> pd.DataFrame:
    """``run_id``, ``config`` and ``sources`` of the stored runs of these ``statuses``."""
    marks = ", ".join("?" * len(statuses))
    query = f"SELECT run_id, config, sources FROM runs WHERE status IN ({marks})"
    return pd.read_sql_query(query, conn, params=tuple(statuses))


def finished_ids(conn: sqlite3.Connection) -> list[str]:
    """The ids of the stored runs that finished (their configs left unread)."""
    marks = ", ".join("?" * len(FINISHED))
    query = f"SELECT run_id FROM runs WHERE status IN ({marks})"
    return [row[0] for row in conn.execute(query, FINISHED)]


def study_configs(conn: sqlite3.Connection, study_id: str) -> pd.DataFrame:
    """``run_id`` and ``config`` of every run the study holds, as stored (no run left out,
    no note: :func:`runs` reads them for the tables)."""
    query, args = _select("runs", study_id, "t.run_id")
    return pd.read_sql_query(query, conn, params=args)[["run_id", "config"]]


def runs(conn: sqlite3.Connection, study_id: str | None) -> pd.DataFrame:
    query, args = _select("runs", study_id, "t.finished_at, t.run_id")
    finished = frozenset(finished_ids(conn)) if study_id else frozenset()
    frame = current_runs(pd.read_sql_query(query, conn, params=args), finished)
    frame = frame.drop(columns=["config", "sources"], errors="ignore")  # the store's own
    if {"output_init", "init"} <= set(frame.columns):  # rows of before 'same' was written
        said_same = frame["output_init"].isna() & frame["init"].ne(AS_BUILT)
        frame["output_init"] = frame["output_init"].where(~said_same, SAME)
    for name in _BOOL_FIELDS:
        if name in frame:  # empty where the model has no such setting (a user factory)
            column = frame[name]
            frame[name] = (
                column.astype(bool)
                if column.notna().all()
                else column.map(lambda v: None if pd.isna(v) else bool(v))
            )
    for name in _FLOAT_FIELDS + _REAL_RESULTS:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name]).astype(float)
    return frame


def epochs(conn: sqlite3.Connection, study_id: str | None) -> pd.DataFrame:
    query, args = _select("epochs", study_id, "t.run_id, t.epoch")
    frame = pd.read_sql_query(query, conn, params=args)
    more = frame.pop("more")
    extra = [json.loads(m) if isinstance(m, str) else {} for m in more]
    if any(extra):
        frame = pd.concat([frame, pd.DataFrame(extra, index=frame.index)], axis=1)
    for column in EPOCH_METRICS:
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


def layer_stats(conn: sqlite3.Connection, study_id: str | None) -> pd.DataFrame:
    query, args = _select("layer_stats", study_id, "t.rowid")
    frame = pd.read_sql_query(query, conn, params=args)
    frame["value"] = pd.to_numeric(frame["value"]).astype(float)
    return frame


SEEDS = ("seed", "data_seed")
"""Sources of run-to-run noise, never a group: runs differing only in them are repeats."""


def varying(runs: pd.DataFrame) -> list[str]:
    """Config columns whose values differ between runs (seeds excluded); ``["init"]`` if none.
    An empty cell of a setting the run does not use (:data:`UNUSED_WHEN_EMPTY`) differs
    from nothing; anywhere else empty is a value (``limit_train``: all the data). Varying
    ``model_args`` are named by argument: ``model_args.width``, not the JSON."""
    names = [f.name for f in fields(RunConfig) if f.name not in SEEDS and f.name in runs]
    keys = [n for n in names if _values(runs[n], n in UNUSED_WHEN_EMPTY).nunique() > 1]
    if "model_args" in keys:
        expanded = with_model_arg_columns(runs)
        args = [c for c in expanded if c.startswith("model_args.")]
        # absent in some runs (the factory's default) is a value: pandas' string dtype keeps
        # NaN missing through astype(str), and nunique() would pool depth=6 with depth 1
        args = [c for c in args if expanded[c].astype(str).nunique(dropna=False) > 1]
        keys[keys.index("model_args") : keys.index("model_args") + 1] = args or ["model_args"]
    return keys or ["init"]


def pooled_note(runs: pd.DataFrame, group_by: Sequence[str]) -> str:
    """``--group-by model_args.width: each group pools runs that differ in init; its
    "seeds" are those runs ...`` when settings that vary between the runs are not grouping
    columns (``""`` otherwise): Welch's test then treats runs of different inits as seeds of
    one config."""
    keys = varying(runs)
    if keys == ["init"] and ("init" not in runs or runs["init"].nunique() < 2):
        keys = []  # nothing varies: varying's fallback
    pooled = [k for k in keys if k not in group_by]
    if not pooled:
        return ""
    return (
        f"--group-by {','.join(group_by)}: each group pools runs that differ in "
        f"{', '.join(pooled)}, and counts them as its seeds; add "
        f"{'it' if len(pooled) == 1 else 'them'} to --group-by to compare like with like"
    )


UNUSED_WHEN_EMPTY = ("momentum", *AS_BUILT_UNUSED, *ARCHITECTURE_SETTINGS)
"""Settings whose empty cell means "not used by this run" (:func:`initlab.config.unused_in_run`,
:data:`initlab.config.AS_BUILT_UNUSED`), not a value of their own."""


def _values(column: pd.Series, unused_when_empty: bool) -> pd.Series:
    """A column's cells as text to count distinct values in: empty ones left out where they
    mean unused, else counted as one value (pandas 3's ``astype(str)`` keeps them empty)."""
    if unused_when_empty:
        return column.dropna().astype(str)
    return column.astype(object).where(column.notna(), "<empty>").astype(str)


def result_set(
    runs: pd.DataFrame,
    epochs: pd.DataFrame,
    group_by: list[str],
    layer_stats: pd.DataFrame | None = None,
    progress: str = "",
) -> ResultSet:
    """A :class:`ResultSet` whose epoch rows carry the group columns and seed, as
    :meth:`ResultSet.from_results` builds them; ``progress``: see :class:`ResultSet`."""
    runs = with_model_arg_columns(runs)
    group_by = grouping_columns(group_by, "group_by", None)  # a str, a name given twice
    keys = ["run_id", *group_by, *([] if "seed" in group_by else ["seed"])]
    check_model_args(runs, group_by)
    if not runs.empty:  # what is not a column (model_args.* was named above) said in one line
        grouping_columns(group_by, "group_by", list(runs.columns))
    if runs.empty:
        empty = pd.DataFrame(columns=[*keys, "epoch"])
        return ResultSet(runs, empty, group_by, layer_stats, progress)
    merged = runs[keys].merge(epochs, on="run_id", how="inner")
    return ResultSet(runs, merged, group_by, layer_stats, progress)


def check_model_args(runs: pd.DataFrame, group_by: list[str]) -> None:
    """A ``model_args.<name>`` group the runs do not have is an unknown model argument
    (a typo such as ``model_args.widht``), named with the arguments they do have."""
    known = [c.partition(".")[2] for c in runs.columns if c.startswith("model_args.")]
    for key in group_by:
        if not key.startswith("model_args.") or key in runs or runs.empty:
            continue
        if not known:
            raise InitlabError(f"cannot group by {key}: these runs have no model arguments")
        raise UnknownNameError("model argument", key.partition(".")[2], known)
