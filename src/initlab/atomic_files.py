"""Output files: checked before any work (:func:`check_output_dir`), then written all or
nothing (:func:`write_files`): each beside its final name, renamed over it only once all are
complete, so a full disk or a kill never leaves a truncated table, nor a mix of new files
with old ones of another run.

A directory (``--out DIR``, ``out=DIR``) may exist as a directory or not exist yet (nothing
is created by the check); a file in the way, a parent that cannot be written, a directory
where one of the command's files goes, or a read-only file of that name (protected by the
user: never replaced) is refused in one :class:`~initlab.errors.InitlabError` line. What
fails while writing after the work (a full disk, permissions changed meanwhile) is an
``OSError``; :func:`write_error` says it in one line naming the file.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from initlab.errors import InitlabError

_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(?P<suffix>(\.\w+)?)$")


def check_output_dir(path: Path | None, option: str = "--out", files: Iterable[str] = ()) -> None:
    """Refuse ``path`` unless it is a directory, or can be created as one here; and refuse
    each of ``files`` (the names the command writes in it) that a directory or a read-only
    file holds (:func:`check_replaceable`)."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InitlabError(f"{option} {path}: a file is there; {option} takes a directory")
    check_parent(path, option)
    for name in files:
        check_replaceable(path / name, option)


def check_replaceable(path: Path, option: str) -> None:
    """Refuse, before any work, a directory where the file ``path`` goes, or an existing
    ``path`` that is read-only (the user protected it: it is never replaced)."""
    if path.is_dir():
        raise InitlabError(
            f"{path} is a directory where this command writes its {path.name}; move it away "
            f"or give another {option}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise InitlabError(
            f"{path} is read-only and this command replaces it; make it writable, move it "
            f"away or give another {option}"
        )


def check_parent(directory: Path, option: str) -> None:
    """``directory`` (to be created if missing) under no file and in a writable place."""
    blocker = file_in_the_way(directory)
    if blocker is not None:
        raise InitlabError(f"{option} {directory}: {blocker} is a file, not a directory")
    existing = next((p for p in [directory, *directory.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InitlabError(f"{option} {directory}: {existing} is not writable")


def file_in_the_way(directory: Path) -> Path | None:
    """The first existing component of ``directory`` that is not a directory, if any."""
    for part in [*reversed(directory.parents), directory]:
        if part.exists() and not part.is_dir():
            return part
        if not part.exists():
            return None
    return None


def write_files(
    out: Path, writers: dict[str, Callable[[Path], object]], remove: Iterable[str] = ()
) -> list[Path]:
    """Call each ``writers[name](temporary path)`` in ``out`` (created if missing), then
    rename every temporary file over its ``name`` (``os.replace``, atomic), then delete the
    files ``remove`` names (those of the set being replaced that this write does not make,
    so none is left looking current beside the new ones); returns the final paths. An error
    while writing (a full disk) removes the temporary files and leaves the files already in
    ``out`` as they were (the ``OSError`` raised names the file being written); renames are
    done only once everything is written, and each is atomic (an error between two renames
    leaves some files new, none truncated). Temporary files of these names left by a
    process that no longer runs (killed while writing) are removed first."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, set(writers))
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            final = out / name
            temporary = (
                out / f".{final.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{final.suffix}"
            )
            staged.append((temporary, final))
            try:
                write(temporary)
            except OSError as exc:
                if exc.filename is None and exc.errno is not None:  # ENOSPC: say which file
                    exc.filename = str(final)
                raise
        for temporary, final in staged:
            os.replace(temporary, final)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for name in remove:
        if name not in writers:
            (out / name).unlink(missing_ok=True)
    return [final for _, final in staged]


def write_file(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Write one file all or nothing: ``write(temporary path)`` beside ``path`` (its
    directory created if missing; the temporary name keeps ``path``'s suffix, so a writer
    choosing a format by suffix sees the right one), then renamed over ``path``
    (:func:`write_files`); returns ``path``."""
    path = Path(path)
    return write_files(path.parent, {path.name: write})[0]


def write_error(exc: OSError, after: str = "") -> InitlabError:
    """``cannot write DIR/trials.csv: no space left on device`` (and ``after``): one line
    for an ``OSError`` of :func:`write_files`, the temporary name read as the file's."""
    reason = os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)
    where = failed_file(exc) or "the output files"
    return InitlabError(f"cannot write {where}: {reason}{'; ' + after if after else ''}")


def failed_file(exc: OSError) -> Path | None:
    """The file an ``OSError`` of :func:`write_files` was writing, by its final name (a
    temporary name read as the file's), or ``None`` when the error names none."""
    name = exc.filename2 or exc.filename  # os.replace(temporary, target): the target
    if name is None:
        return None
    path = Path(os.fsdecode(name))
    found = _TEMPORARY.match(path.name)
    return path.with_name(f"{found['stem']}{found['suffix']}") if found else path


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
