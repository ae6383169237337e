"""The results store's SQLite schema (version :data:`SCHEMA_VERSION`).

Tables:

* ``meta(key, value)``: ``schema_version``, ``created_at``, ``created_by`` (initlab version).
* ``runs``: one row per run, keyed by ``run_id`` = :meth:`RunConfig.key`. ``config`` is the
  config as JSON (authoritative); then one column per config field (``hidden`` as
  ``"300-100"``, ``extra`` as JSON, booleans 0/1) for querying; then the outcome:
  ``status`` (ok/stuck/diverged/failed), ``message``, test/train metrics, ``epochs_done``,
  ``resolved_task`` (the task the run trained for: ``classification``, ``regression`` or
  ``sequence``, resolved from the data when the config says ``auto``; it names what
  ``test_accuracy`` and the ``*_accuracy`` epoch metrics hold: accuracy, R², token accuracy),
  timings (``train_seconds``, ``wall_seconds``, ``started_at``/``finished_at`` ISO-8601 UTC),
  ``engine``, ``attempts`` and where it ran (``resolved_device``: ``cpu`` or ``cuda:0
  (NVIDIA H200)``, the device ``auto`` chose; ``host``, initlab/torch/python versions, and
  ``blas``: the BLAS code path, e.g. ``MKL AVX512_E1``, see :mod:`initlab.mkl_dispatch`).
* ``epochs``: one row per (run, epoch): the standard metrics as columns, any other metric of
  the epoch record in ``more`` (JSON).
* ``layer_stats``: tidy per-layer rows ``(run_id, epoch, step, layer, metric, value)``.
* ``studies`` (``study_id`` = the spec's hash, ``name``, ``spec`` JSON, ``group_by`` JSON,
  timestamps) and ``study_runs(study_id, run_id, position)``: which runs a spec asked for, in
  grid order. A run can belong to several studies; its results are stored once.
* ``leases(run_id, owner, expires)``: which process is training a run, until when (Unix
  time); see :mod:`initlab.store.leases`. Added to older stores when they are opened.

Config fields added to :class:`RunConfig` later, and result columns added to
:data:`RESULT_COLUMNS` later, are added as columns when a store is opened (old rows get
NULL); that does not change the schema version. Readers take a NULL ``resolved_task`` (a
run recorded before the column existed) from the config's ``task``, ``auto`` as
classification (:func:`initlab.ranking.scores.run_tasks`).
"""

from __future__ import annotations

import sqlite3
import typing
from dataclasses import fields

from initlab._version import __version__
from initlab.config import RunConfig
from initlab.errors import InitlabError, option
from initlab.store.leases import LEASE_TABLE

SCHEMA_VERSION = 1
"""Bump when a change is not additive; :func:`initlab.store.open_store` refuses other versions."""

RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "TEXT NOT NULL"),
    ("message", "TEXT"),
    ("test_accuracy", "REAL"),
    ("test_loss", "REAL"),
    ("final_train_loss", "REAL"),
    ("final_val_accuracy", "REAL"),
    ("epochs_done", "INTEGER"),
    ("resolved_task", "TEXT"),
    ("resolved_device", "TEXT"),
    ("train_seconds", "REAL"),
    ("wall_seconds", "REAL"),
    ("engine", "TEXT"),
    ("attempts", "INTEGER"),
    ("host", "TEXT"),
    ("initlab_version", "TEXT"),
    ("torch_version", "TEXT"),
    ("python_version", "TEXT"),
    ("blas", "TEXT"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
    ("sources", "TEXT"),
)

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")

_AFFINITY = {bool: "INTEGER", int: "INTEGER", float: "REAL", str: "TEXT"}


def config_columns() -> list[tuple[str, str]]:
    """``(column, SQL type)`` for every :class:`RunConfig` field.

    Fields of mixed type (``bias``: a word or a number; ``track``: a word or a step count)
    get no declared type, so SQLite keeps each value as it was given.
    """
    hints = typing.get_type_hints(RunConfig)
    columns = []
    for f in fields(RunConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        base = args[0] if len(args) == 1 else hints[f.name]
        if f.name in ("hidden", "extra", "model_args"):
            sql = "TEXT"
        elif f.name == "bias":
            sql = ""
        else:
            sql = _AFFINITY.get(base, "")
        columns.append((f.name, sql))
    return columns


def create_statements() -> list[str]:
    """The ``CREATE TABLE``/``INDEX`` statements of a fresh store."""
    config_cols = ", ".join(f'"{name}" {sql}'.rstrip() for name, sql in config_columns())
    result_cols = ", ".join(f"{name} {sql}" for name, sql in RESULT_COLUMNS)
    metrics = ", ".join(f"{m} REAL" for m in EPOCH_METRICS)
    return [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE runs (run_id TEXT PRIMARY KEY, config TEXT NOT NULL, {config_cols}, "
        f"{result_cols})",
        f"CREATE TABLE epochs (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, {metrics}, "
        "more TEXT, PRIMARY KEY (run_id, epoch))",
        "CREATE TABLE layer_stats (run_id TEXT NOT NULL, epoch INTEGER, step INTEGER, "
        "layer TEXT, metric TEXT, value REAL)",
        "CREATE INDEX layer_stats_run ON layer_stats (run_id)",
        "CREATE TABLE studies (study_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "spec TEXT NOT NULL, group_by TEXT NOT NULL, created_at TEXT, updated_at TEXT)",
        "CREATE TABLE study_runs (study_id TEXT NOT NULL, run_id TEXT NOT NULL, "
        "position INTEGER NOT NULL, PRIMARY KEY (study_id, run_id))",
        "CREATE INDEX study_runs_run ON study_runs (run_id)",
        LEASE_TABLE,
    ]


def check_version(conn: sqlite3.Connection, path: object) -> None:
    """One line when the store at ``path`` has another schema than :data:`SCHEMA_VERSION`:
    a newer one needs a newer initlab; an older one, a new store."""
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else None
    if version == SCHEMA_VERSION:
        return
    creator = conn.execute("SELECT value FROM meta WHERE key='created_by'").fetchone()
    by = f", written by {creator[0]}" if creator else ""
    advice = (
        "upgrade initlab to read it"
        if version and version > SCHEMA_VERSION
        else f"re-run the sweep into a new {option('--out')} directory"
    )
    raise InitlabError(
        f"{path} uses results-store schema {version}{by}; this initlab "
        f"({__version__}) reads schema {SCHEMA_VERSION}: {advice}"
    )
