"""Output paths checked before any work: a directory the command writes into, or a file it
writes, each refused in one line when it cannot be written or when writing would destroy
something that is not the command's own output.

A directory option (``--out DIR``) may exist as a directory or not exist yet (nothing is
created here); a file in the way (``--out data.npz``) is refused, and so is a directory or
a read-only file where one of the command's files goes (:func:`check_output_dir`, the
library's check, :mod:`initlab.atomic_files`, which ``initlab.trials(out=...)`` uses too).
A file option (``--save``, ``plan --out``, ``theory --plot``) never overwrites an existing
file of another kind (a results store, a dataset) nor a read-only one; a plot's suffix must
name a format matplotlib writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from initlab.atomic_files import (
    FIGURE_SUFFIXES,
    check_output_dir,
    check_parent,
    check_replaceable,
)
from initlab.errors import InitlabError, permission_denied

__all__ = ["PLOT_FILES", "WEIGHT_FILES", "check_output_dir", "check_output_file"]

WEIGHT_FILES = (".safetensors", ".pt", ".pth")
"""What ``--save`` writes (:func:`initlab.weights.save_weights`)."""
PLOT_FILES = FIGURE_SUFFIXES
"""What a ``--plot`` writes (matplotlib's formats, by suffix)."""


def check_output_file(
    path: Path | None, suffixes: Sequence[str], option: str, *, only: bool = False
) -> None:
    """Refuse ``path`` when it is a directory, when its directory cannot be written, when
    a file is there that does not end in one of ``suffixes`` (a results store, a dataset:
    never overwritten) or that is read-only. ``only``: a new file must end in one of them
    too (a plot, whose format its suffix names)."""
    if path is None:
        return
    try:
        if path.is_dir():
            raise InitlabError(f"{option} {path}: a directory is there; {option} takes a file name")
        if path.suffix.lower() not in suffixes and (only or path.exists()):
            kinds = ", ".join(suffixes)
            there = "; a file of another kind is there, left as it is" if path.exists() else ""
            raise InitlabError(f"{option} {path}: {option} writes {kinds} files{there}")
        check_parent(path.parent, option)
        check_replaceable(path, option)
    except PermissionError as exc:  # a directory above it that may not be searched
        raise permission_denied(option, path, exc) from None
