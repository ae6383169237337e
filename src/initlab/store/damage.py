"""Telling a damaged results store from a sound one, in one line the user can act on.

Every command that opens a store runs SQLite's ``PRAGMA quick_check`` first (it reads every
page once, without checking that the indexes match their tables: linear in the file's size,
milliseconds for a study's store). A store that fails it, and any SQLite or pandas
``DatabaseError`` that says the file is corrupt while it is read, becomes a
:class:`StoreDamagedError`::

    results store out/initlab.db is damaged (database disk image is malformed); run
    `initlab store repair out` to salvage its finished runs

Errors that are not damage (a lock held too long, a full disk, a missing directory) are left
as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from initlab.errors import InitlabError

DB_NAME = "initlab.db"
EMPTY_STORE = (
    "{path} is an empty file: no study has been stored in it yet (a sweep into it uses it "
    "as a new store)"
)
"""Said of a zero-byte store file opened for reading (which is left as it is)."""
CORRUPT_CODES = (11, 26)
"""``SQLITE_CORRUPT`` and ``SQLITE_NOTADB``: the file's bytes are wrong."""


class StoreDamagedError(InitlabError):
    """The store's file is corrupt; the message names ``initlab store repair``."""


def damaged_message(path: Path | None, detail: str) -> str:
    """The one line shown for a damaged store at ``path`` (``DIR/initlab.db``)."""
    directory = path.parent if path is not None and path.name == DB_NAME else path
    lines = [x.strip() for x in str(detail).splitlines() if x.strip()]
    lines = [x for x in lines if not x.startswith("***")] or ["unreadable"]
    first = lines[0]
    return (
        f"results store {path} is damaged ({first}); run `initlab store repair {directory}` "
        "to salvage its finished runs"
    )


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` (an sqlite3 or pandas ``DatabaseError``) says the file is corrupt."""
    cause = _sqlite_cause(exc)
    if not isinstance(cause, sqlite3.DatabaseError):
        return False
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in CORRUPT_CODES
    text = str(cause).lower()
    return "malformed" in text or "not a database" in text


def quick_check(conn: sqlite3.Connection) -> str | None:
    """``None`` when ``PRAGMA quick_check`` passes, else its first complaint."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    first = rows[0][0] if rows else "no answer from quick_check"
    return None if first == "ok" else str(first)


STORE_TABLES = ("meta", "runs", "epochs", "layer_stats", "studies", "study_runs")
"""The tables of an initlab store (:mod:`initlab.store.schema`)."""


def missing_tables(conn: sqlite3.Connection) -> str | None:
    """``no epochs table`` for an initlab store (``meta`` and ``runs`` there) that lacks
    some of :data:`STORE_TABLES` (dropped: quick_check passes it, and reading failed on a
    pandas traceback); ``None`` when none is missing or the file is no initlab store yet."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = [t for t in STORE_TABLES if t not in names]
    if not missing or not {"meta", "runs"} <= names:
        return None
    return f"no {', '.join(missing)} table{'s' if len(missing) > 1 else ''}"


def check(conn: sqlite3.Connection, path: Path | None) -> None:
    """Raise :class:`StoreDamagedError` unless the store at ``path`` passes quick_check
    and has every table (:func:`missing_tables`)."""
    problem = quick_check(conn)
    if problem is None:
        problem = missing_tables(conn)
    if problem is not None:
        raise StoreDamagedError(damaged_message(path, problem))


@contextmanager
def reading(path: Path | None) -> Iterator[None]:
    """Turn corruption found while reading or writing into :class:`StoreDamagedError`."""
    import pandas as pd

    try:
        yield
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        if not is_damage(exc):
            raise
        reason = _sqlite_cause(exc) or exc  # pandas prefixes SQLite's message with the SQL
        raise StoreDamagedError(damaged_message(path, str(reason))) from None


def _sqlite_cause(exc: BaseException) -> sqlite3.Error | None:
    """``exc`` itself or the first ``sqlite3.Error`` it was raised from, if any."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, sqlite3.Error):
        cause = cause.__cause__ or cause.__context__
    return cause
