"""Batched evaluation: every model's mean cross-entropy and accuracy on one split.

The split is shared by all models, so the first layer is one large matrix product of the
inputs with all models' weights side by side (``[R, in] @ [in, M*out]``); the layers after it
are batched products. Rows are processed in blocks of :func:`eval_rows` so the activations of
a large chunk stay within budget. Per block, the summed loss is accumulated in float64 like
the single engine's ``evaluate`` (which sums ``.item()`` values per block of 2048).
"""

from __future__ import annotations

import torch
from torch import Tensor

from initlab.train.batched.network import forward
from initlab.train.batched.stack import StackedMLP

EVAL_ACTIVATION_BUDGET = 256 * 2**20
"""Bytes of float32 activations one evaluation block may hold (all models together)."""
MAX_EVAL_ROWS = 2048


def eval_rows(models: int, widths: tuple[int, ...]) -> int:
    """Rows per evaluation block: ``budget / (4 bytes * 3 * M * sum(widths[1:]))``, clipped
    to [64, 2048] (three live tensors per unit: pre-activation, activation, and a temporary)."""
    per_row = 4 * 3 * max(models, 1) * max(sum(widths[1:]), 1)
    return int(min(MAX_EVAL_ROWS, max(64, EVAL_ACTIVATION_BUDGET // per_row)))


@torch.no_grad()
def evaluate_stack(net: StackedMLP, x: Tensor, y: Tensor) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy of every model on ``(x, y)``, in eval mode.

    ``x`` is ``[N, *input_shape]``; returns two lists of M Python floats (NaN-free unless a
    model produces NaN logits; an empty split gives zeros, as the single engine does).
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    rows = eval_rows(net.size, net.widths)
    loss_sum = torch.zeros(net.size, dtype=torch.float64)
    correct = torch.zeros(net.size, dtype=torch.long)
    for start in range(0, n, rows):
        target = y[start : start + rows]
        logits = forward(net, flat[start : start + rows], train=False).logits
        logp = torch.log_softmax(logits, dim=2)
        picked = logp.gather(2, target.view(1, -1, 1).expand(net.size, -1, 1))
        loss_sum -= picked.sum((1, 2)).double()
        correct += (logits.argmax(2) == target).sum(1)
    denom = max(n, 1)
    return (loss_sum / denom).tolist(), (correct.double() / denom).tolist()
