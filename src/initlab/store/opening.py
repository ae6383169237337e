"""Opening a store's SQLite file, and the write transaction every writer uses.

:func:`connect` refuses what is no store (an empty file opened to read, another program's
database, a damaged file: :mod:`initlab.store.damage`) before anything is written to it,
switches the file to WAL with ``synchronous=FULL`` (the durability of
:mod:`initlab.store.sqlite`), then creates the tables (:mod:`initlab.store.schema`) or adds
the columns and tables added since the store was made. Another process may hold a lock
SQLite does not wait for; opening tries again for up to :data:`BUSY_TIMEOUT` seconds.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from initlab._version import __version__
from initlab.errors import InitlabError, option
from initlab.store import damage, leases
from initlab.store.damage import EMPTY_STORE
from initlab.store.location import is_busy, location_error, locked_line
from initlab.store.paths import read_only_uri
from initlab.store.rows import now_iso
from initlab.store.schema import (
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    check_version,
    config_columns,
    create_statements,
)

BUSY_TIMEOUT = 60.0
"""Seconds a writer (or an opening) waits for another process's lock."""


def read_only_line(path: Path | None) -> str:
    """What to say of a store file this process may not write."""
    return f"results store {path} is read-only: make it writable or give another {option('--out')}"


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path | None) -> Iterator[None]:
    """One write transaction: everything inside commits together or not at all.

    SQLite may already have rolled back (a full disk does that), hence the check.
    """
    with damage.reading(path):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if "readonly" in str(exc):  # root passes os.access; a read-only mount
                raise InitlabError(read_only_line(path)) from None
            raise


def connect(path: Path | None, *, create: bool, read_only: bool) -> sqlite3.Connection:
    """A connection to the store at ``path`` (``None``: in memory), checked and set up;
    ``create``: make the tables of a new store; ``read_only``: the file is on read-only
    media (read through a URI, nothing set up, no writer to expect)."""
    target = ":memory:" if path is None else str(path)
    if read_only:
        target = read_only_uri(path)
    try:
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT, isolation_level=None, uri=read_only)
    except sqlite3.OperationalError as exc:
        raise location_error(path, OSError(str(exc))) from None
    try:
        _set_up_when_free(conn, path, create, read_only)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if is_busy(exc):
            raise InitlabError(locked_line(path, BUSY_TIMEOUT)) from None
        raise InitlabError(f"{path} is not an initlab results store ({exc})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _set_up_when_free(
    conn: sqlite3.Connection, path: Path | None, create: bool, read_only: bool
) -> None:
    """:func:`_set_up`, tried again while another process holds a lock SQLite does not
    wait for (switching to WAL, WAL recovery after a killed writer), for at most
    :data:`BUSY_TIMEOUT` seconds."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            with damage.reading(path):
                _set_up(conn, path, create, read_only)
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05 + 0.1 * random.random())


def _set_up(conn: sqlite3.Connection, path: Path | None, create: bool, read_only: bool) -> None:
    empty = path is not None and path.stat().st_size == 0
    if empty and not create:  # before WAL mode writes a header into it
        raise InitlabError(EMPTY_STORE.format(path=path))
    if path is not None and not empty:
        _check_damage(conn, path)  # before anything is written
    tables = _tables(conn)
    if _foreign(conn, tables):  # before WAL mode rewrites the user's file
        raise InitlabError(f"{path} is an SQLite file but not an initlab results store")
    if read_only:
        check_version(conn, path)
        return
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")  # needs the exclusive lock
    conn.execute("PRAGMA synchronous=FULL")
    if not tables:
        if not create:
            raise InitlabError(EMPTY_STORE.format(path=path))
        _create(conn, path)
        return
    check_version(conn, path)
    _add_new_columns(conn, path)
    _add_new_tables(conn)


def _check_damage(conn: sqlite3.Connection, path: Path) -> None:
    """:func:`damage.check`; a file that fails it because it is no SQLite file at all (a
    text file named ``initlab.db``) is refused as such, not sent to ``store repair``."""
    try:
        damage.check(conn, path)
    except damage.StoreDamagedError:
        from initlab.store.repair import check_file  # repair builds on the store

        check_file(path)  # raises for a file that is not a store
        raise


def _foreign(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """Whether the file is another program's SQLite database: tables without initlab's
    ``meta`` and ``runs``, or none but a ``user_version`` initlab never sets (an empty
    database is a store a killed process had only begun to create)."""
    if tables:
        return "meta" not in tables or "runs" not in tables
    return conn.execute("PRAGMA user_version").fetchone()[0] != 0


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


def _create(conn: sqlite3.Connection, path: Path | None) -> None:
    """Create the tables, under the write lock, unless another process just did."""
    with transaction(conn, path):
        if _tables(conn):
            return
        for statement in create_statements():
            conn.execute(statement)
        meta = {"schema_version": SCHEMA_VERSION, "created_at": now_iso()}
        meta["created_by"] = f"initlab {__version__}"
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())


def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    present = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    return [(n, sql) for n, sql in [*config_columns(), *RESULT_COLUMNS] if n not in present]


def _add_new_columns(conn: sqlite3.Connection, path: Path | None) -> None:
    """Add the columns of config fields or results added since the store was created.

    Under the write lock, checking again inside it: several processes may open an old
    store at once (a sweep and ``initlab results``), and only one may add a column.
    """
    if not _missing_columns(conn):
        return
    with transaction(conn, path):
        for name, sql in _missing_columns(conn):
            conn.execute(f'ALTER TABLE runs ADD COLUMN "{name}" {sql}'.rstrip())


def _add_new_tables(conn: sqlite3.Connection) -> None:
    """Add the ``leases`` table to a store written before it existed."""
    query = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='leases'"
    if conn.execute(query).fetchone() is None:
        conn.execute(leases.LEASE_TABLE)
