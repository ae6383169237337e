"""32×32 images for the ``resnet-depth`` study: the packaged Fashion-MNIST, zero-padded.

``--data initlab.studies.resnet_depth_data:fashion32``: Fashion-MNIST's 28×28 images padded
by 2 pixels on every side to 32×32 (CIFAR's size), one channel, values in [0, 1]; the first
:data:`TRAIN` training and :data:`TEST` test images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TRAIN, TEST = 10_000, 1_000


def _padded(limit_train: int | None, limit_test: int | None) -> tuple[Tensor, ...]:
    from initlab.data import load

    data = load("fashion-mnist", val_size=0)
    parts = []
    for x, y, n in (
        (data.x_train, data.y_train, limit_train),
        (data.x_test, data.y_test, limit_test),
    ):
        x, y = x[:n], y[:n]
        parts += [F.pad(x.reshape(-1, 1, 28, 28), (2, 2, 2, 2)).contiguous(), y.to(torch.long)]
    return tuple(parts)


def fashion32() -> tuple[Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: 10,000 / 1,000 images ``[N, 1, 32, 32]``."""
    return _padded(TRAIN, TEST)
