"""Output paths checked before any work: a directory the command writes into, or a file it
writes, each refused in one line when it cannot be written or when writing would destroy
something that is not the command's own output.

A directory option (``--out DIR``) may exist as a directory or not exist yet (nothing is
created here); a file in the way (``--out data.npz``) is refused. A file option
(``--save``, ``plan --out``, ``theory --plot``) never overwrites an existing file of another
kind (a results store, a dataset); a plot's suffix must name a format matplotlib writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from initlab.errors import InitlabError

WEIGHT_FILES = (".safetensors", ".pt", ".pth")
"""What ``--save`` writes (:func:`initlab.weights.save_weights`)."""
PLOT_FILES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")
"""What a ``--plot`` writes (matplotlib's formats, by suffix)."""


def check_output_dir(path: Path | None, option: str = "--out") -> None:
    """Refuse ``path`` unless it is a directory, or can be created as one here."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise InitlabError(f"{option} {path}: a file is there; {option} takes a directory")
    _check_parent(path, option)


def check_output_file(
    path: Path | None, suffixes: Sequence[str], option: str, *, only: bool = False
) -> None:
    """Refuse ``path`` when it is a directory, when its directory cannot be written, or
    when a file is there that does not end in one of ``suffixes`` (a results store, a
    dataset: never overwritten). ``only``: a new file must end in one of them too (a plot,
    whose format its suffix names)."""
    if path is None:
        return
    if path.is_dir():
        raise InitlabError(f"{option} {path}: a directory is there; {option} takes a file name")
    if path.suffix.lower() not in suffixes and (only or path.exists()):
        kinds = ", ".join(suffixes)
        there = "; a file of another kind is there, left as it is" if path.exists() else ""
        raise InitlabError(f"{option} {path}: {option} writes {kinds} files{there}")
    _check_parent(path.parent, option)


def _check_parent(directory: Path, option: str) -> None:
    """``directory`` (to be created if missing) under no file and in a writable place."""
    from initlab.store.location import file_in_the_way  # initlab.store imports pandas, torch

    blocker = file_in_the_way(directory)
    if blocker is not None:
        raise InitlabError(f"{option} {directory}: {blocker} is a file, not a directory")
    existing = next((p for p in [directory, *directory.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InitlabError(f"{option} {directory}: {existing} is not writable")
