"""The embedded results store: one SQLite file per study directory.

Durability: the file is in WAL journal mode with ``synchronous=FULL``. Every finished run is
written in ONE transaction (its row, its epochs and its layer statistics), so a reader never
sees half a run and a process killed at any moment (SIGINT, SIGKILL) leaves every committed
run intact and nothing of the run being written. WAL alone already survives application
crashes with ``synchronous=NORMAL``; FULL also survives an OS crash or power loss (NORMAL
may roll back the last commits there). It costs one fsync per finished run — nothing next to
a run's seconds of training — so we take it. Readers (``initlab results``, a notebook) can
read while a sweep writes. Writers (several sweeps sharing a store, see
:mod:`initlab.store.leases`) wait up to :data:`~initlab.store.opening.BUSY_TIMEOUT` seconds
for the lock.

Damage: opening a store runs ``PRAGMA quick_check`` first and refuses a corrupt file in one
line before anything is written to it (:mod:`initlab.store.damage`); corruption met later,
while reading or writing, gives the same line. Opening a store to write first proves its
directory writable (:mod:`initlab.store.location`); :mod:`initlab.store.opening` checks,
sets up and migrates the file.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from initlab.checkpoints import Checkpoints, checkpoint_dir
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.notes import note
from initlab.run_status import FINISHED
from initlab.store import damage, leases, read
from initlab.store.location import check_writable
from initlab.store.opening import connect, read_only_line, transaction
from initlab.store.paths import folder_in_the_way, no_store, read_path, store_path
from initlab.store.rows import epoch_row, layer_row, now_iso, run_row
from initlab.store.schema import EPOCH_METRICS
from initlab.store.versions import older_versions, superseded

if TYPE_CHECKING:
    import pandas as pd

    from initlab.results import ResultSet
    from initlab.sweep.engine import Outcome

T = TypeVar("T")


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """A reading method whose corruption errors become :class:`StoreDamagedError`."""

    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> T:
        with damage.reading(self.path):
            return method(self, *args, **kwargs)

    return guarded


class Store:
    """A results store (see :mod:`initlab.store.schema` for the tables).

    Reading methods return pandas DataFrames; :meth:`results` a
    :class:`~initlab.results.ResultSet`. ``study`` arguments take a study's name (the most
    recent study of that name), its id, or a unique prefix of the id; ``None`` = all runs.
    """

    def __init__(self, path: str | Path | None, *, create: bool = True) -> None:
        pick = store_path if create else read_path  # reading: an existing file as it is
        self.path = None if path in (None, ":memory:") else pick(path)
        if self.path is not None and not self.path.exists() and not create:
            raise no_store(self.path)
        if self.path is not None and create:
            if self.path.is_dir():
                raise folder_in_the_way(self.path)
            check_writable(self.path)
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise InitlabError(read_only_line(self.path))
        self.read_only = (  # read-only media: no -shm to make, and no writer to expect
            self.path is not None and not create and not os.access(self.path.parent, os.W_OK)
        )
        self._conn = connect(self.path, create=create, read_only=self.read_only)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path) if self.path else ':memory:'})"

    # -- writing -----------------------------------------------------------------------------

    def add_study(
        self, study_id: str, name: str, spec: dict, group_by: Iterable[str], run_ids: list[str]
    ) -> None:
        """Record (or refresh) a study and the runs it asks for, in grid order."""
        stamp = now_iso()
        spec_json, group_json = json.dumps(spec, sort_keys=True), json.dumps(list(group_by))
        with transaction(self._conn, self.path):
            self._conn.execute(
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(study_id) DO UPDATE "
                "SET name=excluded.name, updated_at=excluded.updated_at",
                (study_id, name, spec_json, group_json, stamp, stamp),
            )
            self._conn.execute("DELETE FROM study_runs WHERE study_id=?", (study_id,))
            self._conn.executemany(
                "INSERT OR REPLACE INTO study_runs VALUES (?, ?, ?)",
                [(study_id, run_id, i) for i, run_id in enumerate(run_ids)],
            )

    def record(self, outcome: Outcome) -> bool:
        """Store one finished run — row, epochs, layer stats — in one transaction, and drop
        its lease. Returns ``False`` (and writes nothing) when the store already has the run
        finished: a finished run is never overwritten, whoever trained it.

        A run stored before as ``failed`` (being retried) is replaced; ``attempts`` counts.
        """
        row = run_row(outcome)
        epochs = [epoch_row(row["run_id"], e) for e in outcome.result.epochs]
        layers = [layer_row(row["run_id"], s) for s in outcome.result.layer_stats]
        with transaction(self._conn, self.path):
            prev = self._conn.execute(
                "SELECT attempts, status FROM runs WHERE run_id=?", (row["run_id"],)
            ).fetchone()
            self._conn.execute("DELETE FROM leases WHERE run_id=?", (row["run_id"],))
            if prev is not None and prev[1] in FINISHED:
                return False
            row["attempts"] = (prev[0] or 0) + 1 if prev else 1
            self._conn.execute("DELETE FROM epochs WHERE run_id=?", (row["run_id"],))
            self._conn.execute("DELETE FROM layer_stats WHERE run_id=?", (row["run_id"],))
            names = ", ".join(f'"{k}"' for k in row)
            marks = ", ".join("?" * len(row))
            self._conn.execute(
                f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", list(row.values())
            )
            width = 3 + len(EPOCH_METRICS)
            self._conn.executemany(f"INSERT INTO epochs VALUES ({', '.join('?' * width)})", epochs)
            self._conn.executemany("INSERT INTO layer_stats VALUES (?, ?, ?, ?, ?, ?)", layers)
        return True

    # -- leases (several processes sharing one store) -----------------------------------------

    def attempts(self, run_ids: Iterable[str]) -> dict[str, int]:
        """``run_id → attempts`` so far (0 for runs never stored)."""
        with damage.reading(self.path):
            return leases.attempts(self._conn, run_ids)

    def claim(
        self, run_ids: Iterable[str], owner: str, baseline: dict[str, int], ttl: float
    ) -> tuple[list[str], list[str]]:
        """Lease the free ones of ``run_ids`` for ``owner`` in one write transaction;
        ``(claimed, held by another owner)`` (:func:`initlab.store.leases.claim`)."""
        with transaction(self._conn, self.path):
            return leases.claim(self._conn, run_ids, owner, baseline, ttl)

    def holders(self, run_ids: Iterable[str]) -> list[tuple[str, int, float]]:
        """Who holds leases on ``run_ids`` (:func:`initlab.store.leases.holders`)."""
        return leases.holders(self._conn, run_ids)

    def release(self, owner: str) -> None:
        """Drop every lease ``owner`` still holds (runs it did not record)."""
        with transaction(self._conn, self.path):
            leases.release(self._conn, owner)

    # -- reading -----------------------------------------------------------------------------

    @_guarded
    def statuses(self, run_ids: Iterable[str] | None = None) -> dict[str, str]:
        """``run_id → status`` of the stored runs (of ``run_ids`` only, if given)."""
        rows = self._conn.execute("SELECT run_id, status FROM runs").fetchall()
        wanted = None if run_ids is None else set(run_ids)
        return {r: s for r, s in rows if wanted is None or r in wanted}

    def finished_ids(self, run_ids: Iterable[str] | None = None) -> set[str]:
        """Runs that are done (ok, stuck or diverged); resuming skips them."""
        return {r for r, s in self.statuses(run_ids).items() if s in FINISHED}

    @_guarded
    def resolve_study(self, study: str | None) -> str | None:
        """The id of the study called (or with id / id prefix) ``study``."""
        return read.resolve_study(self._conn, study)

    @_guarded
    def studies(self) -> pd.DataFrame:
        """One row per study: id, name, group_by, planned/done/failed run counts, times."""
        return read.studies(self._conn)

    @_guarded
    def study_group_by(self, study: str | None) -> list[str] | None:
        """The ``group_by`` a study was recorded with (``None`` for no study)."""
        return read.study_group_by(self._conn, self.resolve_study(study))

    @_guarded
    def runs(self, study: str | None = None) -> pd.DataFrame:
        """One row per stored run: ``run_id``, the config's fields, the outcome columns."""
        return read.runs(self._conn, self.resolve_study(study))

    @_guarded
    def epochs(self, study: str | None = None) -> pd.DataFrame:
        """One row per (run, epoch): ``run_id``, ``epoch`` and every recorded metric."""
        return read.epochs(self._conn, self.resolve_study(study))

    @_guarded
    def layer_stats(self, study: str | None = None, *, with_config: bool = False) -> pd.DataFrame:
        """Tidy rows ``run_id, epoch, step, layer, metric, value`` (+ config columns)."""
        frame = read.layer_stats(self._conn, self.resolve_study(study))
        if with_config and not frame.empty:
            frame = frame.merge(self.runs(study), on="run_id", how="left")
        return frame

    @_guarded
    def older_versions(self, configs: Sequence[RunConfig]) -> str:
        """:func:`initlab.store.versions.older_versions` of this store's finished runs."""
        return older_versions(read.run_configs(self._conn, FINISHED), configs)

    def superseded(self, study_id: str) -> str:
        """:func:`initlab.store.versions.superseded`: this store's finished runs outside the
        study (its own runs, kept though trained on older files, are not superseded)."""
        mine = read.study_configs(self._conn, study_id)
        stored = read.run_configs(self._conn, FINISHED)
        configs = [RunConfig.from_dict(json.loads(text)) for text in mine["config"]]
        return superseded(stored[~stored["run_id"].isin(mine["run_id"])], configs)

    @_guarded
    def configs(self, study: str | None = None) -> list[RunConfig]:
        """The stored runs' configs, rebuilt from their JSON."""
        ids = self.runs(study)["run_id"].tolist() if study else None
        rows = self._conn.execute("SELECT run_id, config FROM runs").fetchall()
        found = {r: RunConfig.from_dict(json.loads(c)) for r, c in rows}
        return [found[r] for r in ids] if ids is not None else list(found.values())

    @_guarded
    def results(self, study: str | None = None, group_by: list[str] | None = None) -> ResultSet:
        """The runs of ``study`` (a name or id; ``None``: the store's only study, or every
        run of a store holding several) as a :class:`ResultSet`, grouped by ``group_by``,
        else the study's ``group_by``, else the settings that vary between the runs (except
        the seed); for a study not finished yet, its ``progress`` says how many runs are
        missing."""
        study_id = self.resolve_study(study) if study is not None else read.only_study(self._conn)
        if study_id is not None and (said := self.superseded(study_id)):
            note(said)
        runs = read.runs(self._conn, study_id)
        group_by = group_by or read.study_group_by(self._conn, study_id) or read.varying(runs)
        epochs, layers = read.epochs(self._conn, study_id), read.layer_stats(self._conn, study_id)
        if layers is not None and "run_id" in layers:  # not of runs current_runs left out
            layers = layers[layers["run_id"].isin(runs["run_id"])]
        saves = Checkpoints(str(checkpoint_dir(self.path))) if self.path is not None else None
        progress = read.study_progress(self._conn, study_id, saves)
        return read.result_set(runs, epochs, group_by, layers, progress)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]
