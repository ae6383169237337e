"""Per-layer statistics, as pure functions of tensors (no hooks, no modules, no state).

Every function takes plain tensors and returns Python floats, so any engine — the hook-based
probe (:mod:`initlab.probe.hooks`), a batched trainer that computes activations as outputs,
a user's own loop — gets the same numbers under the same names. The entry point is
:func:`layer_metrics`; :data:`METRICS` lists the names it returns, in a stable order.

Shapes: activations are ``[B, features]`` or ``[B, C, *spatial]``. A *unit* is a feature
(``unit_dim=1``) or a channel of a convolution (its value at every position of every sample
counts as one observation of that unit). Use ``unit_dim=-1`` for ``[B, T, features]``.

The duplicate counts (``weight_duplicates``, ``act_duplicates``) and their test live in
:mod:`initlab.probe.duplicates` and are re-exported here.

Statistics are over every element (population std, ``correction=0``). A tensor holding a
non-finite value (an overflow) has mean NaN and std ``inf``: explosions read as infinitely
large, never as a finite number computed from the values that happened to survive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import initlab.activations as activations
from initlab.probe.duplicates import (
    DUPLICATE_ATOL_FACTOR,
    DUPLICATE_MAX_OBSERVATIONS,
    DUPLICATE_MIN_DISTINCT,
    DUPLICATE_RTOL,
    activation_duplicates,
    duplicate_groups,
    duplicate_tolerance,
    weight_duplicates,
)

__all__ = [
    "DUPLICATE_ATOL_FACTOR",
    "DUPLICATE_MAX_OBSERVATIONS",
    "DUPLICATE_MIN_DISTINCT",
    "DUPLICATE_RTOL",
    "METRICS",
    "activation_duplicates",
    "dead_fraction",
    "duplicate_groups",
    "duplicate_tolerance",
    "frobenius_norm",
    "layer_metrics",
    "mean_square_of",
    "mean_std",
    "nonfinite_fraction",
    "saturated_fraction",
    "unit_matrix",
    "weight_duplicates",
]

METRICS: tuple[str, ...] = (
    "pre_mean",
    "pre_std",
    "pre_msq",
    "post_mean",
    "post_std",
    "saturated_frac",
    "dead_frac",
    "nonfinite_frac",
    "weight_std",
    "bias_mean",
    "bias_std",
    "weight_grad_norm",
    "pre_grad_std",
    "post_grad_std",
    "weight_duplicates",
    "act_duplicates",
)
"""The metric names :func:`layer_metrics` returns (the ``metric`` column of tidy rows).

