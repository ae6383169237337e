"""Model builders: MLPs (plain, batch-norm, residual) and a small CNN."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from initlab.errors import UnknownNameError
from initlab.models.cnn import SmallCNN
from initlab.models.mlp import MLP

ARCHITECTURES = ("mlp", "cnn")

__all__ = ["ARCHITECTURES", "MLP", "SmallCNN", "build_model"]


def build_model(
    architecture: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    hidden: Sequence[int] = (300, 100),
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float = 0.0,
    residual: bool = False,
) -> nn.Module:
    """Build ``"mlp"`` or ``"cnn"`` for inputs of ``input_shape`` and ``num_classes`` outputs.

    The weights are PyTorch's defaults; :func:`initlab.initialize` sets the scheme under study.
    """
    if architecture == "mlp":
        return MLP(
            math.prod(input_shape),
            hidden,
            num_classes,
            activation,
            batch_norm=batch_norm,
            dropout=dropout,
            residual=residual,
        )
    if architecture == "cnn":
        return SmallCNN(input_shape, num_classes, activation, batch_norm=batch_norm)
    raise UnknownNameError("model", architecture, ARCHITECTURES)
