"""PyTorch's names, with ``torch.nn.init``'s exact semantics and draw order.

Given the same generator state and the same fans these produce bit-for-bit the numbers of
``torch.nn.init.xavier_*_``, ``kaiming_*_``, ``normal_``, ``uniform_``, ``trunc_normal_``, and
of ``nn.Linear``/``nn.ConvNd``'s own ``reset_parameters`` (``torch_default``). Unlike the Keras
presets of :mod:`.variance_scaling`, the normal variants are NOT truncated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from initlab.errors import InitlabError
from initlab.initializers.base import Sampler, Scheme, Shape
from initlab.initializers.basic import Normal, Uniform, check_interval
from initlab.initializers.checks import (
    check_choice,
    check_nonnegative,
    check_real,
    check_strictly_positive,
)
from initlab.initializers.fans import Fans

#: The nonlinearities ``torch.nn.init.calculate_gain`` accepts.
TORCH_NONLINEARITIES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)
TORCH_FAN_MODES = ("fan_in", "fan_out")
DISTRIBUTIONS = ("normal", "uniform")


def _draw(tensor: Tensor, distribution: str, std: float, generator: torch.Generator | None) -> None:
    """N(0, std²), or U(±sqrt(3)·std) computed as torch does (``bound = math.sqrt(3.0) * std``)."""
    if distribution == "normal":
        tensor.normal_(0, std, generator=generator)
    else:
        bound = math.sqrt(3.0) * std
        tensor.uniform_(-bound, bound, generator=generator)


@dataclass(frozen=True)
class Xavier(Sampler):
    """``std = gain · sqrt(2 / (fan_in + fan_out))``, as ``torch.nn.init.xavier_*_``."""

    gain: float
    distribution: str

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        total = fans.fan_in + fans.fan_out
        if total <= 0:
            raise InitlabError("fan_in + fan_out is 0: xavier needs at least one fan")
        return self.gain * math.sqrt(2.0 / float(total))

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        _draw(tensor, self.distribution, self.std(fans), generator)


@dataclass(frozen=True)
class Kaiming(Sampler):
    """``std = gain / sqrt(fan_mode)``, as ``torch.nn.init.kaiming_*_``."""

    gain: float
    mode: str
    distribution: str

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        fan = getattr(fans, self.mode)
        if fan <= 0:
            raise InitlabError(f"{self.mode} is 0: kaiming divides by sqrt({self.mode})")
        return self.gain / math.sqrt(fan)

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        _draw(tensor, self.distribution, self.std(fans), generator)


@dataclass(frozen=True)
class LayerBias(Sampler):
    """U(±1/sqrt(fan_in)) with the layer's fan_in (bound 0 when fan_in is 0), as nn.Linear."""

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        bound = 1 / math.sqrt(fans.fan_in) if fans.fan_in > 0 else 0
        tensor.uniform_(-bound, bound, generator=generator)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        return (1 / math.sqrt(fans.fan_in) if fans.fan_in > 0 else 0.0) / math.sqrt(3.0)


@dataclass(frozen=True)
class TruncNormal(Sampler):
    """``torch.nn.init.trunc_normal_(tensor, mean, std, a, b)``: N(mean, std²) on [a, b]."""

    mean: float
    stddev: float
    a: float
    b: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        torch.nn.init.trunc_normal_(tensor, self.mean, self.stddev, self.a, self.b, generator)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        """Std of N(mean, std²) truncated to [a, b]:
        ``std·sqrt(1 + (αφ(α) − βφ(β))/Z − ((φ(α) − φ(β))/Z)²)``, α, β the standardized
        bounds and ``Z = Φ(β) − Φ(α)``.
        """
        alpha, beta = (self.a - self.mean) / self.stddev, (self.b - self.mean) / self.stddev
        pdf = [math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) for x in (alpha, beta)]
        mass = 0.5 * (math.erf(beta / math.sqrt(2)) - math.erf(alpha / math.sqrt(2)))
        spread = (alpha * pdf[0] - beta * pdf[1]) / mass - ((pdf[0] - pdf[1]) / mass) ** 2
        return self.stddev * math.sqrt(max(0.0, 1.0 + spread))


