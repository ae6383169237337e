"""Multi-layer perceptrons: the workhorse of the initialization lab.

Each hidden block is ``Linear → [BatchNorm1d] → activation → [Dropout]`` (batch norm before
the nonlinearity, as in Ioffe & Szegedy 2015; a Linear followed by batch norm has no bias,
:data:`initlab.config.BIAS_BEFORE_NORM`); the last layer is a plain ``Linear`` producing
logits. With ``residual=True`` every hidden block whose input and output widths agree adds its
input back: ``h ← h + block(h)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

import initlab.activations as activations
from initlab.config import BIAS_BEFORE_NORM
from initlab.errors import InitlabError, check_positive


class HiddenBlock(nn.Module):
    """``Linear → [BatchNorm1d] → activation → [Dropout]``, optionally with a skip connection."""

    def __init__(
        self,
        fan_in: int,
        width: int,
        activation: str,
        batch_norm: bool,
        dropout: float,
        residual: bool,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, width, bias=BIAS_BEFORE_NORM or not batch_norm)
        self.norm = nn.BatchNorm1d(width) if batch_norm else None
        self.act = activations.get(activation).module()
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.residual = residual and fan_in == width

    @property
    def branch_layers(self) -> list[nn.Module]:
        """The residual branch's Linear layers, in order (see :mod:`initlab.residual`)."""
        return [self.linear]

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h)
        h = self.act(h)
        if self.drop is not None:
            h = self.drop(h)
        return x + h if self.residual else h


class MLP(nn.Module):
    """``input → hidden[0] → ... → hidden[-1] → num_classes`` with one activation throughout.

    Inputs of any shape ``[N, *input_shape]`` are flattened first. The attributes
    ``hidden``, ``activation``, ``batch_norm``, ``dropout`` and ``residual`` record the
    architecture so that engines (e.g. the batched trainer) can rebuild it.
    """

    def __init__(
        self,
        input_size: int,
        hidden: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        *,
        batch_norm: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        validate_mlp(input_size, hidden, num_classes, dropout)
        activations.get(activation)  # fail early with a suggestion on a bad name
        self.input_size, self.num_classes = int(input_size), int(num_classes)
        self.hidden = tuple(int(w) for w in hidden)
        self.activation = activation
        self.batch_norm, self.dropout, self.residual = batch_norm, dropout, residual
        self.flatten = nn.Flatten()
        widths = (self.input_size, *self.hidden)
        self.blocks = nn.ModuleList(
            HiddenBlock(a, b, activation, batch_norm, dropout, residual)
            for a, b in itertools.pairwise(widths)
        )
        self.output = nn.Linear(widths[-1], self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.flatten(x)
        for block in self.blocks:
            h = block(h)
        return self.output(h)


def validate_mlp(input_size: int, hidden: Sequence[int], num_classes: int, dropout: float) -> None:
    """Raise :class:`InitlabError` for sizes a network cannot have."""
    check_positive("input size", input_size)
    check_positive("number of classes", num_classes)
    for width in hidden:
        if int(width) != width or width <= 0:
            raise InitlabError(f"hidden widths must be positive integers, got {list(hidden)}")
    if not 0.0 <= dropout < 1.0:
        raise InitlabError(f"dropout must be in [0, 1), got {dropout}")
