"""Keras/JAX ``variance_scaling``: the one core behind glorot, he and lecun.

With ``n = fan_in | fan_out | (fan_in + fan_out)/2`` (by ``mode``) and
``var = scale / max(1, n)``:

- ``truncated_normal``: N(0, 1) truncated to (-2, 2), times ``sqrt(var) / 0.87962566103423978``
  so that the std *after* truncation is ``sqrt(var)``; values lie within ``±2·sqrt(var)/0.8796``.
- ``untruncated_normal`` (alias ``normal``): N(0, var).
- ``uniform``: U(-sqrt(3·var), +sqrt(3·var)).

The presets are this one function with three fixed parameters (table :data:`PRESETS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from initlab.initializers.base import Sampler, Scheme, Shape
from initlab.initializers.basic import TRUNCATED_STD, unit_truncated_normal_
from initlab.initializers.checks import check_choice, check_strictly_positive
from initlab.initializers.fans import FAN_MODES, Fans

DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "normal", "uniform")

#: preset name -> (scale, mode, distribution), as in Keras and JAX.
PRESETS: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}

_PYTORCH_EQUIVALENTS = {
    "glorot_uniform": "xavier_uniform(gain=1) — identical law",
    "glorot_normal": "xavier_normal(gain=1) is N(0, 2/(fan_in+fan_out)) UNtruncated",
    "he_uniform": "kaiming_uniform(nonlinearity='relu') — identical law",
    "he_normal": "kaiming_normal(nonlinearity='relu') is N(0, 2/fan_in) UNtruncated",
    "lecun_uniform": "kaiming_uniform(nonlinearity='linear') — identical law",
    "lecun_normal": "kaiming_normal(nonlinearity='linear') is N(0, 1/fan_in) UNtruncated",
}

_PAPERS = {
    "glorot": "Glorot & Bengio (2010)",
    "he": "He et al. (2015)",
    "lecun": "LeCun et al. (1998), Klambauer et al. (2017)",
}


@dataclass(frozen=True)
class VarianceScaling(Sampler):
    """``variance_scaling(scale, mode, distribution)`` with a resolved distribution name."""

    scale: float
    mode: str
    distribution: str

    def variance(self, fans: Fans) -> float:
        """``scale / max(1, n)``, n the fan selected by ``mode`` (Keras' ``max(1, n)``)."""
        return self.scale / max(1.0, fans.fan(self.mode))

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        variance = self.variance(fans)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / TRUNCATED_STD
            unit_truncated_normal_(tensor, generator).mul_(stddev)
        elif self.distribution == "untruncated_normal":
            tensor.normal_(0.0, math.sqrt(variance), generator=generator)
        else:
            limit = math.sqrt(3.0 * variance)
            tensor.uniform_(-limit, limit, generator=generator)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        return math.sqrt(self.variance(fans))


def variance_scaling(
    scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"
) -> Sampler:
    """Keras/JAX ``variance_scaling``: std ``sqrt(scale / max(1, n))``, n the ``mode`` fan.

    ``truncated_normal``: N(0,1) cut to (-2, 2) × sqrt(var)/0.87962566103423978 (post-truncation
    std exactly sqrt(var)); ``untruncated_normal``: N(0, var); ``uniform``: U(±sqrt(3·var)).

    ``distribution="normal"`` is accepted as an alias of ``untruncated_normal``, as in JAX.
    Keras 3 instead maps ``"normal"`` to ``truncated_normal`` (a TF1 leftover): write the full
    name to be unambiguous. ``scale`` must be > 0 (Keras); ``n`` is floored at 1 (Keras; JAX
    does not floor). Fans follow initlab's rule (tensor rule, or the module's when given).
    """
    check_strictly_positive("scale", scale)
    check_choice("mode", mode, FAN_MODES)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    resolved = "untruncated_normal" if distribution == "normal" else distribution
    return VarianceScaling(float(scale), mode, resolved)


def variance_scaling_formula(params: Mapping[str, Any]) -> str:
    """One-line formula, e.g. ``truncated normal, std sqrt(2/fan_in), cut at ±2.27 std (N(0,1)
    cut at ±2, × std/0.8796)``: the *result's* std is the target, so the cut is at
    ±2/0.8796 ≈ ±2.27 of it."""
    scale, mode = float(params["scale"]), params["mode"]
    distribution = params["distribution"]
    if mode == "fan_avg":  # scale / ((fi + fo) / 2) = 2·scale / (fi + fo)
        coefficient, denominator = 2.0 * scale, "(fan_in+fan_out)"
    else:
        coefficient, denominator = scale, mode
    variance = f"{coefficient:g}/{denominator}"
    if distribution == "truncated_normal":
        return (
            f"truncated normal, std sqrt({variance}), cut at ±2.27 std "
            "(N(0,1) cut at ±2, × std/0.8796)"
        )
    if distribution in ("untruncated_normal", "normal"):
        return f"N(0, {variance})"
    return f"U(±sqrt({3.0 * coefficient:g}/{denominator}))"


def _preset_factory(name: str) -> Callable[[], Sampler]:
    scale, mode, distribution = PRESETS[name]
    family = name.split("_")[0]

    def factory() -> Sampler:
        return variance_scaling(scale, mode, distribution)

    params = {"scale": scale, "mode": mode, "distribution": distribution}
    factory.__name__ = name
    factory.__doc__ = (
        f"{name} (Keras/JAX, {_PAPERS[family]}): "
        f"variance_scaling(scale={scale}, mode='{mode}', distribution='{distribution}'), "
        f"i.e. {variance_scaling_formula(params)}.\n\n"
        f"PyTorch: {_PYTORCH_EQUIVALENTS[name]}."
    )
    return factory


def _preset_scheme(name: str) -> Scheme:
    scale, mode, distribution = PRESETS[name]
    formula = variance_scaling_formula({"scale": scale, "mode": mode, "distribution": distribution})
    return Scheme(
        name,
        _preset_factory(name),
        "keras",
        formula,
        pytorch_equivalent=_PYTORCH_EQUIVALENTS[name],
        jax_equivalent=f"jax.nn.initializers.{name} (no max(1, n) floor)",
    )


SCHEMES = [
    Scheme(
        "variance_scaling",
        variance_scaling,
        "keras",
        variance_scaling_formula,
        jax_equivalent="jax.nn.initializers.variance_scaling (no max(1, n) floor)",
        keras_equivalent=(
            "keras.initializers.VarianceScaling, except distribution='normal': JAX's "
            "untruncated normal here, Keras 3's truncated_normal there"
        ),
        pytorch_equivalent=(
            "untruncated_normal/uniform: kaiming_* (fan_in/fan_out) or xavier_* (fan_avg) "
            "with gain² = scale; truncated_normal has no torch.nn.init equivalent"
        ),
    ),
    *(_preset_scheme(name) for name in PRESETS),
]
