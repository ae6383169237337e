"""The folder of epoch checkpoints beside a results store, and its files (one per run).

What a checkpoint holds, when the training engine saves one and how a stack resumes from
it: :mod:`initlab.train.checkpoint`. This module is the folder alone, and imports torch only
to read or write a file, so that worker processes can receive a :class:`Checkpoints` before
anything imports torch (:func:`initlab.mkl_dispatch.worker_entry` must run first).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initlab.atomic_files import remove_stale, write_file
from initlab.errors import InitlabError
from initlab.notes import note

EVERY_SECONDS = 60.0
"""Seconds of training between two saves of a stack (the first save after as long);
the environment variable ``INITLAB_CHECKPOINT_SECONDS`` changes it (:func:`checkpoint_seconds`)."""
VERSION = 2
"""The layout of a checkpoint file (2: each run's own dropout generator); a file of another
version trains from the start."""
SUFFIX = ".pt"
STALE_SECONDS = 3600.0
"""A temporary file whose writer is gone is deleted by :meth:`Checkpoints.tidy` once it is
this old: another machine sharing the folder may be writing it (its process id means nothing
here); a run's own next save deletes its killed writer's file at once."""


def checkpoint_seconds() -> float:
    """``INITLAB_CHECKPOINT_SECONDS`` when set (0: after every epoch), else
    :data:`EVERY_SECONDS`; anything but a number >= 0 is an :class:`InitlabError`."""
    value = os.environ.get("INITLAB_CHECKPOINT_SECONDS", "").strip()
    if not value:
        return EVERY_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        raise InitlabError(
            f"INITLAB_CHECKPOINT_SECONDS={value!r}: give the seconds of training between two "
            "checkpoints, a number >= 0 (0: after every epoch), or unset it"
        )
    return seconds


def checkpoint_dir(store_path: Path | str) -> Path:
    """The checkpoint folder of the store file ``store_path``: ``initlab.db`` →
    ``initlab.db-checkpoints`` beside it (as SQLite's ``-wal`` and ``-shm`` files)."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + "-checkpoints")


@dataclass(frozen=True)
class Checkpoints:
    """A folder of per-run checkpoints (module docstring); picklable, for worker processes."""

    directory: str
    every: float = EVERY_SECONDS

    def path(self, key: str) -> Path:
        return Path(self.directory) / f"{key}{SUFFIX}"

    def has(self, key: str) -> bool:
        """Whether run ``key`` has a checkpoint file (``False`` where the folder may not be
        searched: Python 3.11's ``is_file`` raises then)."""
        try:
            return self.path(key).is_file()
        except OSError:
            return False

    def load(self, key: str) -> dict[str, Any] | None:
        """The checkpoint of run ``key`` (tensors on the CPU, mapped from the file: reading
        every run's before training needs no memory for them, and the stack moves them to
        its device once it is built, so resuming needs no more than starting); ``None`` when
        there is none, or when it cannot be read: a note says so, and a damaged file is
        removed (one the file system could not read is kept for a later try)."""
        path = self.path(key)
        if not self.has(key):
            return None
        try:
            saved = _torch().load(path, map_location="cpu", weights_only=True, mmap=True)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            note(f"checkpoint {path} cannot be read ({reason}): its run trains from the start")
            return None
        except Exception as exc:  # unpickling, a truncated zip...: torch's advice misleads
            saved = f"damaged ({type(exc).__name__})"
        if isinstance(saved, str):
            why = saved
        elif not isinstance(saved, dict) or saved.get("version") != VERSION:
            why = f"not a version-{VERSION} initlab checkpoint"
        elif saved.get("key") != key:
            why = f"it holds run {saved.get('key')}"
        else:
            return saved
        note(f"checkpoint {path} cannot be read ({why}): its run trains from the start")
        self.remove(key)
        return None

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Write run ``key``'s checkpoint, all or nothing; raises ``OSError``."""

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as file:  # refused writes are OSErrors (torch's
                _torch().save(state, file)  # RuntimeError too: atomic_files.refused_write)

        write_file(self.path(key), write)

    def remove(self, key: str) -> None:
        """Delete run ``key``'s checkpoint, if any (errors ignored: it is only a cache)."""
        with contextlib.suppress(OSError):
            self.path(key).unlink(missing_ok=True)

    def tidy(self, done: Iterable[str] = ()) -> list[Path]:
        """Delete the checkpoints of the runs ``done`` (recorded), the temporary files of
        writers killed over :data:`STALE_SECONDS` ago, and the folder if it is empty; the
        checkpoints left."""
        folder = Path(self.directory)
        if not folder.is_dir():
            return []
        for key in done:
            self.remove(key)
        with contextlib.suppress(OSError):
            remove_stale(folder, min_age=STALE_SECONDS)
            folder.rmdir()  # only if empty
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def saved_epoch(self, key: str) -> int:
        """The epoch run ``key``'s checkpoint was saved at (0: none, or unreadable)."""
        if not self.has(key):
            return 0
        try:
            saved = _torch().load(self.path(key), map_location="cpu", weights_only=True, mmap=True)
            ours = saved.get("key") == key and saved.get("version") == VERSION
            return int(saved.get("epoch", 0)) if ours else 0
        except Exception:
            return 0


def _torch() -> Any:
    """The torch module, imported when a file is read or written (module docstring)."""
    import torch

    return torch
