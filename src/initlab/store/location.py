"""Checking that a store can be written where the user asked, before any work starts.

``--out /proc/x``, ``--out /dev/null/x``, a read-only mount, a file where a directory is
expected, a full disk: each becomes one :class:`StoreLocationError` line naming the path and
the operating system's reason, instead of an ``OSError`` or ``sqlite3.OperationalError``
traceback (root ignores permission bits, so the probe really writes: it creates the
directory, then writes and fsyncs :data:`PROBE_BYTES` in a temporary file there).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from initlab.atomic_files import file_in_the_way, resolved
from initlab.errors import InitlabError

PROBE_BYTES = 64 * 1024
"""What the probe writes: a few SQLite pages, so a disk that is already full says so."""


class StoreLocationError(InitlabError):
    """The results store cannot be written at the path the user gave."""


def describe(exc: OSError) -> str:
    """The reason of an ``OSError`` in words: ``read-only file system``."""
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc)


def location_error(path: Path, exc: OSError, what: str = "the results store") -> StoreLocationError:
    """``cannot write the results store at DIR: read-only file system``."""
    return StoreLocationError(f"cannot write {what} at {path}: {describe(exc)}")


def check_writable(target: Path, what: str = "the results store") -> None:
    """Create ``target``'s directory if needed and prove a file can be written in it.

    Raises :class:`StoreLocationError` naming the directory and the reason.
    """
    directory = target.parent
    blocker = file_in_the_way(resolved(directory))
    if blocker is not None:
        raise StoreLocationError(
            f"cannot write {what} at {directory}: {blocker} is a file, not a directory"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".initlab-probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise location_error(directory, exc, what) from None


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def locked_line(path: Path | None, seconds: float) -> str:
    """What to say when the store stayed locked past ``BUSY_TIMEOUT``."""
    return (
        f"results store {path} stayed locked by another process for {seconds:.0f} s; "
        "try again when it is done"
    )
