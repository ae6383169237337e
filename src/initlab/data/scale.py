"""The scale of the user's training inputs, and one note when it is far from standardized.

initlab trains on the inputs as given (``uint8`` pixels become float32 0..255, not 0..1),
while every scheme it compares sets its weights for inputs of unit scale: LeCun, Glorot and
He choose ``Var(w)`` so that a layer keeps the mean square of its inputs when that is about
1. A first Linear/Conv layer's pre-activations have mean square
``fan_in · Var(w) · E[x²]`` (``E[x²]`` averaged over the input features), so inputs of
root-mean-square ``r`` make them ``r`` times too large, and through positively homogeneous
activations (ReLU, biases zero) every later layer and the logits too. The schemes then rank
by how much of that excess each one's smaller or larger variance happens to absorb (PyTorch's
default draws a variance 6 times below He's), not by what they do on well-scaled data.

The rule (:func:`note_input_scale`): **the root-mean-square of the float training inputs,
``sqrt(mean(x²))`` over every value, above** :data:`RMS_LIMIT` = 10, i.e. first-layer
pre-activations at least 10 times (variance 100 times) what the schemes assume, far beyond
the factor of 2 to 6 by which the schemes differ from one another. The root-mean-square, not
the standard deviation: a constant offset (years around 2000) inflates a layer's outputs just
as a spread does. Not the largest value: a few outliers in standardized data move it without
moving any layer's variance. Standardized features (1) and pixels in [0, 1] (under 1) are far
below; raw 0..255 pixels (about 85 for MNIST-like images) far above. Integer inputs kept as
token ids (int64, for an ``nn.Embedding``) are never measured: ids are legitimately large.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from initlab.notes import note

RMS_LIMIT = 10.0
"""Above this root-mean-square of the training inputs, loading notes their scale."""


def input_scale(x: Tensor) -> tuple[float, float, float, float, float]:
    """``(min, max, mean, std, rms)`` of every value of ``x`` (std without Bessel's
    correction; ``rms = sqrt(mean² + std²)``), computed without a copy of ``x``."""
    std, mean = torch.std_mean(x, correction=0)
    low, high = torch.aminmax(x)
    mean_, std_ = float(mean), float(std)
    return float(low), float(high), mean_, std_, math.hypot(mean_, std_)


def note_input_scale(x: Tensor, given: Tensor, what: str = "x_train") -> None:
    """One :func:`~initlab.notes.note` when the float inputs ``x`` (as converted; ``given``
    is how the user gave them) have a root-mean-square above :data:`RMS_LIMIT` (the module
    docstring says why); nothing for token ids or empty inputs."""
    if not x.dtype.is_floating_point or not x.numel():
        return
    low, high, mean, std, rms = input_scale(x)
    if not rms > RMS_LIMIT:
        return
    fix = (
        "divide by 255 or standardize it"
        if given.dtype == torch.uint8
        else "standardize it ((x - mean) / std, with the training set's statistics)"
    )
    note(
        f"{what} ranges {_shown(low)}..{_shown(high)} (mean {_shown(mean)}, std "
        f"{_shown(std)}): initlab "
        f"trains on it as given; unless the model rescales its inputs itself, {fix} first, "
        "or schemes that assume unit-variance inputs look worse than they are"
    )


def _shown(value: float) -> str:
    """``value`` to 3 significant digits, whole numbers from 100 to a million as they are
    (``255``, ``1003``, not ``1e+03``)."""
    if 100 <= abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.3g}"
