"""A note on what a model returns, before it trains: probabilities where the loss takes
logits."""

from __future__ import annotations

from torch import Tensor

from initlab.notes import note

SUM_TOLERANCE = 1e-3
"""How far from 1 a row of probabilities may sum (float32 softmax rows sum to 1 within
``C · eps``; a row of logits that happens to sum to 1 is not in [0, 1] everywhere)."""


def note_probabilities(task: str, out: Tensor) -> None:
    """One note when classification or sequence outputs ``out [B, (T,) C]`` look like
    probabilities (every value in [0, 1], every row summing to 1 within
    :data:`SUM_TOLERANCE`): a softmax at the model's end. The loss, ``F.cross_entropy``,
    applies ``log_softmax`` itself, so probabilities train as logits squeezed into [0, 1]:
    gradients tiny, and every init looks stuck."""
    if task not in ("classification", "sequence") or out.dim() < 2 or out.shape[-1] < 2:
        return
    values = out.detach().float()
    if not bool(((values >= 0) & (values <= 1)).all()):
        return
    if not bool(((values.sum(-1) - 1).abs() <= SUM_TOLERANCE).all()):
        return
    note(
        "the model's outputs are probabilities (in [0, 1], rows summing to 1: a softmax at "
        "its end?); initlab's loss is cross-entropy on logits (it applies log_softmax "
        "itself): return the logits, or every init trains on squeezed outputs"
    )
