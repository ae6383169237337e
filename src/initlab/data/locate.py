"""Where dataset files are looked for, and where downloads and generated data are cached.

Search order for a dataset ``<name>`` (first complete set of files wins):

1. the ``data_dir`` argument (CLI ``--data-dir``): the files directly in it, or in
   ``data_dir/<name>/``;
2. the ``INITLAB_DATA`` environment variable, same two layouts;
3. the cache: ``$INITLAB_CACHE/<name>`` if that variable is set, otherwise
   ``platformdirs.user_cache_dir("initlab")/<name>`` (``~/.cache/initlab/<name>`` on Linux);
4. system directories: ``/usr/share/datasets/<name>`` (Debian's ``dataset-*`` packages).

Besides ``<name>`` a dataset may list alternative sub-directory names (torchvision's
``MNIST/raw`` layout, for instance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from initlab.errors import InitlabError, permission_denied

ENV_DATA = "INITLAB_DATA"
ENV_CACHE = "INITLAB_CACHE"
#: System-wide data directories, searched last (a module attribute so tests can replace it).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


@dataclass(frozen=True)
class Candidate:
    """A directory that may hold a dataset's files, and why it is searched."""

    path: Path
    origin: str  # "data_dir", "INITLAB_DATA", "cache" or "system"


def cache_root() -> Path:
    """initlab's cache directory: ``$INITLAB_CACHE`` or the per-user cache directory."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("initlab"))


def cache_dir(name: str) -> Path:
    """The cache directory of dataset ``name`` (not created)."""
    return cache_root() / name


def user_dir(data_dir: str | Path) -> Path:
    """``data_dir`` as a path; :class:`InitlabError` if it is not an existing directory."""
    path = Path(data_dir).expanduser()
    try:
        if not path.is_dir():
            raise InitlabError(f"data directory {path} does not exist or is not a directory")
    except PermissionError as exc:  # a directory above it that may not be searched
        raise permission_denied("--data-dir", path, exc) from None
    return path


def candidates(
    name: str, data_dir: str | Path | None = None, subdirs: Sequence[str] = ()
) -> list[Candidate]:
    """Directories to search for ``name``'s files, in priority order (existing or not)."""
    names = (name, *subdirs)
    found: list[Candidate] = []
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        roots.append((user_dir(data_dir), "data_dir"))
    env = os.environ.get(ENV_DATA)
    if env:
        roots.append((Path(env).expanduser(), ENV_DATA))
    for root, origin in roots:
        found.append(Candidate(root, origin))
        found.extend(Candidate(root / sub, origin) for sub in names)
    found.append(Candidate(cache_dir(name), "cache"))
    for system in SYSTEM_DIRS:
        found.extend(Candidate(system / sub, "system") for sub in names)
    return found


def find_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``stem.gz`` (also with ``-idx`` spelled ``.idx``), if present."""
    spellings = (stem, stem.replace("-idx", ".idx"))
    for spelling in dict.fromkeys(spellings):
        for suffix in ("", ".gz"):
            path = directory / (spelling + suffix)
            if path.is_file():
                return path
    return None


def find_all(directory: Path, stems: Sequence[str]) -> dict[str, Path] | None:
    """Every file of ``stems`` in ``directory`` (stem -> path), or None if any is missing."""
    if not directory.is_dir():
        return None
    paths = {stem: find_file(directory, stem) for stem in stems}
    if any(p is None for p in paths.values()):
        return None
    return {stem: p for stem, p in paths.items() if p is not None}
