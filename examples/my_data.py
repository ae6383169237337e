"""Example data functions for ``initlab --data examples/my_data.py:NAME`` (see
docs/your-model.md). Each returns ``(x_train, y_train, x_test, y_test)`` as numpy arrays,
generated from a fixed seed, so the examples need no download.

- :func:`regression`: 8 features, one smooth nonlinear target (float targets: regression);
- :func:`tokens`: sequences of token ids whose next token follows a fixed rule (integer
  ``[N, T]`` inputs and targets: a sequence task);
- :func:`first_token`: sequences of token ids labelled by their *first* token (integer
  ``[N, T]`` inputs, class targets ``[N]``): a classifier must carry it through T steps.
"""

from __future__ import annotations

import numpy as np

FEATURES = 8
VOCAB = 16
STEPS = 16


def regression(n_train: int = 2000, n_test: int = 500, noise: float = 0.1):
    """``y = sin(x·w) + 0.5 (x·v)² / 8 + noise``, ``x ~ N(0, I_8)``: float32 arrays."""
    rng = np.random.default_rng(0)
    w, v = rng.standard_normal(FEATURES), rng.standard_normal(FEATURES)
    x = rng.standard_normal((n_train + n_test, FEATURES)).astype(np.float32)
    y = np.sin(x @ w) + 0.5 * (x @ v) ** 2 / FEATURES + noise * rng.standard_normal(len(x))
    y = y.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def tokens(n_train: int = 2000, n_test: int = 500):
    """Sequences ``t_0, t_1, ...`` with ``t_{i+1} = (t_i + step) mod 16``, ``step`` in
    {1, 2, 3} per sequence; inputs ``[N, 16]``, targets the same sequence shifted by one
    (the next token). Predicting it needs the context (the step), not just the last token."""
    rng = np.random.default_rng(1)
    n = n_train + n_test
    start = rng.integers(0, VOCAB, n)
    step = rng.integers(1, 4, n)
    seq = (start[:, None] + step[:, None] * np.arange(STEPS + 1)) % VOCAB
    x, y = seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def first_token(n_train: int = 1000, n_test: int = 200, steps: int = 12, vocab: int = 8):
    """Random ids ``[N, steps]`` below ``vocab``; the class is the first id mod 3. Every
    later id is noise, so a recurrent model reading left to right must remember step 0."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, vocab, (n_train + n_test, steps)).astype(np.int64)
    y = x[:, 0] % 3
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
