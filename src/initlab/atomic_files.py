"""Files written all or nothing: each beside its final name, renamed over it only once all
are complete (:func:`write_files`), so a full disk or a kill never leaves a truncated table."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(?P<suffix>\.\w+)$")


def write_files(out: Path, writers: dict[str, Callable[[Path], object]]) -> list[Path]:
    """Call each ``writers[name](temporary path)`` in ``out``, then rename every temporary
    file over its ``name`` (``os.replace``, atomic); returns the final paths. An error while
    writing (a full disk) removes the temporary files and leaves the files already in
    ``out`` as they were; renames are done only once everything is written, and each is
    atomic (an error between two renames leaves some files new, none truncated). Temporary
    files of these names left by a process that no longer runs (killed while writing) are
    removed first."""
    _remove_stale(out, set(writers))
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            final = out / name
            temporary = (
                out / f".{final.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{final.suffix}"
            )
            staged.append((temporary, final))
            write(temporary)
        for temporary, final in staged:
            os.replace(temporary, final)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    return [final for _, final in staged]


def _remove_stale(out: Path, names: set[str]) -> None:
    """Delete ``out``'s temporary files of ``names`` whose writer process is gone."""
    if not out.is_dir():
        return
    for path in out.iterdir():
        found = _TEMPORARY.match(path.name)
        if found and f"{found['stem']}{found['suffix']}" in names and not _alive(int(found["pid"])):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one that cannot be signalled does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: running
        return True
    return True
