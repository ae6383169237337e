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

import contextlib
import errno
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from initlab.errors import InitlabError, option, permission_denied
from initlab.pids import pid_alive

_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(?P<suffix>(\.\w+)?)$")


def check_output_dir(path: Path | None, flag: str = "--out", files: Iterable[str] = ()) -> None:
    """Refuse ``path`` unless it is a directory, or can be created as one here; and refuse
    each of ``files`` (the names the command writes in it) that a directory or a read-only
    file holds (:func:`check_replaceable`). ``flag`` (``--out``) is named as the user's
    surface spells it (``out`` from Python, :func:`initlab.errors.option`)."""
    if path is None:
        return
    path = Path(path)
    name, real = option(flag), resolved(path)
    try:
        if real.exists() and not real.is_dir():
            raise InitlabError(f"{name} {path}: a file is there; {name} takes a directory")
        check_parent(path, flag)
        for file in files:
            check_replaceable(real / file, flag)
    except PermissionError as exc:  # a directory above it that may not be searched
        raise permission_denied(flag, path, exc) from None


def check_replaceable(path: Path, flag: str) -> None:
    """Refuse, before any work, a directory where the file ``path`` goes, or an existing
    ``path`` that is read-only (the user protected it: it is never replaced)."""
    option_name = option(flag)
    if path.is_dir():
        raise InitlabError(
            f"{path} is a directory where this command writes its {path.name}; move it away "
            f"or give another {option_name}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise InitlabError(
            f"{path} is read-only and this command replaces it; make it writable, move it "
            f"away or give another {option_name}"
        )


def check_parent(directory: Path, flag: str) -> None:
    """``directory`` (to be created if missing) under no file and in a place where a
    directory can be created (tried: a probe made and removed at once, :func:`_probe`)."""
    real = resolved(directory)
    blocker = file_in_the_way(real)
    if blocker is not None:
        raise InitlabError(f"{option(flag)} {directory}: {blocker} is a file, not a directory")
    existing = next((p for p in [real, *real.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InitlabError(f"{option(flag)} {directory}: {existing} is not writable")
    try:  # root passes os.access everywhere: /proc or a read-only mount refuses only a try
        _probe(existing, made_here=existing != real)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise InitlabError(
            f"{option(flag)} {directory}: nothing can be created in {existing}: {reason}"
        ) from None


def _probe(existing: Path, made_here: bool) -> None:
    """Create and remove what the command will create in ``existing``: a directory where it
    makes one (``made_here``), else a file. Only the creation's ``OSError`` escapes."""
    if made_here:
        probe = tempfile.mkdtemp(prefix=".initlab-probe-", dir=existing)
        with contextlib.suppress(OSError):
            os.rmdir(probe)
        return
    handle, probe = tempfile.mkstemp(prefix=".initlab-probe-", dir=existing)
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def resolved(path: Path) -> Path:
    """``path`` as the kernel will find it once its missing directories exist: symbolic
    links followed and ``..`` applied (``os.path.realpath``). Checked as given,
    ``new/../blocked/x`` passed every check (``new`` does not exist yet) and failed only
    when the command wrote its results, having created ``new``."""
    return Path(os.path.realpath(path))


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
    process that no longer runs (killed while writing) are removed first.

    A file replaced keeps what writing into it would have kept: a symbolic link's target is
    the file replaced (the link stays), the file's permission bits are kept, and a file this
    process may not write is refused (``PermissionError``) before anything is written, as is a
    name that is a directory (``IsADirectoryError``). A new
    file gets the umask's permissions, whatever the writer made (``safetensors`` makes 0600)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out, set(writers))
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            temporary, target = _stage(out / name)
            staged.append((temporary, target))
            try:
                write(temporary)
            except OSError as exc:
                if exc.filename is None and exc.errno in _DISK_ERRORS:  # say which file
                    exc.filename = str(out / name)
                raise
            except Exception as exc:
                if not refused_write(exc):
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise OSError(errno.EIO, f"the write failed ({first})", str(out / name)) from exc
        for temporary, target in staged:
            _replace(temporary, target)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for name in remove:
        if name not in writers:
            (out / name).unlink(missing_ok=True)
    return [out / name for name in writers]


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The ``errno`` of a full disk or an exhausted quota: more space lets the write succeed."""
_DISK_ERRORS = DISK_FULL | {errno.EFBIG, errno.EIO, errno.EROFS}
"""Errors of a write itself (:data:`DISK_FULL`, a file too large, an I/O error, a read-only
file system), named by the file written (a network error while a download
streams into it is not about that file)."""


def _stage(final: Path) -> tuple[Path, Path]:
    """``(temporary, target)`` for writing ``final``: the target is the file a write into
    ``final`` would change (a link's target); refused when it may not be written."""
    target = final.resolve() if final.is_symlink() else final
    if target.is_dir():  # else found by the renames, after earlier files were replaced
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(final))
    if target.exists() and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(final))
    name = f".{target.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix}"
    return target.with_name(name), target


def _replace(temporary: Path, target: Path) -> None:
    """Give ``temporary`` the permissions ``target`` has (a new file: the umask's), then
    rename it over ``target``."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(temporary, mode)
    os.replace(temporary, target)


def _umask() -> int:
    """This process's umask, read without changing it where Linux tells it (``os.umask``
    sets it to read it: briefly 0 for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def refused_write(exc: Exception) -> bool:
    """Whether ``exc`` is a serializer's own word for a write the file system refused (a
    full disk): ``torch.save``'s ``RuntimeError`` from its stream writer ("unexpected pos",
    "PytorchStreamWriter failed"), safetensors' ``SafetensorError``. :func:`write_files`
    raises them as ``OSError``, as a file write would."""
    if type(exc).__name__ == "SafetensorError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "inline_container" in text or "PytorchStreamWriter" in text
    )


def write_file(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Write one file all or nothing: ``write(temporary path)`` beside ``path`` (its
    directory created if missing; the temporary name keeps ``path``'s suffix, so a writer
    choosing a format by suffix sees the right one), then renamed over ``path``
    (:func:`write_files`); returns ``path``."""
    path = Path(path)
    return write_files(path.parent, {path.name: write})[0]


FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")
"""The formats a figure is written as (matplotlib's, by suffix)."""


def write_figure(fig: object, path: Path | str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``path`` with :func:`write_file`; a name without a suffix
    gets ``.png``, as ``savefig`` would name it (the temporary name's ``.tmp`` is no format)."""
    path = Path(path)
    path = path if path.suffix else path.with_suffix(".png")
    return write_file(path, lambda p: fig.savefig(p, dpi=dpi))


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


def remove_stale(out: Path, names: set[str] | None = None, min_age: float = 0.0) -> None:
    """Delete ``out``'s temporary files (of ``names``; ``None``: of any name) whose writer
    process is gone (:func:`initlab.pids.pid_alive`) and that were last written at least
    ``min_age`` seconds ago (a folder shared by several machines holds other machines'
    temporary files, whose process ids mean nothing here: an age spares those in use)."""
    if not out.is_dir():
        return
    now = time.time()
    for path in out.iterdir():
        found = _TEMPORARY.match(path.name)
        if found is None or pid_alive(int(found["pid"])):
            continue
        if names is None or f"{found['stem']}{found['suffix']}" in names:
            with contextlib.suppress(OSError):  # gone meanwhile
                if now - path.stat().st_mtime >= min_age:
                    path.unlink(missing_ok=True)
