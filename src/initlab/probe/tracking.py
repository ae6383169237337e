"""Per-layer statistics during training, on a fixed probe batch.

A :class:`Tracker` runs the probe (:func:`initlab.probe.hooks.collect` and
:func:`initlab.probe.metrics.layer_metrics`) at step 0 (the
initialization, before any update) and then after every epoch (``every="epoch"``) or every
N optimizer steps (``every=N``), always on the same probe batch — the first
:data:`PROBE_SIZE` training examples — so that curves are comparable across time and runs.

The probe never changes the training: it writes no ``.grad`` (it uses ``autograd.grad``), it
takes no optimizer step, it restores every buffer (BatchNorm running statistics and counters
are saved and put back, so the probe batch never enters them) and every module's train/eval
flag, and it draws its dropout masks from a forked RNG seeded with :data:`PROBE_SEED`, so
the training's dropout stream is untouched: a run with tracking gives bit-identical weights
to the same run without. The probe runs in train mode (BatchNorm normalizes the probe batch
with its own statistics, as a training step would).

Rows are tidy: ``{"epoch", "step", "layer", "metric", "value"}`` with ``metric`` one of
:data:`initlab.probe.metrics.METRICS`; ``epoch`` is 0 at initialization and the epoch in
progress (or just finished) otherwise, ``step`` the number of optimizer steps taken so far.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from initlab.data import Dataset
from initlab.data.dataset import first_look
from initlab.errors import InitlabError
from initlab.probe.hooks import Loss, collect

PROBE_SIZE = 256
"""The probe batch: 256 training examples, the same at every moment (so curves are
comparable) and of every class (:func:`~initlab.data.dataset.first_look`)."""
PROBE_SEED = 0
"""Seed of the probe's dropout masks (the same at every tracking moment)."""


def check_every(every: str | int) -> str | int:
    """``"epoch"`` or a positive step count; anything else raises :class:`InitlabError`."""
    if every == "epoch":
        return every
    if isinstance(every, int) and not isinstance(every, bool) and every > 0:
        return every
    raise InitlabError(
        f"track must be 'epoch', 'off' or a step count in [1, 2^63 - 1], got {every!r}"
    )


class Tracker:
    """Records per-layer metrics of a model being trained, on a fixed probe batch.

    ``every``: ``"epoch"`` or N (every N optimizer steps). ``rows`` accumulates tidy rows;
    the training engine (:mod:`initlab.train.engine`) calls :meth:`record` on each model at
    step 0 and at every tracking moment and copies its rows into ``RunResult.layer_stats``.
    """

    def __init__(
        self,
        every: str | int,
        inputs: Tensor,
        targets: Tensor | None = None,
        loss: Loss | None = None,
    ) -> None:
        self.every = check_every(every)
        self.inputs, self.targets, self.loss = inputs, targets, loss
        self.rows: list[dict[str, Any]] = []

    @classmethod
    def for_data(cls, every: str | int, data: Dataset, size: int = PROBE_SIZE) -> Tracker:
        """A tracker whose probe batch is ``size`` training examples of ``data``
        (:func:`~initlab.data.dataset.first_look`)."""
        return cls(every, *first_look(data, size))

    @property
    def per_step(self) -> bool:
        return isinstance(self.every, int)

    def record(self, model: nn.Module, epoch: int, step: int) -> None:
        """Probe ``model`` now and append its rows tagged with ``epoch`` and ``step``."""
        layers = collect(model, self.inputs, self.targets, self.loss, mode="train", seed=PROBE_SEED)
        for layer in layers:
            for metric, value in layer.metrics().items():
                self.rows.append(
                    {
                        "epoch": epoch,
                        "step": step,
                        "layer": layer.name,
                        "metric": metric,
                        "value": float(value),
                    }
                )
