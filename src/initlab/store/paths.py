"""Where a study's files are: its store file, and the directory of its tables beside it."""

from __future__ import annotations

import os
from pathlib import Path

from initlab.errors import InitlabError
from initlab.store.damage import DB_NAME


def store_path(path: str | Path) -> Path:
    """``DIR`` → ``DIR/initlab.db``; a path ending in ``.db``/``.sqlite`` is used as is."""
    path = Path(path)
    if path.suffix in (".db", ".sqlite", ".sqlite3") and not path.is_dir():
        return path
    return path / DB_NAME


def no_store(db: Path) -> InitlabError:
    """The one line for a store path with nothing there, and what writes one."""
    return InitlabError(
        f"no results store at {db} (`initlab compare --out DIR` or `initlab sweep SPEC --out "
        "DIR` writes one)"
    )


def folder_in_the_way(db: Path) -> InitlabError:
    """The one line for a folder where the store file goes (SQLite says "disk I/O error"
    reading it, "unable to open database file" writing it)."""
    return InitlabError(f"{db} is a folder, not a results store file: move it away")


def read_path(path: str | Path) -> Path:
    """The store file to read at ``path``: an existing file as it is, whatever its name
    (``images.npz`` is then refused as no store, not looked for as ``images.npz/initlab.db``);
    else :func:`store_path`. An empty file no sweep would take as its store (not ``*.db``)
    is refused here."""
    path = Path(path)
    if not path.exists() or path.is_dir():
        found = store_path(path)
        if found.is_dir():  # SQLite said "disk I/O error" of a folder named initlab.db
            raise folder_in_the_way(found)
        return found
    if store_path(path) != path and path.stat().st_size == 0:
        raise InitlabError(f"{path} is not an initlab results store (an empty file)")
    return path


def read_only_uri(db: Path) -> str:
    """An SQLite URI that reads ``db`` and writes nothing: ``mode=ro`` where its directory
    is writable (SQLite may make the ``-shm`` it needs); on read-only media ``immutable=1``
    (no ``-shm`` to make, no lock to take), unless a writer stopped before merging its
    write-ahead log (``-wal``, kill -9): immutable reads ignore the log, and a store whose
    runs were still in it read as 'not an initlab results store'. ``mode=ro`` reads the
    log through the ``-shm`` that writer left (SQLite >= 3.22)."""
    log, shared = Path(f"{db}-wal"), Path(f"{db}-shm")
    unmerged = log.is_file() and log.stat().st_size > 0 and shared.is_file()
    writable = os.access(db.parent, os.W_OK)
    return f"file:{db}?{'mode=ro' if writable or unmerged else 'immutable=1'}"


def study_dir(path: str | Path) -> Path:
    """Where a study's CSVs and plot go beside its store: ``DIR`` itself, the directory of
    ``DIR/initlab.db``, or ``DIR/NAME`` for another store file ``DIR/NAME.db`` (two stores
    in one directory would overwrite each other's CSVs)."""
    path = Path(path)
    if store_path(path) != path:
        return path
    return path.parent if path.name == DB_NAME else path.with_suffix("")
