"""The activation functions initlab knows, by name.

One registry serves the model builders (a module per layer), the gains
(:func:`initlab.gain`), the mean-field theory (the function itself) and the probe
(saturation thresholds). Names follow PyTorch's ``calculate_gain`` where it has them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.errors import InitlabError, UnknownNameError

LEAKY_RELU_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity ``phi``.

    ``fn`` computes phi on a tensor; ``module`` builds the equivalent ``nn.Module``;
    ``pytorch_gain`` is ``torch.nn.init.calculate_gain``'s value where PyTorch defines one
    (``None`` otherwise, and :func:`initlab.gain` computes it numerically);
    ``saturation`` is the documented test for a saturated unit (``None``: cannot saturate).
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    module: Callable[[], nn.Module]
    pytorch_gain: float | None
    saturation: Callable[[Tensor], Tensor] | None = None
    saturation_rule: str = ""
    description: str = ""


def _tanh_saturated(x: Tensor) -> Tensor:
    return x.abs() > 0.99


def _sigmoid_saturated(x: Tensor) -> Tensor:
    return (x < 0.01) | (x > 0.99)


def _softsign_saturated(x: Tensor) -> Tensor:
    return x.abs() > 0.9


_ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("linear", lambda x: x, nn.Identity, 1.0, description="phi(x) = x"),
        Activation("relu", F.relu, nn.ReLU, 2.0**0.5, description="max(0, x)"),
        Activation(
            "leaky_relu",
            lambda x: F.leaky_relu(x, LEAKY_RELU_SLOPE),
            lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
            (2.0 / (1 + LEAKY_RELU_SLOPE**2)) ** 0.5,
            description=f"max({LEAKY_RELU_SLOPE} x, x)",
        ),
        Activation(
            "tanh", torch.tanh, nn.Tanh, 5.0 / 3, _tanh_saturated, "|phi| > 0.99", "tanh(x)"
        ),
        Activation(
            "sigmoid",
            torch.sigmoid,
            nn.Sigmoid,
            1.0,
            _sigmoid_saturated,
            "phi < 0.01 or phi > 0.99",
            "1 / (1 + exp(-x))",
        ),
        Activation("selu", F.selu, nn.SELU, 0.75, description="scale * elu(x, alpha) (SNN)"),
        Activation("elu", F.elu, nn.ELU, None, description="x if x > 0 else exp(x) - 1"),
        Activation("gelu", F.gelu, nn.GELU, None, description="x * Phi(x) (exact erf form)"),
        Activation("silu", F.silu, nn.SiLU, None, description="x * sigmoid(x) (swish)"),
        Activation(
            "softsign",
            F.softsign,
            nn.Softsign,
            None,
            _softsign_saturated,
            "|phi| > 0.9",
            "x / (1 + |x|)",
        ),
        Activation("softplus", F.softplus, nn.Softplus, None, description="log(1 + exp(x))"),
    ]
}

_ALIASES = {"identity": "linear", "swish": "silu", "none": "linear"}


def names() -> list[str]:
    """All activation names, in registry order."""
    return list(_ACTIVATIONS)


def get(name: str) -> Activation:
    """The activation called ``name`` (aliases: identity, none → linear; swish → silu)."""
    key = str(name).lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _ACTIVATIONS:
        raise UnknownNameError("activation", name, _ACTIVATIONS)
    return _ACTIVATIONS[key]


def infer_activation(pre: Tensor, post: Tensor) -> str | None:
    """The registry activation phi with ``phi(pre) ≈ post``, when exactly one fits.

    "≈": ``|phi(pre) - post| <= 1e-4 |post| + atol`` elementwise, ``atol = 50 · eps(dtype)
    · max(1, max|post|)`` (rounding of an elementwise function, whatever kernel computed
    it). Several fitting (all-zero or all-positive inputs fit relu, leaky_relu and linear
    alike) is no answer: ``None``.
    """
    if pre.shape != post.shape or not pre.is_floating_point():
        return None
    scale = float(post.detach().abs().nan_to_num(0.0, 0.0, 0.0).max()) if post.numel() else 0.0
    atol = 50 * torch.finfo(post.dtype).eps * max(1.0, scale)
    fits = [
        name
        for name in [*(n for n in names() if n != "linear"), "linear"]  # linear last
        if torch.allclose(get(name).fn(pre), post, 1e-4, atol, equal_nan=True)
    ]
    return fits[0] if len(fits) == 1 else None


@functools.lru_cache(maxsize=64)
def dies_at_zero(name: str | None) -> bool:
    """Whether a unit whose activation is 0 for every input gets no gradient: phi'(0) = 0
    (ReLU, by PyTorch's derivative at 0: a dead unit). A tanh or linear unit at 0 (zero
    weights) passes dL/dphi on unchanged: not dead, its zero weights block the gradient
    instead. Names the registry does not know ("unknown", ``None``) count as dying."""
    if not isinstance(name, str):
        return True
    try:
        phi = get(name).fn
    except InitlabError:
        return True
    with torch.inference_mode(False), torch.enable_grad():  # also under no_grad (cached)
        zero = torch.zeros((), requires_grad=True)
        (slope,) = torch.autograd.grad(phi(zero), zero)
    return float(slope) == 0.0
