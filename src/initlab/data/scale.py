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
``sqrt(mean(x²))`` over every value, above** :data:`RMS_LIMIT` = 10 **or below its
inverse** 0.1, i.e. first-layer pre-activations at least 10 times (variance 100 times) more
or less than the schemes assume, far beyond the factor of 2 to 6 by which the schemes differ
from one another (sklearn's diabetes features, each column scaled to norm 1, have 0.048).
Regression targets get the same test (:func:`note_target_scale`). The root-mean-square, not
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
SPLIT_RATIO = 3.0
"""Train and test inputs whose root-mean-squares differ by more than this factor are noted:
two samples of one distribution agree far more closely (one split normalized, the other
not, is the usual cause)."""


def input_scale(x: Tensor) -> tuple[float, float, float, float, float]:
    """``(min, max, mean, std, rms)`` of every value of ``x`` (std without Bessel's
    correction; ``rms = sqrt(mean² + std²)``), computed without a copy of ``x``."""
    std, mean = torch.std_mean(x, correction=0)
    low, high = torch.aminmax(x)
    mean_, std_ = float(mean), float(std)
    return float(low), float(high), mean_, std_, math.hypot(mean_, std_)


def note_input_scale(x: Tensor, given: Tensor, what: str = "x_train") -> None:
    """One :func:`~initlab.notes.note` when the float inputs ``x`` (as converted; ``given``
    is how the user gave them) have a root-mean-square above :data:`RMS_LIMIT` or below its
    inverse (the module docstring says why); nothing for token ids or empty inputs."""
    if not x.dtype.is_floating_point or not x.numel():
        return
    low, high, mean, std, rms = input_scale(x)
    if 1 / RMS_LIMIT <= rms <= RMS_LIMIT or not rms > 0:
        return
    fix = (
        "divide by 255 or standardize it"
        if given.dtype == torch.uint8 and rms > RMS_LIMIT
        else "standardize it ((x - mean) / std, with the training set's statistics)"
    )
    note(
        f"{what} ranges {_shown(low)}..{_shown(high)} (mean {_shown(mean)}, std "
        f"{_shown(std)}): initlab "
        f"trains on it as given; unless the model rescales its inputs itself, {fix} first, "
        "or schemes that assume unit-variance inputs look worse than they are"
    )


def note_target_scale(y: Tensor) -> None:
    """One note when regression targets ``y`` are far from unit scale: a root-mean-square
    or a standard deviation outside [1/:data:`RMS_LIMIT`, :data:`RMS_LIMIT`], or a mean more
    than :data:`RMS_LIMIT` standard deviations from 0 (``5 ± 0.08``, a log-price: root-mean-
    square 5, yet the signal is 60× smaller than the offset). Every scheme sets the output
    layer for outputs of unit scale, so the first epochs of every init go to learning the
    targets' offset and scale (MSE starts near ``mean² + std²``), a signal far below that is
    never reached in a short run (every run stuck at R² < 0), and with SGD a loss of ~10⁴
    can diverge. R² does not change when the targets are standardized, so the comparison
    loses nothing."""
    if not y.dtype.is_floating_point or not y.numel():
        return
    low, high, mean, std, rms = input_scale(y)
    if not rms > 0 or _unit_scale(mean, std, rms):
        return
    note(
        f"the regression targets range {_shown(low)}..{_shown(high)} (mean {_shown(mean)}, "
        f"std {_shown(std)}): every scheme sets the output layer for targets of unit scale, "
        "so the first epochs go to learning their offset and scale; standardize them "
        "((y - mean) / std, with the training set's statistics: R² is unchanged)"
    )


def _unit_scale(mean: float, std: float, rms: float) -> bool:
    """Whether targets of this ``mean``, ``std`` and root-mean-square are near enough to
    unit scale for :func:`note_target_scale` to stay silent."""
    near = 1 / RMS_LIMIT <= rms <= RMS_LIMIT
    if std > 0:
        near = near and 1 / RMS_LIMIT <= std <= RMS_LIMIT and abs(mean) <= RMS_LIMIT * std
    return near


def _shown(value: float) -> str:
    """``value`` to 3 significant digits, whole numbers from 100 to a million as they are
    (``255``, ``1003``, not ``1e+03``)."""
    if 100 <= abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.3g}"


def note_split_scales(x_train: Tensor, x_test: Tensor) -> None:
    """One note when float inputs ``x_train`` and ``x_test`` have root-mean-squares more than
    :data:`SPLIT_RATIO` apart: the model would be scored on inputs of another scale than it
    was trained on (pixels 0..255 in one split, standardized in the other)."""
    if not (x_train.dtype.is_floating_point and x_test.dtype.is_floating_point):
        return
    if not (x_train.numel() and x_test.numel()):
        return
    train, test = input_scale(x_train)[4], input_scale(x_test)[4]
    if not (train > 0 and test > 0) or max(train, test) / min(train, test) <= SPLIT_RATIO:
        return
    note(
        f"x_train and x_test differ in scale (root-mean-square {_shown(train)} and "
        f"{_shown(test)}): the test split is scored on inputs unlike those trained on; "
        "normalize both splits the same way (with the training set's statistics)"
    )
