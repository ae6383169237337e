"""Salvaging a damaged results store: ``initlab store repair DIR``.

Python's ``sqlite3`` has no ``.recover``, so the salvage reads the damaged file table by
table in rowid ranges (:data:`BLOCK` rows at a time). A range that raises is halved until
the single unreadable rows are found; those are lost, everything around them is kept, so
one bad page loses only the rows it holds. A damaged 100-byte file header ("file is not a
database") is replaced, in a temporary copy, by a sound header of the same page size first.

A run is *recovered* when its ``runs`` row reads back finished (``ok``, ``stuck``,
``diverged``) with a config whose key is its ``run_id``, and all of its ``epochs_done``
epoch rows read back; its layer statistics come with it (those that survived). Runs whose row
or epochs were lost are *lost*: resuming the study trains them again. ``failed`` runs are
neither (a resume retries them anyway). The salvaged runs and the studies go into a fresh
store at the same path; the damaged file is kept beside it as
``initlab.db.damaged-<UTC timestamp>``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.run_status import FINISHED
from initlab.store import damage
from initlab.store.paths import no_store, read_only_uri, read_path
from initlab.store.sqlite import Store
from initlab.usercode.specs import is_user_spec

BLOCK = 256
"""Rows read per query while the file reads cleanly."""

SQLITE_MAGIC = b"SQLite format 3\x00"
TABLES = ("runs", "epochs", "layer_stats", "studies", "study_runs")


class NotSQLiteError(InitlabError):
    """A file that is no SQLite file at all, given as a store (a spec, a text file, an
    ``.npz``): ``path`` is the file, so a command can say what it takes instead; the message
    is the one ``store check``/``repair`` and a sweep into it print."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"{path} is not an initlab results store (not an SQLite file): initlab will not "
            "write into it; move it away, or give another directory, to run a study there"
        )


NOTHING_TO_REPAIR = " (there is no store in it to check or repair)"
"""What ``store check``/``repair`` add to a :class:`NotSQLiteError` (a sweep does not)."""


@dataclass
class RepairReport:
    """What a repair salvaged: run counts, rows per table, where the files went."""

    store: Path
    damaged: Path
    recovered: int = 0
    lost: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    curves_lost: int = 0
    """Lost runs whose own row read back sound but some of whose epoch rows did not."""

    def line(self) -> str:
        """``recovered 10 finished runs, lost 2; the damaged file is kept as ...``."""
        rows = ", ".join(f"{t} {n}" for t, n in self.rows.items())
        why = (
            f" ({self.curves_lost} of them read back whole but for their per-epoch rows: a run "
            "is kept only with its learning curve, and resuming trains it again)"
            if self.curves_lost
            else ""
        )
        return (
            f"recovered {self.recovered} finished run(s), lost {self.lost}{why}, into "
            f"{self.store} (rows: {rows}); the damaged file is kept as {self.damaged}"
        )


def repair(path: str | Path) -> RepairReport:
    """Salvage the store at ``path`` (a directory or ``.db`` file) into a new file there.

    Raises :class:`InitlabError` when there is no store, or when it is not damaged.
    """
    db = read_path(path)
    if not db.exists():
        raise no_store(db)
    problem = check_file(db)
    if problem is None:
        raise InitlabError(f"results store {db} is sound (quick_check: ok); nothing to repair")
    try:
        tables, lost_ids = salvage(db)
    except sqlite3.DatabaseError as exc:
        raise InitlabError(
            f"{db} cannot be read as an SQLite file at all ({exc}): nothing in it can be "
            "salvaged; move it away and run the study again"
        ) from None
    except OSError as exc:  # the scratch copy (a full temporary directory): not the store's
        raise InitlabError(
            f"cannot copy {db} to salvage it ({exc.strerror or exc}); {db} is left as it was"
        ) from None
    fresh = db.with_name(f"{db.stem}.repairing{db.suffix}")
    report = RepairReport(db, db)
    try:  # the new store is complete before the damaged one is moved: a full disk loses nothing
        _write_salvage(fresh, tables, lost_ids, report)
    except (sqlite3.Error, OSError, InitlabError) as exc:
        _move_with_wal(fresh, None)
        raise InitlabError(
            f"cannot write the repaired store beside {db} ({exc}); {db} is left as it was"
        ) from None
    report.damaged = _set_aside(db)
    _move_with_wal(fresh, db)
    return report


