"""Fixed-scale schemes: constants, and normal/uniform/truncated draws whose scale ignores fans.

Keras names (``random_normal``, ``random_uniform``, ``truncated_normal``) keep Keras' defaults
(std 0.05); ``jax_normal``/``jax_uniform`` keep JAX's (1e-2, and U[0, scale) — not symmetric).
PyTorch's ``normal``/``uniform``/``trunc_normal`` live in :mod:`.torch_names`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from initlab.errors import InitlabError
from initlab.initializers.base import Sampler, Scheme, Shape
from initlab.initializers.checks import check_nonnegative, check_real, check_strictly_positive
from initlab.initializers.fans import Fans

#: Std of a standard normal truncated to (-2, 2): sqrt(1 - 4 φ(2) / (2 Φ(2) - 1)).
TRUNCATED_STD = 0.87962566103423978


def unit_truncated_normal_(tensor: Tensor, generator: torch.Generator | None) -> Tensor:
    """Fill ``tensor`` with N(0, 1) truncated to [-2, 2].

    Uses ``torch.nn.init.trunc_normal_(tensor, 0, 1, -2, 2)`` (inverse-CDF sampling: the
    same law as redrawing values outside, without the redraws); this
    is the ``random.truncated_normal(key, -2, 2)`` of JAX and Keras, whose std is
    :data:`TRUNCATED_STD`.
    """
    return torch.nn.init.trunc_normal_(tensor, 0.0, 1.0, -2.0, 2.0, generator=generator)


@dataclass(frozen=True)
class Constant(Sampler):
    """Every entry equal to ``value``."""

    value: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        tensor.fill_(self.value)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        return 0.0


@dataclass(frozen=True)
class Normal(Sampler):
    """N(mean, stddev²), drawn with ``Tensor.normal_`` (as ``torch.nn.init.normal_``)."""

    mean: float
    stddev: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        tensor.normal_(self.mean, self.stddev, generator=generator)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        return self.stddev


@dataclass(frozen=True)
class Uniform(Sampler):
    """U[low, high), drawn with ``Tensor.uniform_`` (as ``torch.nn.init.uniform_``)."""

    low: float
    high: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        tensor.uniform_(self.low, self.high, generator=generator)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        return (self.high - self.low) / math.sqrt(12.0)


@dataclass(frozen=True)
class TruncatedAtTwo(Sampler):
    """``mean + stddev · z`` with z ~ N(0, 1) truncated to [-2, 2]; std ``0.8796·stddev``."""

    mean: float
    stddev: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        unit_truncated_normal_(tensor, generator).mul_(self.stddev).add_(self.mean)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        return TRUNCATED_STD * self.stddev


def check_interval(low_name: str, low: float, high_name: str, high: float) -> None:
    """Raise :class:`InitlabError` unless ``low`` and ``high`` are finite with low <= high."""
    check_real(low_name, low)
    check_real(high_name, high)
    if low > high:
        raise InitlabError(f"{low_name} must be <= {high_name}, got {low_name}={low} > {high}")


def zeros() -> Sampler:
    """All zeros (Keras ``zeros``, PyTorch ``zeros_``, JAX ``zeros``): W = 0.

    Every unit of a layer then computes the same function, and units whose outgoing weights
    are equal too (every zeroed layer feeding a zeroed layer) receive the same gradient: the
    symmetry is never broken. Fine for biases, fatal for hidden-layer weights.
    """
    return Constant(0.0)


def ones() -> Sampler:
    """All ones (Keras ``ones``, PyTorch ``ones_``): W = 1."""
    return Constant(1.0)


def constant(value: float = 0.0) -> Sampler:
    """Every entry equal to ``value`` (Keras ``Constant``, PyTorch ``constant_``): W = value."""
    check_real("value", value)
    return Constant(value)


def random_normal(mean: float = 0.0, stddev: float = 0.05) -> Sampler:
    """Keras ``RandomNormal``: W ~ N(mean, stddev²), default stddev 0.05.

    Same distribution as PyTorch ``normal`` (whose default std is 1) and JAX ``normal``
    (default 1e-2): only the defaults differ.
    """
    check_real("mean", mean)
    check_nonnegative("stddev", stddev)
    return Normal(mean, stddev)


def random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Sampler:
    """Keras ``RandomUniform``: W ~ U[minval, maxval), default ±0.05.

    PyTorch's ``uniform`` is the same with defaults a=0, b=1.
    """
    check_interval("minval", minval, "maxval", maxval)
    return Uniform(minval, maxval)


def truncated_normal(mean: float = 0.0, stddev: float = 0.05) -> Sampler:
    """Keras ``TruncatedNormal``: N(mean, stddev²) with draws beyond mean ± 2·stddev redrawn.

    No variance correction: the resulting std is 0.87962566·stddev, not stddev (the
    ``variance_scaling`` family corrects, this does not). PyTorch's ``trunc_normal`` instead
    takes absolute bounds ``a``, ``b`` (default ±2, i.e. ±2 std only when std = 1).
    """
    check_real("mean", mean)
    check_strictly_positive("stddev", stddev)
    return TruncatedAtTwo(mean, stddev)


def jax_normal(stddev: float = 1e-2) -> Sampler:
    """JAX ``jax.nn.initializers.normal``: W ~ N(0, stddev²), default stddev 1e-2."""
    check_nonnegative("stddev", stddev)
    return Normal(0.0, stddev)


def jax_uniform(scale: float = 1e-2) -> Sampler:
    """JAX ``jax.nn.initializers.uniform``: W ~ U[0, scale) — NOT symmetric around 0.

    JAX's semantics kept as they are: the mean is scale/2 and every weight is >= 0. Keras'
    ``random_uniform`` and PyTorch's ``uniform`` take both bounds instead.
    """
    check_nonnegative("scale", scale)
    return Uniform(0.0, scale)


SCHEMES = [
    Scheme("zeros", zeros, "keras", "W = 0", pytorch_equivalent="torch.nn.init.zeros_"),
    Scheme("ones", ones, "keras", "W = 1", pytorch_equivalent="torch.nn.init.ones_"),
    Scheme(
        "constant", constant, "keras", "W = {value}", pytorch_equivalent="torch.nn.init.constant_"
    ),
    Scheme(
        "random_normal",
        random_normal,
        "keras",
        "N({mean}, {stddev}²)",
        pytorch_equivalent="normal(mean, std) — same law, default std 1 instead of 0.05",
    ),
    Scheme(
        "random_uniform",
        random_uniform,
        "keras",
        "U[{minval}, {maxval})",
        pytorch_equivalent="uniform(a, b) — same law, default [0, 1) instead of ±0.05",
    ),
    Scheme(
        "truncated_normal",
        truncated_normal,
        "keras",
        "N({mean}, {stddev}²) cut at mean ± 2·stddev, no correction (std 0.8796·stddev)",
        pytorch_equivalent="trunc_normal(mean, std, a=mean-2*std, b=mean+2*std)",
    ),
    Scheme(
        "jax_normal",
        jax_normal,
        "jax",
        "N(0, {stddev}²)",
        keras_equivalent="random_normal(mean=0, stddev)",
    ),
    Scheme(
        "jax_uniform",
        jax_uniform,
        "jax",
        "U[0, {scale}) (not symmetric: mean scale/2)",
        keras_equivalent="random_uniform(minval=0, maxval=scale)",
    ),
]
