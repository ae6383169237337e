"""A small convolutional network for image-like inputs (1-D signals or 2-D images).

``[conv(k=3, same padding) → [batch norm] → activation → max-pool 2] × len(channels) → flatten →
Linear(dense) → activation → Linear(num_classes)``. Inputs of shape ``(C, L)`` use 1-D
convolutions (MNIST-1D), inputs of shape ``(C, H, W)`` 2-D ones (MNIST, digits). A conv
followed by batch norm has no bias (:data:`initlab.config.BIAS_BEFORE_NORM`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

import initlab.activations as activations
from initlab.config import BIAS_BEFORE_NORM
from initlab.errors import InitlabError


def _channels_last_hint(input_shape: Sequence[int]) -> str:
    """A hint when ``input_shape`` looks like ``[H, W, C]`` (numpy/Keras images)."""
    if len(input_shape) == 3 and input_shape[-1] in (1, 3) and input_shape[0] not in (1, 3):
        return (
            "; the images look channels-last [N, H, W, C]: the CNN takes [N, C, H, W] "
            "(x.transpose(0, 3, 1, 2))"
        )
    return ""


class SmallCNN(nn.Module):
    """Conv blocks followed by a dense hidden layer and a linear classifier."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        *,
        channels: Sequence[int] = (32, 64),
        dense: int = 128,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        conv, pool, norm = _layers_for(input_shape)
        act = activations.get(activation).module
        layers: list[nn.Module] = []
        size = [int(s) for s in input_shape[1:]]
        in_ch = int(input_shape[0])
        for out_ch in channels:
            if min(size) < 2:
                raise InitlabError(
                    f"input {tuple(input_shape)} is too small for {len(channels)} conv blocks"
                    + _channels_last_hint(input_shape)
                )
            bias = BIAS_BEFORE_NORM or not batch_norm
            layers.append(conv(in_ch, out_ch, kernel_size=3, padding=1, bias=bias))
            if batch_norm:
                layers.append(norm(out_ch))
            layers += [act(), pool(2)]
            size = [s // 2 for s in size]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch * math.prod(size), dense),
            act(),
            nn.Linear(dense, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _layers_for(input_shape: Sequence[int]) -> tuple[type, type, type]:
    if len(input_shape) == 2:
        return nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d
    if len(input_shape) == 3:
        return nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d
    raise InitlabError(
        f"the CNN needs inputs shaped (channels, length) or (channels, height, width), "
        f"got {tuple(input_shape)}; use the MLP for flat inputs"
    )
