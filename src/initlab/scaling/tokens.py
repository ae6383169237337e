"""Small token datasets for sequence models' coordinate checks.

``progressions``: each sequence is ``x_t = (x_0 + s·t) mod vocab_size`` with a random start
``x_0`` and step ``s ∈ {1, ..., 7}``; the target is the next token. A model must read the step
from its context (attention), so the task is learnable but not trivial. Its tokens are uniform
over the vocabulary.

``zipf_copies`` (the default for ``initlab scaling --model gpt``): text-like token
frequencies. Tokens are drawn from a Zipf law ``P(k) ∝ 1/(k+1)`` (rank ``k``), as words in
text are, and each token repeats the one ``lag`` positions back with probability ``copy``
(else it is a fresh draw), so the next token is predictable from the context (attention) and
the unigram frequencies stay Zipf's at every position. Why the coordinate check wants such
frequencies and not uniform tokens: docs/scaling.md, §6.

``--data initlab.scaling.tokens:progressions`` or ``...:zipf_copies``.
"""

from __future__ import annotations

import torch

VOCAB, CONTEXT, MAX_STEP = 64, 32, 7
LAG, COPY = 4, 0.5


def _split(seq: torch.Tensor, n_train: int, vocab_size: int) -> dict[str, object]:
    """Inputs ``seq[:, :-1]`` and next-token targets ``seq[:, 1:]``, train/test split."""
    x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
        "num_classes": vocab_size,
    }


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
    return _split(seq, n_train, vocab_size)


def zipf_copies(
    n_train: int = 2048,
    n_test: int = 256,
    vocab_size: int = VOCAB,
    context: int = CONTEXT,
    lag: int = LAG,
    copy: float = COPY,
) -> dict[str, object]:
    """Like :func:`progressions`, for sequences ``x_t = x_{t−lag}`` with probability ``copy``
    (``t ≥ lag``), else a fresh draw from ``P(k) = (1/(k+1)) / Σ_j 1/(j+1)``; fixed seed (0)."""
    gen = torch.Generator().manual_seed(0)
    n = n_train + n_test
    zipf = 1.0 / torch.arange(1, vocab_size + 1, dtype=torch.float64)
    fresh = torch.multinomial(zipf / zipf.sum(), n * (context + 1), True, generator=gen)
    seq = fresh.view(n, context + 1)
    copies = torch.rand(n, context + 1, generator=gen) < copy
    for t in range(lag, context + 1):
        seq[:, t] = torch.where(copies[:, t], seq[:, t - lag], seq[:, t])
    return _split(seq, n_train, vocab_size)