def _gain(nonlinearity: str, a: float) -> float:
    check_choice("nonlinearity", nonlinearity, TORCH_NONLINEARITIES)
    check_real("a", a)
    return float(torch.nn.init.calculate_gain(nonlinearity, a))  # type: ignore[arg-type]


def xavier_normal(gain: float = 1.0) -> Sampler:
    """PyTorch ``xavier_normal_``: W ~ N(0, std²), ``std = gain·sqrt(2/(fan_in+fan_out))``.

    Untruncated. Keras' ``glorot_normal`` has the same std but is a truncated normal
    (N(0, 1) cut at ±2, times σ/0.8796: std σ, cut at ±2.27σ).
    """
    check_nonnegative("gain", gain)
    return Xavier(gain, "normal")


def xavier_uniform(gain: float = 1.0) -> Sampler:
    """PyTorch ``xavier_uniform_``: W ~ U(±a), ``a = gain·sqrt(6/(fan_in+fan_out))``.

    Same law as Keras' ``glorot_uniform`` when gain = 1.
    """
    check_nonnegative("gain", gain)
    return Xavier(gain, "uniform")


def kaiming_normal(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Sampler:
    """PyTorch ``kaiming_normal_``: W ~ N(0, std²), ``std = gain/sqrt(fan_mode)``.

    ``gain = calculate_gain(nonlinearity, a)`` (leaky_relu: sqrt(2/(1+a²)), so the default
    a=0 gives sqrt(2)). Untruncated: Keras' ``he_normal`` (scale 2, fan_in) is a truncated
    normal with the same std.
    """
    check_choice("mode", mode, TORCH_FAN_MODES)
    return Kaiming(_gain(nonlinearity, a), mode, "normal")


def kaiming_uniform(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Sampler:
    """PyTorch ``kaiming_uniform_``: W ~ U(±bound), ``bound = gain·sqrt(3/fan_mode)``.

    ``gain = calculate_gain(nonlinearity, a)``. With the defaults (gain sqrt(2)) this is the
    law of Keras' ``he_uniform``; with a=sqrt(5) it is PyTorch's layer default.
    """
    check_choice("mode", mode, TORCH_FAN_MODES)
    return Kaiming(_gain(nonlinearity, a), mode, "uniform")


def normal(mean: float = 0.0, std: float = 1.0) -> Sampler:
    """PyTorch ``normal_``: W ~ N(mean, std²), defaults N(0, 1) (Keras ``random_normal``: 0.05)."""
    check_real("mean", mean)
    check_nonnegative("std", std)
    return Normal(mean, std)


def uniform(a: float = 0.0, b: float = 1.0) -> Sampler:
    """PyTorch ``uniform_``: W ~ U[a, b), default U[0, 1) (Keras ``random_uniform``: ±0.05)."""
    check_interval("a", a, "b", b)
    return Uniform(a, b)


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Sampler:
    """PyTorch ``trunc_normal_``: N(mean, std²) redrawn until inside [a, b].

    ``a`` and ``b`` are ABSOLUTE bounds, not multiples of std: with std=0.02 and the defaults
    nothing is truncated. No variance correction. Keras' ``truncated_normal`` cuts at
    mean ± 2·stddev instead.
    """
    check_real("mean", mean)
    check_strictly_positive("std", std)
    check_interval("a", a, "b", b)
    if a == b:
        raise InitlabError(f"a must be < b, got a = b = {a}")
    return TruncNormal(mean, std, a, b)


def torch_default() -> Sampler:
    """What ``nn.Linear``/``nn.ConvNd`` do themselves: ``kaiming_uniform_(a=sqrt(5))``.

    gain = sqrt(2/(1+5)) = sqrt(1/3), so W ~ U(±1/sqrt(fan_in)), variance 1/(3·fan_in) — a
    third of He's. Given module fans, ConvTranspose uses the module's fan_in, not PyTorch's
    (swapped) tensor fan_in.
    """
    return Kaiming(_gain("leaky_relu", math.sqrt(5)), "fan_in", "uniform")


def torch_default_bias() -> Sampler:
    """What ``nn.Linear``/``nn.ConvNd`` do to their bias: b ~ U(±1/sqrt(fan_in)).

    ``fan_in`` is the LAYER's (its weight's): pass ``fans=`` (e.g. ``fans_of_module(layer)``);
    without it a 1-D bias of length n would use n. Bound 0 when fan_in is 0.
    """
    return LayerBias()


class AsBuilt(Sampler):
    """Leaves the tensor as it is: the layer keeps what its constructor (or the user's
    factory) drew. :func:`initlab.initialize` also leaves such a layer's bias alone."""

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        """Nothing to do: the values are the constructor's."""


def default() -> Sampler:
    """The model exactly as its factory built it (PyTorch's own defaults for
    ``nn.Linear``/``nn.ConvNd``: W, b ~ U(±1/sqrt(fan_in)), see ``torch_default``): the
    framework's baseline, comparable like any other scheme."""
    return AsBuilt()


_KAIMING_FORMULA = "gain = calculate_gain({nonlinearity}, a={a}); "
SCHEMES = [
    Scheme(
        "xavier_normal",
        xavier_normal,
        "pytorch",
        "N(0, ({gain}·sqrt(2/(fan_in+fan_out)))²), untruncated",
        keras_equivalent="glorot_normal is TRUNCATED (same std, cut at ±2.27σ)",
    ),
    Scheme(
        "xavier_uniform",
        xavier_uniform,
        "pytorch",
        "U(±{gain}·sqrt(6/(fan_in+fan_out)))",
        keras_equivalent="glorot_uniform (gain 1) — identical law",
    ),
    Scheme(
        "kaiming_normal",
        kaiming_normal,
        "pytorch",
        _KAIMING_FORMULA + "N(0, gain²/{mode}), untruncated",
        keras_equivalent="he_normal (relu) is TRUNCATED (same std, cut at ±2.27σ)",
    ),
    Scheme(
        "kaiming_uniform",
        kaiming_uniform,
        "pytorch",
        _KAIMING_FORMULA + "U(±gain·sqrt(3/{mode}))",
        keras_equivalent="he_uniform (relu) — identical law",
    ),
    Scheme("normal", normal, "pytorch", "N({mean}, {std}²)", keras_equivalent="random_normal"),
    Scheme("uniform", uniform, "pytorch", "U[{a}, {b})", keras_equivalent="random_uniform"),
    Scheme(
        "trunc_normal",
        trunc_normal,
        "pytorch",
        "N({mean}, {std}²) redrawn until inside the absolute bounds [{a}, {b}]",
        keras_equivalent="truncated_normal cuts at mean ± 2·stddev (relative bounds)",
    ),
    Scheme(
        "default",
        default,
        "pytorch",
        "as the model's constructor left it, weights and biases "
        "(nn.Linear/ConvNd: U(±1/sqrt(fan_in)))",
        keras_equivalent="none: the Keras layer default is glorot_uniform with zero bias",
    ),
    Scheme(
        "torch_default",
        torch_default,
        "pytorch",
        "U(±1/sqrt(fan_in)) = kaiming_uniform(a=sqrt(5)), variance 1/(3·fan_in)",
        keras_equivalent="none: Keras' layer default is glorot_uniform",
    ),
    Scheme(
        "torch_default_bias",
        torch_default_bias,
        "pytorch",
        "U(±1/sqrt(fan_in)), fan_in of the layer (pass fans=)",
        keras_equivalent="none: Keras' bias default is zeros",
    ),
]
