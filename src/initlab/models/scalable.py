"""Width-parametrized factories for scaling studies (``initlab scaling``, ``lr-transfer``).

``mlp(width, depth, input_size, num_classes, activation)`` is ``input → width → ... → width →
num_classes`` with ``depth`` hidden layers: layer ``blocks.0`` is input-like (finite → width),
``blocks.1 .. blocks.{depth-1}`` are hidden (width → width) and ``output`` is output-like
(width → finite). PyTorch's default initialization (variance 1/(3·fan_in)), i.e. the standard
parametrization.

``cnn(width, ...)`` is initlab's built-in :class:`~initlab.models.cnn.SmallCNN` with
``channels = (width, 2·width)`` and a dense layer of ``4·width`` units: the first conv is
input-like (finite channels → width), the second conv and the dense layer hidden, the
classifier output-like.
"""

from __future__ import annotations

from torch import nn

from initlab.models.cnn import SmallCNN
from initlab.models.mlp import MLP


def mlp(
    width: int = 128,
    depth: int = 3,
    input_size: int = 64,
    num_classes: int = 10,
    activation: str = "relu",
) -> nn.Module:
    """An :class:`~initlab.models.mlp.MLP` with ``depth`` hidden layers of ``width`` units
    (inputs of any shape are flattened; the defaults fit the ``digits`` data, 8×8 → 10)."""
    return MLP(input_size, [int(width)] * int(depth), num_classes, activation)


def cnn(
    width: int = 16,
    input_shape: tuple[int, ...] = (1, 8, 8),
    num_classes: int = 10,
    activation: str = "relu",
    batch_norm: bool = False,
) -> nn.Module:
    """The built-in :class:`~initlab.models.cnn.SmallCNN` scaled by ``width``: conv blocks
    of ``width`` and ``2·width`` channels, a dense layer of ``4·width`` (the defaults fit the
    ``digits`` data, 1×8×8 → 10)."""
    w = int(width)
    return SmallCNN(
        input_shape, num_classes, activation, channels=(w, 2 * w), dense=4 * w,
        batch_norm=batch_norm,
    )  # fmt: skip
