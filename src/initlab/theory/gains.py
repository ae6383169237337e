"""Gains: the factor by which an initializer's standard deviation is multiplied per activation.

A layer ``W ~ N(0, gain² / fan_in)`` fed ``phi(z)`` with ``z ~ N(0, 1)`` produces outputs of
variance ``gain² E_z[phi(z)²]``, so the *numeric* gain that keeps the second moment at 1 is::

    gain_numeric(phi) = 1 / sqrt(E_{z~N(0,1)}[phi(z)²])

PyTorch's ``torch.nn.init.calculate_gain`` tabulates a few values (``method="pytorch"``);
initlab uses them where they exist and the numeric rule elsewhere (``method="auto"``).

==========  ===========  =======  ======  =================================================
activation  PyTorch      numeric  auto    note
==========  ===========  =======  ======  =================================================
linear      1            1        1       identical
relu        √2 = 1.4142  1.4142   √2      identical (He et al. 2015)
leaky_relu  √(2/1.0001)  1.4141   same    identical (slope 0.01)
tanh        5/3 = 1.667  1.5925   5/3     PyTorch's 5/3 is empirical; E[tanh(z)²] = 0.394
                                          gives 1.59 (and the edge of chaos is at 1.0)
sigmoid     1            1.8462   1       E[sigmoid(z)²] = 0.293 is mostly the mean 1/2
                                          squared (variance 0.043): 1.85 preserves the
                                          second moment, not the fluctuation; no gain can
                                          centre a non-zero-mean activation
selu        3/4          1.0000   3/4     SELU is built so E[selu(z)²] = 1; PyTorch's 3/4
                                          is an empirical choice for non-SNN use
elu         —            1.2452   num.
gelu        —            1.5335   num.
silu        —            1.6765   num.
softsign    —            2.3375   num.
softplus    —            1.0419   num.    softplus(z) > 0 (mean 0.81): mostly mean, too
==========  ===========  =======  ======  =================================================

The edge-of-chaos gain ``sqrt(critical_sigma_w2)`` is :func:`critical_gain` (see
:mod:`initlab.theory.meanfield`): ReLU √2 again, but tanh 1.0 at ``sigma_b2 = 0``.
"""

from __future__ import annotations

import math

import torch

import initlab.activations as activations
from initlab.errors import UnknownNameError
from initlab.theory import _checks
from initlab.theory.meanfield import critical_sigma_w2, second_moment

METHODS = ("auto", "pytorch", "numeric")


def pytorch_gain(activation: str) -> float | None:
    """``torch.nn.init.calculate_gain``'s value for ``activation``; None where PyTorch has none."""
    act = activations.get(activation)
    if act.pytorch_gain is None:
        return None
    if act.name == "leaky_relu":
        return float(torch.nn.init.calculate_gain("leaky_relu", activations.LEAKY_RELU_SLOPE))
    return float(torch.nn.init.calculate_gain(act.name))


def numeric_gain(activation: str) -> float:
    """``1 / sqrt(E_{z~N(0,1)}[phi(z)²])`` (split Gauss–Legendre quadrature, ~1e-15)."""
    return 1.0 / math.sqrt(float(second_moment(activation, 1.0)))


def gain(activation: str, *, method: str = "auto") -> float:
    """The recommended gain of ``activation``: the std multiplier for ``W ~ (0, gain²/fan_in)``.

    ``method``: ``"pytorch"`` = ``calculate_gain`` (raises ``UnknownNameError`` for
    activations PyTorch does not tabulate); ``"numeric"`` = ``1 / sqrt(E[phi(z)²])``;
    ``"auto"`` = PyTorch's value where it exists, numeric otherwise. See the module table.
    """
    name = _checks.canonical(activation)
    if method not in METHODS:
        raise UnknownNameError("gain method", method, METHODS)
    if method == "numeric":
        return numeric_gain(name)
    value = pytorch_gain(name)
    if value is None:
        if method == "pytorch":
            with_gain = [a for a in activations.names() if pytorch_gain(a) is not None]
            raise UnknownNameError("activation with a PyTorch gain", name, with_gain)
        return numeric_gain(name)
    return value


def gain_table() -> list[dict]:
    """One row per registry activation: ``activation, pytorch, numeric, auto, source``.

    ``pytorch`` is None where PyTorch defines no gain; ``source`` says which one ``auto`` is.
    """
    rows = []
    for name in activations.names():
        torch_value = pytorch_gain(name)
        rows.append(
            {
                "activation": name,
                "pytorch": torch_value,
                "numeric": numeric_gain(name),
                "auto": gain(name),
                "source": "numeric" if torch_value is None else "pytorch",
            }
        )
    return rows


def critical_gain(activation: str, sigma_b2: float = 0.0) -> float:
    """``sqrt(critical_sigma_w2(activation, sigma_b2))``: the gain at the edge of chaos."""
    return math.sqrt(critical_sigma_w2(activation, sigma_b2))


EDGE_OF_CHAOS = ("tanh", "linear")
"""Activations whose prescribed gain is the edge of chaos, :func:`critical_gain` (tanh 1.0
at ``sigma_b2 = 0``): PyTorch's 5/3 puts a deep tanh net in the chaotic phase (sigma_w² =
2.78, trainable depth a few dozen layers; Schoenholz et al. 2017), and an orthogonal init
at sigma_w² = 1 is dynamically isometric (Pennington et al. 2017)."""


def prescribed_gain(activation: str, sigma_b2: float = 0.0) -> float:
    """The gain initlab prescribes before ``activation`` (its diagnosis suggestions and
    its doctor's plans): :func:`critical_gain` at the biases' variance ``sigma_b2`` for
    :data:`EDGE_OF_CHAOS` (tanh 1.0 with zero biases, ≈ 1.327 = sqrt(1.7609) at
    sigma_b² = 0.05), :func:`gain` otherwise (ReLU √2 either way)."""
    name = _checks.canonical(activation)
    return critical_gain(name, sigma_b2) if name in EDGE_OF_CHAOS else gain(name)
