"""Checksummed downloads from a list of mirrors.

Each file is streamed into a temporary file next to its destination, its SHA-256 is checked,
and only then is it renamed into place (atomic on one file system), so a failed or
interrupted download never leaves a partial file under the real name. Mirrors are tried in
order; transient network errors are retried; a file whose checksum does not match is deleted.
Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from initlab.atomic_files import write_file
from initlab.data.idx import read_bytes
from initlab.errors import DataNotFoundError, InitlabError

USER_AGENT = "initlab/0.1 (dataset download)"
_CHUNK = 1 << 16


class ChecksumMismatchError(InitlabError):
    """A downloaded file's SHA-256 is not the published one (the file has been deleted)."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its name on the mirrors and on disk, and its checksums.

    ``sha256`` is the digest of the bytes as the mirrors serve them. ``raw_sha256``, when
    given, is the digest of the *decompressed* content: a file that fails the first check
    but passes this one (a mirror that re-compressed the same data) is accepted.
    """

    name: str
    sha256: str
    size: int | None = None
    raw_sha256: str | None = None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_ok(path: Path, remote: RemoteFile) -> tuple[bool, str]:
    """Whether ``path`` matches ``remote``'s checksums, and its SHA-256."""
    actual = sha256_file(path)
    if actual == remote.sha256.lower():
        return True, actual
    if remote.raw_sha256:
        try:
            raw = hashlib.sha256(read_bytes(path)).hexdigest()
        except InitlabError:
            return False, actual
        return raw == remote.raw_sha256.lower(), actual
    return False, actual


class _Progress:
    """Download progress on stderr: a rewritten line on a terminal, start/end lines otherwise."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.done, self.last = 0, 0.0
        if enabled and not self.tty:
            print(f"initlab: downloading {label} ...", file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        """Count ``n`` more bytes; redraw at most every 0.2 s."""
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last > 0.2:
            self.last = now
            print(f"\r{self._line()}", end="", file=sys.stderr, flush=True)

    def close(self, ok: bool) -> None:
        """Finish the line (a newline on a terminal, a summary otherwise)."""
        if not self.enabled:
            return
        status = "done" if ok else "failed"
        prefix = "\r" if self.tty else ""
        print(f"{prefix}{self._line()} {status}", file=sys.stderr, flush=True)

    def _line(self) -> str:
        mb = self.done / 2**20
        if self.total:
            pct = 100 * self.done / self.total
            return f"initlab: {self.label}: {pct:5.1f}% of {self.total / 2**20:.1f} MB"
        return f"initlab: {self.label}: {mb:.1f} MB"


def _stream(url: str, out: IO[bytes], timeout: float, progress: bool, label: str) -> None:
    """Copy ``url`` into ``out`` (urllib errors propagate)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        bar = _Progress(label, int(length) if length and length.isdigit() else None, progress)
        ok = False
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))
            ok = True
        finally:
            bar.close(ok)


def _retryable(err: Exception) -> bool:
    """True for errors worth retrying on the same mirror (not 4xx, not unknown hosts)."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500
    reason = getattr(err, "reason", err)
    return not isinstance(reason, socket.gaierror)


def _describe(err: Exception) -> str:
    """A short text for a download error."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = getattr(err, "reason", None)
    return str(reason if reason is not None else err) or type(err).__name__


def _attempt(url: str, remote: RemoteFile, directory: Path, timeout: float, progress: bool) -> Path:
    """One download of ``url`` into ``directory/remote.name``: temp file, check, rename
    (:func:`~initlab.atomic_files.write_file`)."""

    def fetch(tmp: Path) -> None:
        with tmp.open("wb") as out:
            host = urllib.parse.urlsplit(url).netloc or url
            _stream(url, out, timeout, progress, f"{remote.name} from {host}")
        ok, actual = checksum_ok(tmp, remote)
        if not ok:
            raise ChecksumMismatchError(
                f"{url} has SHA-256 {actual}, expected {remote.sha256}; the file was deleted"
            )

    return write_file(directory / remote.name, fetch)


def download_file(
    remote: RemoteFile,
    mirrors: Sequence[str],
    directory: str | Path,
    *,
    timeout: float = 30.0,
    retries: int = 2,
    backoff: float = 1.0,
    progress: bool = True,
    how_to: str = "",
) -> Path:
    """Download ``remote`` from the first mirror that serves it correctly into ``directory``.

    Raises :class:`ChecksumMismatchError` if no mirror served the right bytes and at least one
    served wrong ones, :class:`DataNotFoundError` (message ending with ``how_to``) if none could
    be reached or served the file.
    """
    directory = Path(directory)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InitlabError(f"cannot create the download directory {directory}: {err}") from err
    try:
        return _try_mirrors(remote, mirrors, directory, timeout, retries, backoff, progress, how_to)
    except InitlabError:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only succeeds if nothing was left in it
        raise


def _try_mirrors(
    remote: RemoteFile,
    mirrors: Sequence[str],
    directory: Path,
    timeout: float,
    retries: int,
    backoff: float,
    progress: bool,
    how_to: str,
) -> Path:
    """The mirror loop of :func:`download_file`."""
    failures: list[str] = []
    mismatches: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + remote.name
        for attempt in range(1, max(1, retries) + 1):
            try:
                return _attempt(url, remote, directory, timeout, progress)
            except ChecksumMismatchError as err:
                mismatches.append(str(err))
                break
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(f"{url}: {_describe(err)}")
                if attempt >= retries or not _retryable(err):
                    break
                time.sleep(backoff * attempt)
    if mismatches:
        raise ChecksumMismatchError("; ".join(mismatches))
    tried = "; ".join(failures) or "no mirrors configured"
    raise DataNotFoundError(f"could not download {remote.name} ({tried}). {how_to}".strip())


def fetch(
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    directory: str | Path,
    *,
    timeout: float = 30.0,
    retries: int = 2,
    backoff: float = 1.0,
    progress: bool = True,
    how_to: str = "",
) -> list[Path]:
    """Make every file of ``files`` present and verified in ``directory``, downloading as needed.

    A file already there is kept if its checksum matches and downloaded again otherwise.
    The keyword arguments are those of :func:`download_file`.
    """
    directory = Path(directory)
    paths = []
    for remote in files:
        path = directory / remote.name
        if not (path.is_file() and checksum_ok(path, remote)[0]):
            path = download_file(
                remote,
                mirrors,
                directory,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                progress=progress,
                how_to=how_to,
            )
        paths.append(path)
    return paths
