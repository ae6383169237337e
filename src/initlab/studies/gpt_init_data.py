"""Character-level text for the ``gpt-init`` study: Python's own standard library source.

``--data initlab.studies.gpt_init_data:stdlib_chars``: the source of :data:`MODULES` (shipped
with every Python, found by :func:`inspect.getsource`, no download), concatenated and cut into
non-overlapping windows of ``CONTEXT + 1`` characters; inputs are a window's first
``CONTEXT`` tokens, targets the same shifted by one (next-character prediction). The last
10% of the text is the test set. Tokens: newline → 0, printable ASCII (32–126) → 1–95, any
other character → 96, so ``vocab_size = 97``.
"""

from __future__ import annotations

import importlib
import inspect

import torch
from torch import Tensor

MODULES = ("argparse", "difflib", "typing", "dataclasses")
CONTEXT = 64
VOCAB_SIZE = 97
TEST_SHARE = 0.1


def corpus() -> str:
    """The concatenated source text of :data:`MODULES`."""
    return "\n".join(inspect.getsource(importlib.import_module(m)) for m in MODULES)


def encode(text: str) -> Tensor:
    """Characters → token ids (module docstring), int64."""
    ids = [0 if c == "\n" else ord(c) - 31 if 32 <= ord(c) <= 126 else 96 for c in text]
    return torch.tensor(ids, dtype=torch.long)


def _windows(tokens: Tensor) -> tuple[Tensor, Tensor]:
    n = (len(tokens) - 1) // CONTEXT
    x = tokens[: n * CONTEXT].reshape(n, CONTEXT)
    y = tokens[1 : n * CONTEXT + 1].reshape(n, CONTEXT)
    return x.contiguous(), y.contiguous()


def stdlib_chars() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: token windows ``[N, CONTEXT]``."""
    tokens = encode(corpus())
    cut = int(len(tokens) * (1 - TEST_SHARE))
    return (*_windows(tokens[:cut]), *_windows(tokens[cut:]))
