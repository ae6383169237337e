"""Epoch checkpoints: the runs of an interrupted stack resume where they were, not from zero.

A stack's runs finish together, so before this an interruption (Ctrl-C, a killed worker, a
machine that went down) lost every epoch of every run still training. A sweep whose store is
on disk gives its training a folder beside the store (:mod:`initlab.checkpoints`:
``DIR/initlab.db-checkpoints/``), and after an epoch the engine saves each run of the stack
there as ``<run key>.pt`` (:func:`snapshot`):

- its model's weights and buffers (batch-norm running statistics included),
- its optimizer state (momentum buffers, Adam moments, step counts),
- its data-order generator, its own dropout generator and the stack's global RNG (and
  the device kind they are for),
- how its stack ran it (stacked, vmap or looped),
- its result so far: the epoch records, the per-layer tracking rows, its share of the time;
  a run that diverged is saved as final (its result is all there is to keep).

A save happens after an epoch once ``Checkpoints.every`` seconds (60, or
``INITLAB_CHECKPOINT_SECONDS``; ``inf``: never) have passed since the stack started or last
saved (:class:`EpochSaver`), so short runs write nothing and long ones lose at most that
much plus an epoch; a slow save spaces the next ones, so saving takes at most
:data:`SAVE_SHARE` of the time. Files are written all or nothing; a save that fails (a full
disk, a folder that refuses files) is a note, and the stack goes on without saving.

When the sweep runs again, :func:`initlab.train.run.train_configs` loads each run's
checkpoint: runs saved at the same epoch, run the same way, stack together again and
continue from the next epoch with that state (:func:`restore`); a final one is returned as
it is; a file that cannot be read, or states that do not fit the stack
(:class:`ResumeError`), are a note and the runs start over. The result matches an
uninterrupted run up to float rounding; its ``nn.Dropout`` masks continue on the same kind
of device (in any stack), other dropout only in the same stack
(:mod:`initlab.train.dropout_streams`). The sweep deletes a run's checkpoint once the store
has recorded it as finished (:func:`initlab.sweep.runner.run_sweep`). The run key names the
file, and it covers the run's settings and the user's source files, so an edited model
never resumes from a stale checkpoint (its key changed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from initlab.atomic_files import file_in_the_way
from initlab.checkpoints import VERSION, Checkpoints
from initlab.notes import note
from initlab.train.result import RunResult
from initlab.train.seeding import (
    derive_seed,
    global_rng_state,
    seed_global,
    set_global_rng_state,
)

if TYPE_CHECKING:
    from initlab.train.engine import StackTrainer

EXTRA_STATE = "_extra_state"
SAVE_SHARE = 0.05
"""At most this share of a stack's time goes into saving its checkpoints (:class:`EpochSaver`)."""


def snapshot(trainer: StackTrainer, m: int, key: str, epoch: int) -> dict[str, Any]:
    """Everything model ``m`` of ``trainer`` needs to continue after ``epoch`` (module
    docstring); a diverged model's result only, marked ``final``."""
    result = trainer.results[m]
    saved: dict[str, Any] = {
        "version": VERSION,
        "key": key,
        "epoch": epoch,
        "final": m in trainer.dead,
        "strategy": trainer.stack.strategy if trainer.size > 1 else "",
        "result": {
            "status": result.status,
            "message": result.message,
            "epochs": list(result.epochs),
            "layer_stats": list(trainer.trackers[m].rows) if trainer.trackers else [],
            "seconds": trainer.seconds / trainer.size + trainer.saved_seconds[m],
            "device": result.device,
        },
    }
    if saved["final"]:
        return saved
    saved.update(
        global_step=trainer.global_step,
        model=plain_state(trainer.stack.state_dict(m)),
        optimizer=trainer.opt.model_state(m),
        parameters=list(trainer.stack.params),
        data_rng=trainer.data_gens[m].get_state(),
        dropout_rng=global_rng_state(trainer.device),
        dropout_stream=trainer.stack.streams.generators[m].get_state(),
        dropout_device=trainer.device.type,
    )
    return saved


def plain_state(state: dict[str, Any]) -> dict[str, Any]:
    """A model state without its modules' ``_extra_state`` entries, which may hold objects
    that a safe load refuses: they are not trained, and the model built again has them."""
    return {k: v for k, v in state.items() if not k.endswith(EXTRA_STATE)}


