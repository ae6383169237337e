"""Evaluation: every model of a stack on one split, in eval mode, in blocks of rows.

All models see the same examples (``vmap`` with a shared input), so each block of rows is
moved to the device once. The block size bounds the activations held at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from initlab.task_names import CLASSIFICATION
from initlab.train.device import autocast
from initlab.train.stack import ModelStack
from initlab.train.tasks import Meter

EVAL_ELEMENTS = 2**23
"""Activation elements (all models together) one evaluation block may hold (32 MiB fp32):
a block's activations stay in the caches and under glibc's largest ``mmap`` threshold, so
no block pays a page fault per page of fresh memory (8 stacked ResNets on 500 rows:
886 ms in one block of 500, 261-321 ms in blocks of 32-64; a block of 350 rows for 15 seed
MLPs)."""
MAX_EVAL_ROWS = 2048


def eval_rows(models: int, activations_per_example: int) -> int:
    """Rows per block: ``EVAL_ELEMENTS / (M * activations per example)``, in [16, 2048]."""
    per_row = max(models, 1) * max(activations_per_example, 1)
    return int(min(MAX_EVAL_ROWS, max(16, EVAL_ELEMENTS // per_row)))


@torch.no_grad()
def evaluate_stack(
    stack: ModelStack,
    x: Tensor,
    y: Tensor,
    task: str,
    *,
    precision: str = "fp32",
    rows: int = MAX_EVAL_ROWS,
    meter: Meter | None = None,
) -> tuple[list[float], list[float]]:
    """Each model's mean loss and score (:mod:`initlab.train.tasks`) on ``(x, y)``,
    accumulated in ``meter`` (a new one by default; the caller's, to read it afterwards)."""
    meter = meter if meter is not None else Meter(task, stack.size, stack.device)
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows].to(stack.device, non_blocking=True)
        yb = y[start : start + rows].to(stack.device, non_blocking=True)
        with autocast(precision, stack.device):
            out = stack.forward(xb, train=False, shared=True)
        meter.add(out, yb.expand(stack.size, *yb.shape))
    return meter.result()


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, batch: int = MAX_EVAL_ROWS, task: str = CLASSIFICATION
) -> tuple[float, float]:
    """Mean loss and score (accuracy for classification) of one ``model`` on ``(x, y)``, in
    eval mode (its train/eval flag is restored)."""
    was_training = model.training
    model.eval()
    meter = Meter(task, 1, x.device)
    try:
        for start in range(0, len(x), batch):
            out = model(x[start : start + batch])
            meter.add(out.unsqueeze(0), y[start : start + batch].unsqueeze(0))
    finally:
        model.train(was_training)
    loss, score = meter.result()
    return loss[0], score[0]