def _write_salvage(
    fresh: Path, tables: dict[str, list[dict]], lost_ids: set[str], report: RepairReport
) -> None:
    """A new store at ``fresh`` (this initlab's schema) holding the salvaged ``tables``."""
    _move_with_wal(fresh, None)  # left by a repair killed before
    Store(fresh, create=True).close()
    report.recovered, report.lost, report.curves_lost = _select_runs(tables, lost_ids)
    with closing(sqlite3.connect(fresh, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for table, rows in tables.items():
            report.rows[table] = _insert(conn, table, rows)
        conn.execute("COMMIT")


def check_file(db: Path) -> str | None:
    """``None`` when ``db`` passes quick_check, else the first complaint (writes nothing).
    Raises :class:`InitlabError` for an empty file (a store no sweep has written to yet:
    nothing to check or repair), and for a file that is not an initlab store at all (no
    SQLite file, even behind a mended header; an SQLite file without initlab's tables)."""
    if db.stat().st_size == 0:
        raise InitlabError(
            f"{db} is an empty file: no study has been stored in it yet (a sweep into it "
            "uses it as a new store)"
        )
    try:
        with closing(_connect_ro(db)) as conn:
            problem = damage.quick_check(conn)
            tables = set() if problem else _table_names(conn)
            problem = problem or damage.missing_tables(conn)
    except sqlite3.DatabaseError as exc:
        if not damage.is_damage(exc):
            raise
        problem, tables = str(exc), set()
    if problem is None and not {"meta", "runs"} <= tables:  # (missing_tables needs them)
        raise InitlabError(f"{db} is an SQLite file but not an initlab results store")
    if problem is not None and not _salvageable(db):
        raise NotSQLiteError(db)
    return problem


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _salvageable(db: Path) -> bool:
    """Whether ``db`` looks like an SQLite file: its header says so, or a copy with a
    mended header (:func:`_mend_header`) lists tables. A text file does neither."""
    with open(db, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
            return True
    with tempfile.TemporaryDirectory(prefix="initlab-check-") as scratch:
        copy = Path(scratch) / db.name
        shutil.copyfile(db, copy)
        _mend_header(copy)
        try:
            with closing(_connect_ro(copy)) as conn:
                return bool(_table_names(conn))
        except sqlite3.DatabaseError:
            return False


def salvage(db: Path) -> tuple[dict[str, list[dict]], set[str]]:
    """Every readable row of each table (as dicts) and the ids of runs seen but unreadable."""
    with tempfile.TemporaryDirectory(prefix="initlab-repair-") as scratch:
        copy = Path(scratch) / db.name
        shutil.copyfile(db, copy)
        for suffix in ("-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
        _pad_truncated(copy)
        _mend_header(copy)
        with closing(sqlite3.connect(copy, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            tables = {t: list(_table_rows(conn, t)) for t in TABLES}
            seen = _ids_seen(conn, tables)
    return tables, seen


def _connect_ro(db: Path) -> sqlite3.Connection:
    """Read only (:func:`~initlab.store.paths.read_only_uri`)."""
    return sqlite3.connect(read_only_uri(db), uri=True, isolation_level=None)


def _pad_truncated(copy: Path) -> None:
    """Give a truncated ``copy`` (a partial copy, a disk that filled up) back the length its
    header declares (bytes 28-31: pages, × the page size at 16-17), zero-filled: SQLite
    refused the whole file ('invalid rootpage') when a table's root page lay past its end,
    though the pages before it held the finished runs. The zero pages read as damaged, and
    only the tables on them are lost."""
    with open(copy, "r+b") as f:
        header = f.read(100)
        if len(header) < 100 or header[:16] != SQLITE_MAGIC:
            return
        page, pages = _page_size(header), struct.unpack(">I", header[28:32])[0]
        if page is None or pages * page > 2**40:
            return  # no sane size to restore (the padding is sparse: cheap up to that)
        size = f.seek(0, os.SEEK_END)
        if size < pages * page:
            f.truncate(pages * page)


def _page_size(header: bytes) -> int | None:
    """The page size an SQLite header declares (bytes 16-17; 1 means 65536), ``None`` when
    it is no power of two from 512 up."""
    page = struct.unpack(">H", header[16:18])[0]
    page = 65536 if page == 1 else page
    return None if page < 512 or page & (page - 1) else page


def _mend_header(copy: Path) -> None:
    """Give ``copy`` a sound SQLite header if its own is unreadable (page size kept if sane).

    The header written declares no freelist and the file's size as computed from its
    length (the 'version valid for' counter differs from the change counter), so SQLite
    trusts only the pages themselves.
    """
    with open(copy, "r+b") as f:
        header = f.read(100)
    if len(header) < 100:
        return
    try:
        with closing(_connect_ro(copy)) as conn:
            conn.execute("SELECT name FROM sqlite_master").fetchall()
        return
    except sqlite3.DatabaseError:
        pass
    page = _page_size(header) or 4096
    fresh = bytearray(SQLITE_MAGIC)
    fresh += struct.pack(">HBBBBBB", page if page < 65536 else 1, 1, 1, 0, 64, 32, 32)
    fresh += struct.pack(">II", 1, 0) + struct.pack(">II", 0, 0)  # counter, size, freelist
    fresh += struct.pack(">IIIIIIII", 1, 4, 0, 0, 1, 0, 0, 0)  # cookie, format 4, UTF-8
    fresh += bytes(20) + struct.pack(">II", 2, 3046000)  # reserved, valid-for != counter
    with open(copy, "r+b") as f:
        f.write(bytes(fresh))
    for suffix in ("-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)


def _table_rows(conn: sqlite3.Connection, table: str) -> Iterator[dict]:
    """The readable rows of ``table`` in rowid order; unreadable ranges are skipped."""
    top = _max_rowid(conn, table)
    if top is None:
        return
    for start in range(0, top + 1, BLOCK):
        yield from _read_range(conn, table, start, min(start + BLOCK - 1, top))


def _max_rowid(conn: sqlite3.Connection, table: str) -> int | None:
    """The largest rowid; past an unreadable right edge, an upper bound from the file size."""
    try:
        found = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
        return None if found is None else int(found)
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return max(BLOCK, pages * 64)  # no page holds more than a few dozen of our rows


def _read_range(conn: sqlite3.Connection, table: str, low: int, high: int) -> Iterator[dict]:
    """Rows with ``low <= rowid <= high``, halving the range around rows that fail. A range
    that reads back short (fewer rows than rowids) is halved too: a damaged page can end a
    scan early without an error (7 of 16 rows read, 15 of them readable one by one)."""
    # one rowid: an exact seek (BETWEEN steps on to the next cell, which may be the bad one)
    query = "rowid = ?" if low == high else "rowid BETWEEN ? AND ?"
    try:
        rows = conn.execute(
            f"SELECT * FROM {table} WHERE {query}", (low,) if low == high else (low, high)
        ).fetchall()
    except sqlite3.DatabaseError:
        rows = None
    if rows is not None and (len(rows) == high - low + 1 or low == high):
        yield from (dict(r) for r in rows)
        return
    if low == high:
        return
    middle = (low + high) // 2
    yield from _read_range(conn, table, low, middle)
    yield from _read_range(conn, table, middle + 1, high)


def _ids_seen(conn: sqlite3.Connection, tables: dict[str, list[dict]]) -> set[str]:
    """Run ids known to exist: from the runs' primary-key index (read as far as it goes)
    and from the child tables — the runs that a lost ``runs`` row belonged to."""
    seen = {r["run_id"] for t in ("runs", "epochs", "layer_stats") for r in tables[t]}
    seen.discard(None)  # a row read off a torn page (a truncated file): no run's
    try:
        for (run_id,) in conn.execute("SELECT run_id FROM runs INDEXED BY sqlite_autoindex_runs_1"):
            seen.add(run_id)
    except sqlite3.DatabaseError:
        pass
    return seen


def _select_runs(tables: dict[str, list[dict]], seen: set[str]) -> tuple[int, int, int]:
    """Keep only recovered runs (and their children) in ``tables``; ``(recovered, lost,
    lost with a sound row but missing epoch rows)``."""
    epochs: dict[str, set[int]] = {}
    for row in tables["epochs"]:
        epochs.setdefault(row["run_id"], set()).add(row["epoch"])
    kept, failed, curves_lost = set(), set(), 0
    for row in tables["runs"]:
        if row.get("status") not in FINISHED:
            failed.add(row["run_id"])
        elif _sound(row):
            whole = set(range(1, (row.get("epochs_done") or 0) + 1))
            if whole <= epochs.get(row["run_id"], set()):
                kept.add(row["run_id"])
            else:
                curves_lost += 1
    for table in ("runs", "epochs", "layer_stats"):
        tables[table] = [r for r in tables[table] if r.get("run_id") in kept]
    return len(kept), len(seen - kept - failed), curves_lost


def _sound(row: dict) -> bool:
    """Whether a salvaged runs row holds a config whose key is its run id. A user model's
    or data's key hashes its source file as it is *now* (edited, moved, another machine),
    so such a row is sound when its config parses and agrees with the row's own columns."""
    try:
        config = RunConfig.from_dict(json.loads(row["config"]))
        if not (is_user_spec(config.model) or is_user_spec(config.dataset)):
            return config.key() == row["run_id"]
        return all(str(row.get(k)) == str(getattr(config, k)) for k in AGREE)
    except Exception:  # garbage bytes decode to anything
        return False


AGREE = ("model", "dataset", "init", "seed", "epochs", "lr", "optimizer")
"""Columns a user-model run's row must agree on with its config to count as sound."""


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict]) -> int:
    """Insert ``rows`` into ``table`` (the columns both files have); returns how many."""
    present = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    done = 0
    for row in rows:
        names = [n for n in row if n in present]
        quoted = ", ".join(f'"{n}"' for n in names)
        marks = ", ".join("?" * len(names))
        try:
            conn.execute(
                f"INSERT OR IGNORE INTO {table} ({quoted}) VALUES ({marks})",
                [row[n] for n in names],
            )
            done += 1
        except sqlite3.Error:  # a garbled row that breaks a constraint
            continue
    return done


def _set_aside(db: Path) -> Path:
    """Move ``db`` (and its WAL files) to ``db.damaged-<timestamp>``; returns the new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    _move_with_wal(db, target)
    return target


def _move_with_wal(source: Path, target: Path | None) -> None:
    """Move ``source`` and its ``-wal``/``-shm`` files to ``target`` (``None``: delete them)."""
    for suffix in ("", "-wal", "-shm"):
        found = Path(f"{source}{suffix}")
        if not found.exists():
            continue
        if target is None:
            found.unlink()
        else:
            os.replace(found, f"{target}{suffix}")