def load_model_state(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load a :func:`plain_state` into ``model``; ``RuntimeError`` if it does not fit."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not k.endswith(EXTRA_STATE)] + list(unexpected)
    if wrong:
        raise RuntimeError(f"the saved weights do not fit the model: {', '.join(wrong[:3])}")


class ResumeError(Exception):
    """Checkpoints that cannot be put into a stack: its runs start over (a note says why)."""


def restore(trainer: StackTrainer, saved: Sequence[dict[str, Any]]) -> None:
    """Put ``saved[m]`` (model m's :func:`snapshot`, all at one epoch) into ``trainer``,
    whose models were built with the saved weights; training continues after that epoch.
    Raises :class:`ResumeError` if they do not fit it."""
    try:
        if any(s["parameters"] != list(trainer.stack.params) for s in saved):
            raise ValueError("the saved parameters are not the model's")
        trainer.start_epoch = saved[0]["epoch"]
        trainer.global_step = saved[0]["global_step"]
        trainer.opt.load_model_states([s["optimizer"] for s in saved])
        trainer.saved_seconds = [s["result"]["seconds"] for s in saved]
        same = saved[0]["dropout_device"] == trainer.device.type  # else another RNG
        trainer.dropout_state = saved[0]["dropout_rng"] if same else None
        _restore_streams(trainer, saved if same else None)
        for m, state in enumerate(saved):
            trainer.data_gens[m].set_state(state["data_rng"].cpu())
            result = trainer.results[m]
            result.epochs = list(state["result"]["epochs"])
            result.message = state["result"]["message"]
            if trainer.trackers is not None:
                trainer.trackers[m].rows = list(state["result"]["layer_stats"])
    except Exception as exc:
        raise ResumeError(f"{type(exc).__name__}: {exc}") from exc


def _restore_streams(trainer: StackTrainer, saved: Sequence[dict[str, Any]] | None) -> None:
    """Continue each model's dropout generator from its checkpoint; one saved on another
    kind of device (another layout) is seeded from its model's seed and the epoch."""
    generators = trainer.stack.streams.generators
    for m, generator in enumerate(generators):
        if saved is not None:
            generator.set_state(saved[m]["dropout_stream"].cpu())
        else:
            stream = f"dropout after epoch {trainer.start_epoch}"
            generator.manual_seed(derive_seed(trainer.members[m].seed, stream))


def apply_dropout_state(trainer: StackTrainer) -> None:
    """Continue the dropout RNG of a resumed stack from its saved state; one saved on
    another kind of device (a sweep moved from the CPU to a GPU) has another layout: the
    RNG is then seeded from the first model's seed and the epoch."""
    if trainer.dropout_state is not None:
        set_global_rng_state(trainer.dropout_state, trainer.device)
        return
    seed = derive_seed(trainer.members[0].seed, f"dropout after epoch {trainer.start_epoch}")
    seed_global(seed, trainer.device)


class EpochSaver:
    """The engine's epoch hook that saves a stack's runs (``keys[m]``: model m's run key)
    when :attr:`Checkpoints.every` seconds have passed since its start or last save, and,
    unless that is 0, at least ``duration / SAVE_SHARE`` seconds: saving big models to a
    slow disk never takes more than that share of the time."""

    def __init__(self, checkpoints: Checkpoints, keys: Sequence[str]) -> None:
        self.checkpoints, self.keys = checkpoints, list(keys)
        self.last = time.monotonic()
        self.gap = checkpoints.every
        self.failed = False

    def __call__(self, trainer: StackTrainer, epoch: int) -> None:
        if self.failed or time.monotonic() - self.last < self.gap:
            return
        started = time.monotonic()
        try:
            for m, key in enumerate(self.keys):
                self.checkpoints.save(key, snapshot(trainer, m, key, epoch))
        except OSError as exc:
            self.failed = True
            blocker = file_in_the_way(Path(self.checkpoints.directory))
            reason = (exc.strerror or str(exc)).lower()
            reason = f"{blocker} is a file, not a folder" if blocker else reason
            note(
                f"cannot save checkpoints in {self.checkpoints.directory} ({reason}): "
                "training goes on, but an interruption would lose these runs' epochs"
            )
        self.last = time.monotonic()
        if self.checkpoints.every:
            self.gap = max(self.checkpoints.every, (self.last - started) / SAVE_SHARE)


def resumed_result(saved: dict[str, Any], task: str) -> RunResult:
    """The :class:`RunResult` of a ``final`` checkpoint (a run that diverged)."""
    kept = saved["result"]
    return RunResult(
        config=None,
        status=kept["status"],
        epochs=list(kept["epochs"]),
        train_seconds=kept["seconds"],
        message=kept["message"],
        layer_stats=list(kept["layer_stats"]),
        task=task,
        strategy=saved["strategy"],
        device=kept["device"],
    )
