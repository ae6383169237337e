"""Train one model, as a careful user would, with nothing hidden.

The loop is the textbook one — shuffle, forward, cross-entropy, backward, step — on tensors
already in memory (no ``DataLoader`` overhead). A NaN or infinite loss stops the run, which
is returned as ``diverged``; it never raises.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.data import Dataset
from initlab.probe.tracking import Tracker, make_tracker
from initlab.train.optim import build_optimizer
from initlab.train.result import DIVERGED, RunResult, final_status
from initlab.train.seeding import derive_seed, make_generator

EVAL_BATCH = 2048
EpochCallback = Callable[[dict[str, float]], None]
StepCallback = Callable[[int], None]


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, batch: int = EVAL_BATCH
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch):
        logits = model(x[start : start + batch])
        target = y[start : start + batch]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    n = max(len(x), 1)
    return loss_sum / n, correct / n


def train_model(
    model: nn.Module,
    data: Dataset,
    *,
    optimizer: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 32,
    epochs: int = 5,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    track: str | int | Tracker = "off",
) -> RunResult:
    """Train ``model`` on ``data`` with minibatch ``optimizer``; evaluate each epoch.

    The data order of epoch ``e`` is ``randperm(n)`` from the run's ``"data"`` stream
    (:func:`initlab.train.seeding.make_generator`), the last partial batch included; dropout
    draws from the ``"dropout"`` stream. The global RNG state is left as it was.

    ``track``: per-layer statistics into ``result.layer_stats`` — ``"off"`` (default),
    ``"epoch"`` (at step 0 and after every epoch), N (at step 0 and every N optimizer steps)
    or a :class:`~initlab.probe.tracking.Tracker`. Tracking never changes the training
    (see :mod:`initlab.probe.tracking`).
    """
    tracker = make_tracker(track, data)
    first_row = len(tracker.rows) if tracker is not None else 0
    opt = build_optimizer(
        optimizer, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    order = make_generator(seed, "data")
    result = RunResult(config=None, status="running")
    started = time.perf_counter()
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "dropout"))
        if tracker is not None:
            tracker.start(model)
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(len(data.x_train), generator=order)
            train_loss, train_acc, bad_step = _train_epoch(
                model,
                opt,
                data.x_train,
                data.y_train,
                perm,
                batch_size,
                _step_hook(tracker, model, epoch, (epoch - 1) * steps_per_epoch),
            )
            if bad_step is not None:
                result.status = DIVERGED
                result.message = f"loss became non-finite at epoch {epoch}, step {bad_step}"
                break
            if tracker is not None:
                tracker.after_epoch(model, epoch, epoch * steps_per_epoch)
            val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
            record = dict(
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_acc,
                val_loss=val_loss,
                val_accuracy=val_acc,
                seconds=time.perf_counter() - t0,
            )
            result.epochs.append(record)
            if on_epoch is not None:
                on_epoch(record)
    result.train_seconds = time.perf_counter() - started
    if tracker is not None:
        result.layer_stats = list(tracker.rows[first_row:])
    if result.status != DIVERGED:
        result.test_loss, result.test_accuracy = evaluate(model, data.x_test, data.y_test)
        result.status = final_status(result.test_accuracy, data.num_classes)
    return result


def _step_hook(
    tracker: Tracker | None, model: nn.Module, epoch: int, steps_before: int
) -> StepCallback | None:
    """``after_step(i)`` for a per-step tracker (``i``: 0-based step within the epoch)."""
    if tracker is None or not tracker.per_step:
        return None
    return lambda i: tracker.after_step(model, epoch, steps_before + i + 1)


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    perm: Tensor,
    batch_size: int,
    after_step: StepCallback | None = None,
) -> tuple[float, float, int | None]:
    """One pass over ``x[perm]``; returns (mean loss, accuracy, first non-finite step or None).

    ``after_step(i)`` runs after optimizer step ``i`` (0-based within the epoch), if given.
    """
    model.train()
    loss_sum, correct = 0.0, torch.zeros((), dtype=torch.long)
    for step, start in enumerate(range(0, len(perm), batch_size)):
        idx = perm[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        value = loss.item()
        if not math.isfinite(value):
            return math.nan, math.nan, step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(step)
        loss_sum += value * len(idx)
        correct += (logits.argmax(1) == yb).sum()
    n = len(perm)
    return loss_sum / n, int(correct) / n, None
