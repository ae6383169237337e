"""A small token dataset for sequence models' coordinate checks: arithmetic progressions.

Each sequence is ``x_t = (x_0 + s·t) mod vocab_size`` with a random start ``x_0`` and step
``s ∈ {1, ..., 7}``; the target is the next token. A model must read the step from its context
(attention), so the task is learnable but not trivial. ``--data
initlab.scaling.tokens:progressions`` (the default for ``initlab scaling --model gpt``).
"""

from __future__ import annotations

import torch

VOCAB, CONTEXT, MAX_STEP = 64, 32, 7


def progressions(
    n_train: int = 2048, n_test: int = 256, vocab_size: int = VOCAB, context: int = CONTEXT
) -> dict[str, object]:
    """``{x_train, y_train, x_test, y_test, num_classes}``: int64 ``[N, context]`` inputs and
    next-token targets, from a fixed seed (0)."""
    gen = torch.Generator().manual_seed(0)
    n = n_train + n_test
    start = torch.randint(0, vocab_size, (n, 1), generator=gen)
    step = torch.randint(1, MAX_STEP + 1, (n, 1), generator=gen)
    seq = (start + step * torch.arange(context + 1)) % vocab_size
    x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
        "num_classes": vocab_size,
    }
