"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

Pixel values 0..16 are scaled to [0, 1] (x / 16); input shape (1, 8, 8). There is no
official split: a seeded, class-stratified permutation (``numpy.random.default_rng(seed)``)
puts 20% (360 images) in the test set, the next ``val_size`` (default 360, 20%) in the
validation set and the rest (1,077 by default) in the training set. The test set depends on
``seed`` and not on ``val_size``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from initlab.data.dataset import (
    Dataset,
    after_validation,
    assemble,
    check_val_size,
    stratified_order,
    take,
)
from initlab.errors import InitlabError
from initlab.global_state import preserved_globals

NAME = "digits"
NUM_SAMPLES = 1797
NUM_TEST = 360
DEFAULT_VAL = 360
CLASSES = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=1)
def arrays() -> tuple[Tensor, Tensor]:
    """All 1,797 images as float32 [N, 1, 8, 8] in [0, 1] and labels as int64 (cached)."""
    with preserved_globals():  # importing sklearn.datasets draws from `random`
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
            raise InitlabError("digits needs scikit-learn: pip install scikit-learn") from err
        bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return x, y


def load(
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    limit_train: int | None = None,
) -> Dataset:
    """Load digits with a seeded stratified train/val/test split (``data_dir`` is unused)."""
    del data_dir, download  # bundled with scikit-learn
    x, y = arrays()
    n_val = check_val_size(DEFAULT_VAL if val_size is None else val_size, len(y) - NUM_TEST, NAME)
    order = stratified_order(y.numpy(), seed)
    return assemble(
        NAME,
        take(x, y, after_validation(order, NUM_TEST + n_val, limit_train)),
        take(x, y, order[NUM_TEST : NUM_TEST + n_val]),
        take(x, y, order[:NUM_TEST]),
        classes=CLASSES,
        source="scikit-learn",
    )


def availability(data_dir: str | Path | None = None) -> str:
    """Always available."""
    return "bundled with scikit-learn"


def info() -> dict:
    """Static facts about the digits dataset."""
    return {
        "name": NAME,
        "title": "scikit-learn digits",
        "description": "UCI optical handwritten digits, 8x8 images with values 0..16 "
        "(sklearn.datasets.load_digits).",
        "num_train": NUM_SAMPLES - NUM_TEST - DEFAULT_VAL,
        "num_val": DEFAULT_VAL,
        "num_test": NUM_TEST,
        "input_shape": (1, 8, 8),
        "num_classes": 10,
        "classes": CLASSES,
        "split": (
            f"no official split: a class-stratified permutation from numpy default_rng(seed) "
            f"gives {NUM_TEST} test, then val_size (default {DEFAULT_VAL}) validation, the rest "
            f"training; the test set depends on seed only"
        ),
        "scaling": "values / 16 -> float32 in [0, 1]",
        "url": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "citation": (
            "E. Alpaydin, C. Kaynak. Optical Recognition of Handwritten Digits. UCI Machine "
            "Learning Repository, 1998."
        ),
    }
