"""How a parametrization rescales the factory's init, and the note saying so.

Each parameter's rms is set to ``target_rms = base_rms × factor`` (:mod:`~initlab.scaling.
parametrize`'s table; ``base_rms`` its rms in the model built at the base width from the same
seed). A factory already following the rule (PyTorch's weights, variance ∝ 1/fan_in) is
rescaled by sampling noise only; one that does not (every weight N(0, 0.05) at every width,
GPT-2's N(0, 0.02); PyTorch's biases of width-sized fan_in layers, ∝ 1/√fan_in) is changed,
and :func:`rescale_note` says how many parameters and to which law. A change counts when
``|log ratio| > 5 · sd``, with ``sd`` the standard deviation of the log ratio from the two rms
estimates: ``sd² = Σ (κ − 1) / (4n)`` over the parameter and its base (n entries, kurtosis κ).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from initlab.config import AS_BUILT
from initlab.errors import option
from initlab.scaling.shapes import ParamShape

NOISE_SDS = 5.0
"""How many standard deviations of sampling noise a rescale must exceed to be noted."""


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().square().mean().sqrt()) if t.numel() else 0.0


def _noise_sd(t: torch.Tensor) -> float:
    """The relative standard deviation of ``t``'s rms as an estimate from its ``n`` entries,
    ``sqrt((κ − 1) / (4n))`` with ``κ = mean(t⁴) / mean(t²)²`` (the delta method on the mean
    of squares; κ = 3 for a normal, 1.8 for a uniform)."""
    t = t.detach().double().flatten()
    square = t.square().mean()
    if not t.numel() or square == 0:
        return 0.0
    kurtosis = float(t.pow(4).mean() / square**2)
    return math.sqrt(max(kurtosis - 1, 0.0) / (4 * t.numel()))


def rescale_ratios(
    model: nn.Module, base: nn.Module, factors: Mapping[str, float | None]
) -> dict[str, float]:
    """``target_rms / current_rms`` of every parameter the rule rescales (``target_rms = base
    rms × factor``; a factor of ``None`` leaves it, 0 zeroes it, a zero-rms one stays)."""
    base_params = dict(base.named_parameters())
    ratios = {}
    for name, p in model.named_parameters():
        factor, current = factors.get(name, 1.0), _rms(p)
        target = None if factor is None else _rms(base_params[name]) * factor
        if factor == 0.0 or (target and current > 0):
            ratios[name] = 0.0 if factor == 0.0 else target / current
    return ratios


@torch.no_grad()
def rescale(model: nn.Module, ratios: Mapping[str, float]) -> None:
    """Multiply each parameter by its ratio (:func:`rescale_ratios`)."""
    for name, p in model.named_parameters():
        if name not in ratios:
            continue
        if ratios[name]:
            p.mul_(ratios[name])
        else:
            p.zero_()


def changed_beyond_noise(
    model: nn.Module, base: nn.Module, ratios: Mapping[str, float]
) -> dict[str, float]:
    """The ratios (not 0: zeroing is muP's readout rule) that move a parameter's rms by more
    than :data:`NOISE_SDS` standard deviations of the sampling noise of the two rms estimates
    (:func:`_noise_sd` of the parameter and of its base): a factory already following the
    rule (PyTorch's 1/fan_in weights) is rescaled by noise only and not listed."""
    params, base_params = dict(model.named_parameters()), dict(base.named_parameters())
    out = {}
    for name, ratio in ratios.items():
        sd = math.hypot(_noise_sd(params[name]), _noise_sd(base_params[name]))
        if ratio > 0 and abs(math.log(ratio)) > NOISE_SDS * sd + 1e-6:
            out[name] = ratio
    return out


LAWS = {
    "hidden": "hidden weights: variance ∝ 1/fan_in",
    "output": "output weights: variance ∝ 1/fan_in",
    "input": "input weights and biases: their size at the base width",
    "vector": "vectors: their size at the base width",
    "fixed": "fixed-size parameters: their size at the base width",
}
MUP_OUTPUT_LAW = "output weights not zeroed: variance ∝ 1/fan_in² (muP)"


def law(kind: str, param: str) -> str:
    """The words for the rule a parameter of ``kind`` was brought to under ``param``."""
    return MUP_OUTPUT_LAW if (kind, param) == ("output", "mup") else LAWS[kind]


def rescale_note(
    changed: Mapping[str, float],
    shapes: Mapping[str, ParamShape],
    param: str,
    widths: tuple[int, int],
) -> list[str]:
    """One line when the rule changed the factory's init beyond sampling noise: how many
    parameters, the laws they were brought to, the first few with their factor; ``widths``:
    the model's width and the base width."""
    if not changed:
        return []
    kinds = dict.fromkeys(shapes[n].kind for n in changed)
    laws = "; ".join(law(k, param) for k in kinds)
    shown = ", ".join(f"`{n}` ×{r:.3g}" for n, r in list(changed.items())[:4])
    more = f", … {len(changed) - 4} more" if len(changed) > 4 else ""
    return [
        f"{option(f'--param {param}')} rescaled the factory's init of {len(changed)} of "
        f"{len(shapes)} parameter(s) at width {widths[0]} beyond sampling noise, to its law "
        f"normalized at width {widths[1]} ({laws}): {shown}{more}; "
        f"{option(f'--param {AS_BUILT}')} checks the model as built"
    ]