``pre_*``: the pre-activation z (what enters the activation); ``pre_msq`` = mean(z²), the
quantity mean-field theory calls q. ``post_*``: the activation phi(z). ``saturated_frac``:
fraction of activation values beyond the activation's saturation threshold
(:attr:`initlab.activations.Activation.saturation`: |tanh| > 0.99, sigmoid outside
(0.01, 0.99), |softsign| > 0.9; NaN for activations that cannot saturate). ``dead_frac``:
fraction of units whose activation is exactly 0 for every sample (and every position), for
activations with phi'(0) = 0 (ReLU: such a unit gets no gradient); 0 for the others (a tanh
unit at 0 under zero weights passes its gradient on: the zero weights, which ``symmetry``
names, block it, not the unit).
``nonfinite_frac``: fraction of non-finite values in z and phi(z). ``weight_std``,
``bias_mean``, ``bias_std``: the layer's parameters. ``weight_grad_norm``: Frobenius norm
of dL/dW. ``pre_grad_std``, ``post_grad_std``: std of the back-propagated gradients dL/dz
and dL/dphi(z). ``weight_duplicates``: number of units whose incoming weights (and bias)
equal another unit's; ``act_duplicates``: number of non-constant units whose activations
over the batch equal another unit's (see :func:`duplicate_groups`).
"""


def unit_matrix(x: Tensor, unit_dim: int = 1) -> Tensor:
    """``x`` as a matrix ``[observations, units]``: units along ``unit_dim``, the rest rows.

    ``[B, F]`` stays as it is; ``[B, C, H, W]`` becomes ``[B·H·W, C]``; ``[B]`` is ``[B, 1]``.
    """
    if x.dim() < 2:
        return x.reshape(-1, 1)
    moved = x.movedim(unit_dim, -1)
    return moved.reshape(-1, moved.shape[-1])


_TWO_PASS_MIN = 1 << 12
"""Tensors of at least this many elements get their std from two passes (:func:`_std_mean`)."""


def _std_mean(x: Tensor) -> tuple[float, float]:
    """``(mean, population std)`` in ``x``'s dtype. Big tensors: ``mean(x)``, then
    ``mean((x - mean)²)``: two vectorized passes, as accurate as ``torch.std_mean``'s
    one-pass (Welford) kernel and ~20× faster on a CPU (a 1.6M-element map: 8.8 → 0.4 ms,
    one thread of an AMD EPYC). A constant tensor has std exactly 0 and mean exactly its
    value, as with ``torch.std_mean`` (``== 0`` tests downstream rely on it)."""
    if x.numel() < _TWO_PASS_MIN:
        std, mean = torch.std_mean(x, correction=0)
        return float(mean), float(std)
    mean = x.mean()
    var = (x - mean).square_().mean()
    m, s = float(mean), float(var.sqrt())
    if s <= 1e-4 * abs(m):  # perhaps constant, with the mean's rounding as its "std"
        first = x.reshape(-1)[0]
        if bool((x == first).all()):
            return float(first), 0.0
    return m, s


def mean_std(x: Tensor | None) -> tuple[float, float]:
    """``(mean, population std)`` of all elements; ``(nan, inf)`` if any is non-finite,
    ``(nan, nan)`` for ``None`` or an empty tensor. Float32 first, float64 if that overflows."""
    if x is None or x.numel() == 0:
        return math.nan, math.nan
    x = x.detach()
    mean, std = _std_mean(x.float())
    if not (math.isfinite(mean) and math.isfinite(std)):
        mean, std = _std_mean(x.double())
    if not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan, math.inf
    return mean, std


def mean_square_of(mean: float, std: float) -> float:
    """``std² + mean²`` (population moments), ``inf`` for an infinite std."""
    if math.isinf(std):
        return math.inf
    return std * std + mean * mean


def saturated_fraction(post: Tensor | None, activation: str | None) -> float:
    """Fraction of activation values that are saturated under ``activation``'s rule.

    NaN when there is no activation, it is unknown, or it cannot saturate (ReLU, ...).
    """
    if post is None or activation is None or post.numel() == 0:
        return math.nan
    try:
        rule = activations.get(activation).saturation
    except ValueError:
        return math.nan
    if rule is None:
        return math.nan
    return float(rule(post.detach()).sum()) / post.numel()  # a count: no float copy


def dead_fraction(post: Tensor | None, unit_dim: int = 1) -> float:
    """Fraction of units whose value is exactly 0 for every observation.

    A unit of ``[B, F]`` is a column; of ``[B, C, *spatial]`` a channel, dead when it is 0 at
    every position of every sample.
    """
    if post is None or post.numel() == 0:
        return math.nan
    x = post.detach()
    if x.dim() < 2 or not x.is_floating_point():
        dead = (unit_matrix(x, unit_dim) == 0).all(dim=0)
    else:  # largest and smallest value 0 (NaN is neither): no copy of the map
        others = [d for d in range(x.dim()) if d != unit_dim % x.dim()]
        dead = (x.amax(dim=others) == 0) & (x.amin(dim=others) == 0)
    return float(dead.double().mean())


def nonfinite_fraction(*tensors: Tensor | None) -> float:
    """Fraction of non-finite (inf/NaN) values among all elements of ``tensors``."""
    present = [t.detach() for t in tensors if t is not None and t.numel() > 0]
    if not present:
        return math.nan
    if all(math.isfinite(float(t.sum(dtype=torch.float64))) for t in present):
        return 0.0  # one cheap reduction instead of an elementwise test
    bad = sum(int((~torch.isfinite(t)).sum()) for t in present)
    return bad / sum(t.numel() for t in present)


def layer_metrics(
    pre: Tensor | None,
    post: Tensor | None = None,
    activation: str | None = None,
    weight: Tensor | None = None,
    weight_grad: Tensor | None = None,
    post_grad: Tensor | None = None,
    *,
    pre_grad: Tensor | None = None,
    bias: Tensor | None = None,
    unit_dim: int = 1,
    groups: int = 1,
) -> dict[str, float]:
    """Every statistic of :data:`METRICS` for one layer, over one batch.

    ``pre``: the pre-activation z ``[B, features]`` or ``[B, C, *spatial]``; ``post``: the
    activation phi(z) (``None`` for an output layer); ``activation``: its registry name (for
    the saturation rule); ``weight``: ``[units, ...]``, one row per output unit (transpose a
    ConvTranspose weight first) and ``bias``; ``weight_grad``: dL/dW; ``pre_grad``,
    ``post_grad``: dL/dz and dL/dphi(z); ``groups``: a grouped convolution's (units of
    different groups are never duplicates). Missing inputs give NaN for the metrics needing
    them.
    """
    pre_mean, pre_std = mean_std(pre)
    post_mean, post_std = mean_std(post)
    bias_mean, bias_std = mean_std(bias)
    finite = not (math.isinf(pre_std) or math.isinf(post_std))
    return {
        "pre_mean": pre_mean,
        "pre_std": pre_std,
        "pre_msq": mean_square_of(pre_mean, pre_std),
        "post_mean": post_mean,
        "post_std": post_std,
        "saturated_frac": saturated_fraction(post, activation),
        "dead_frac": dead_fraction(post, unit_dim) if activations.dies_at_zero(activation) else 0.0,
        "nonfinite_frac": 0.0 if finite and pre is not None else nonfinite_fraction(pre, post),
        "weight_std": mean_std(weight)[1],
        "bias_mean": bias_mean,
        "bias_std": bias_std,
        "weight_grad_norm": frobenius_norm(weight_grad),
        "pre_grad_std": mean_std(pre_grad)[1],
        "post_grad_std": mean_std(post_grad)[1],
        "weight_duplicates": weight_duplicates(weight, bias, groups),
        "act_duplicates": activation_duplicates(post, unit_dim, _fan_in(weight)),
    }


def _fan_in(weight: Tensor | None) -> int | None:
    """The length of one row of ``[units, ...]`` weights: the fan-in of the layer."""
    return None if weight is None or weight.dim() < 1 or not weight.shape[0] else weight[0].numel()


def frobenius_norm(x: Tensor | None) -> float:
    """``sqrt(sum(x²))``; ``inf`` if a value is non-finite, NaN for ``None``."""
    if x is None:
        return math.nan
    value = float(torch.linalg.vector_norm(x.detach().float()))
    if not math.isfinite(value):
        value = float(torch.linalg.vector_norm(x.detach().double()))
    return value if math.isfinite(value) else math.inf
