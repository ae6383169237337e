"""A teacher-network classification task, generated from ``seed`` in milliseconds.

Inputs ``x ~ N(0, I_d)`` (d = 32). A fixed random teacher MLP d-64-10 with tanh hidden units
and weights ``N(0, 1/fan_in)`` (no biases) maps each input to 10 logits; the label is the
argmax. Raw argmax labels of a random teacher are unbalanced, so the teacher's logits are
centred over the generated inputs and then an output bias is tuned (multiplicative steps
on the class frequencies) until the class counts differ by at most 1% of their mean (checked
for seeds 0..199: every class holds 10% +- 0.1 percentage point of the examples).
Everything — teacher, inputs, labels — is a function of ``seed`` (a ``torch.Generator``,
never the global RNG).

Split: 9,000 pool + 2,000 test examples, all i.i.d.; validation = the first ``val_size``
(default 1,000) pool examples, the rest (8,000) train.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import Tensor

from initlab.data.dataset import Dataset, assemble, check_val_size

NAME = "synthetic"
DIM = 32
HIDDEN = 64
NUM_CLASSES = 10
NUM_POOL = 9000
NUM_TEST = 2000
DEFAULT_VAL = 1000
CLASSES = tuple(f"class {k}" for k in range(NUM_CLASSES))


def balance_bias(logits: Tensor, steps: int = 200) -> Tensor:
    """An output bias that makes ``argmax(logits + bias)`` about uniform over the classes.

    Multiplicative updates ``bias -= lr * log(freq * k)`` with a decaying ``lr``, stopping once
    the largest and smallest class counts differ by at most 1% of the mean count; the best
    bias seen is returned.
    """
    n, k = logits.shape
    bias = torch.zeros(k, dtype=logits.dtype)
    best, best_spread = bias.clone(), math.inf
    for step in range(steps):
        counts = torch.bincount((logits + bias).argmax(1), minlength=k).to(logits.dtype)
        spread = float(counts.max() - counts.min())
        if spread < best_spread:
            best, best_spread = bias.clone(), spread
        if spread <= max(1.0, 0.01 * n / k):
            break
        bias -= 0.5 * 0.98**step * torch.log(counts.clamp(min=1.0) * k / n)
    return best


def make_synthetic(
    seed: int = 0,
    *,
    num_samples: int = NUM_POOL + NUM_TEST,
    dim: int = DIM,
    hidden: int = HIDDEN,
    num_classes: int = NUM_CLASSES,
) -> tuple[Tensor, Tensor]:
    """``num_samples`` inputs (float32 [N, dim]) and teacher labels (int64), all from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(hidden, dim, generator=gen, dtype=torch.float64) / math.sqrt(dim)
    w2 = torch.randn(num_classes, hidden, generator=gen, dtype=torch.float64) / math.sqrt(hidden)
    x = torch.randn(num_samples, dim, generator=gen)
    logits = torch.tanh(x.double() @ w1.T) @ w2.T
    logits -= logits.mean(0)
    y = (logits + balance_bias(logits)).argmax(1)
    return x, y


@functools.lru_cache(maxsize=4)
def arrays(seed: int) -> tuple[Tensor, Tensor]:
    """The default-size task for ``seed`` (cached in-process)."""
    return make_synthetic(seed)


def load(
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    limit_train: int | None = None,
) -> Dataset:
    """Load the teacher task for ``seed``: val = first ``val_size`` pool examples."""
    del data_dir, download  # generated offline
    x, y = arrays(seed)
    x_pool, y_pool = x[:NUM_POOL], y[:NUM_POOL]
    n_val = check_val_size(DEFAULT_VAL if val_size is None else val_size, NUM_POOL, NAME)
    return assemble(
        NAME,
        (x_pool[n_val:], y_pool[n_val:]),
        (x_pool[:n_val], y_pool[:n_val]),
        (x[NUM_POOL:], y[NUM_POOL:]),
        classes=CLASSES,
        source="generated",
        limit_train=limit_train,
    )


def availability(data_dir: str | Path | None = None) -> str:
    """Always available."""
    return "generated offline"


def info() -> dict:
    """Static facts about the synthetic teacher task."""
    return {
        "name": NAME,
        "title": "synthetic teacher task",
        "description": (
            f"x ~ N(0, I_{DIM}); label = argmax of a random tanh teacher MLP "
            f"{DIM}-{HIDDEN}-{NUM_CLASSES} (weights N(0, 1/fan_in)), logits centred and an "
            "output bias tuned so the classes are balanced"
        ),
        "num_train": NUM_POOL - DEFAULT_VAL,
        "num_val": DEFAULT_VAL,
        "num_test": NUM_TEST,
        "input_shape": (DIM,),
        "num_classes": NUM_CLASSES,
        "classes": CLASSES,
        "split": (
            f"{NUM_POOL} + {NUM_TEST} i.i.d. examples from torch.Generator(seed); validation = "
            f"the first val_size (default {DEFAULT_VAL}) of the {NUM_POOL}; seed also picks "
            "the teacher"
        ),
        "scaling": "none (standard normal inputs)",
        "url": None,
        "citation": "teacher-student setup, e.g. E. Gardner, B. Derrida, J. Phys. A 22, 1989.",
    }
