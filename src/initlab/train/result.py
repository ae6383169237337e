"""What a training run produces: per-epoch records, final metrics, status."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from initlab.config import RunConfig, unused_settings

OK, STUCK, DIVERGED, FAILED = "ok", "stuck", "diverged", "failed"
STUCK_FACTOR = 1.5
"""A finished run is ``stuck`` when its test accuracy is below ``STUCK_FACTOR / num_classes``
(0.15 for ten classes): it learned nothing beyond the majority class."""


@dataclass
class RunResult:
    """The outcome of one run.

    ``epochs`` holds one dict per completed epoch with ``epoch``, ``train_loss``,
    ``train_accuracy``, ``val_loss``, ``val_accuracy`` and ``seconds``. ``status`` is
    ``ok``, ``stuck`` (trained but at chance), ``diverged`` (the loss became NaN/inf: training
    stopped there, test metrics are NaN) or ``failed`` (an error; ``message`` says which).
    ``layer_stats`` holds tidy per-layer rows recorded during training, if tracking was on.
    ``strategy``: how its stack ran the models (``stacked``, ``vmap`` or ``looped``,
    :mod:`initlab.train.stack`; ``""`` for a model trained alone). ``task``: the task it
    was trained for, resolved from the data (``classification``, ``regression`` or
    ``sequence``, never ``auto``; ``""`` when unknown): what ``test_accuracy`` holds
    (:data:`initlab.train.tasks.SCORES`).
    """

    config: RunConfig | None
    status: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    train_seconds: float = 0.0
    message: str = ""
    layer_stats: list[dict[str, Any]] = field(default_factory=list)
    strategy: str = ""
    task: str = ""

    @property
    def final_train_loss(self) -> float:
        return self.epochs[-1]["train_loss"] if self.epochs else math.nan

    @property
    def final_val_accuracy(self) -> float:
        return self.epochs[-1]["val_accuracy"] if self.epochs else math.nan

    def summary_row(self) -> dict[str, Any]:
        """One flat row: the config's fields (empty where the model does not use them:
        :func:`initlab.config.unused_settings`), then the run's outcome."""
        row: dict[str, Any] = self.config.to_dict() if self.config else {}
        row.pop("extra", None)
        if self.config:
            row["hidden"] = "-".join(map(str, self.config.hidden))
            row["model_args"] = json.dumps(self.config.model_args, sort_keys=True)
            row["run_id"] = self.config.key()
            row.update(dict.fromkeys(unused_settings(self.config.model)))
        row.update(
            status=self.status,
            test_accuracy=self.test_accuracy,
            test_loss=self.test_loss,
            final_train_loss=self.final_train_loss,
            final_val_accuracy=self.final_val_accuracy,
            epochs_done=len(self.epochs),
            train_seconds=self.train_seconds,
            message=self.message,
            resolved_task=self.task or None,
        )
        return row


def final_status(test_accuracy: float, num_classes: int, task: str = "classification") -> str:
    """``stuck`` when a finished classification run's accuracy is below
    ``STUCK_FACTOR / num_classes``; other tasks (regression, sequence) are ``ok``."""
    if task != "classification":
        return OK
    return STUCK if test_accuracy < STUCK_FACTOR / num_classes else OK
