"""Where a sweep's runs resume: the epoch checkpoints beside a store's file
(:mod:`initlab.checkpoints`), which of the runs to train have one, and what a finished
sweep leaves behind."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from initlab.checkpoints import Checkpoints, checkpoint_dir, checkpoint_seconds
from initlab.config import RunConfig
from initlab.notes import note
from initlab.store import Store


def config_identity(config: RunConfig) -> str:
    """A run's settings as text: the same before and after its files change (its key is not)."""
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def store_checkpoints(store: Store) -> Checkpoints | None:
    """The epoch checkpoints of the runs of ``store`` (:mod:`initlab.train.checkpoint`):
    in a folder beside its file, saved every :func:`checkpoint_seconds`; none for a store
    in memory."""
    if store.path is None:
        return None
    folder = os.path.abspath(checkpoint_dir(store.path))  # Ray workers may run elsewhere
    return Checkpoints(folder, checkpoint_seconds())


def resume_from(
    checkpoints: Checkpoints, done: set[str], pending: Sequence[RunConfig]
) -> dict[str, int]:
    """The epoch each ``pending`` run with a checkpoint resumes after, by
    :func:`config_identity`, and a note saying how many resume; deletes the checkpoints of
    runs ``done`` first (a sweep killed between recording a run and deleting its checkpoint
    leaves one); with nothing pending, a note naming the checkpoints left (:func:`note_left`)."""
    left = checkpoints.tidy(done)
    if not pending:
        note_left(left, checkpoints.directory)
    saved = {config_identity(c): checkpoints.saved_epoch(c.key()) for c in pending}
    saved = {run: epoch for run, epoch in saved.items() if epoch}
    epochs = list(saved.values())
    if epochs:
        low, high = min(epochs), max(epochs)
        after = f"epoch {low}" if low == high else f"epochs {low}-{high}"
        note(
            f"{len(epochs)} of the {len(pending)} run(s) to train have checkpoints to resume "
            f"from, saved after {after}"
        )
    return saved


def note_left(checkpoints: Sequence[Path], folder: str) -> None:
    """A note naming the checkpoints a finished sweep leaves, and why they may be there."""
    if checkpoints:
        size = sum(path.stat().st_size for path in checkpoints if path.exists()) / 2**20
        note(
            f"{len(checkpoints)} checkpoint(s) ({size:.1f} MiB) remain in {folder}: of failed "
            "runs (a retry resumes them), of runs another sweep on this store is training, or "
            "of runs whose model, data or settings have changed since (delete those)"
        )
