"""How the output layer's weights, as a factory builds them, scale with width.

A readout whose output shrinks with width at init is muP's (variance ≤ 1/fan_in², or 0) only
if its *weights* scale so. PyTorch's default ``nn.Linear`` draws both weight and bias with
std ∝ 1/√fan_in: the weights keep SP's law and the bias's share of the output falls with
width, so the output of an SP model shrinks at small widths too. :func:`readout_weight_law`
tells the two apart for a model checked as built (``--param default``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from initlab.scaling.shapes import ParamShape, build

MUP_WEIGHT_LAW = -1.5
"""The readout weights' mean square falls as width^s with s = −1 under SP (1/fan_in) and
s ≤ −2 under muP (1/fan_in², or zero: −inf); a law at or below this midpoint is muP's."""


def readout_weight_law(
    factory: Any, widths: list[int], kwargs: Mapping[str, Any], shapes: Mapping[str, ParamShape]
) -> float | None:
    """The slope, in log width, of the mean square of the output layers' weights as
    ``factory`` builds them (seeded) at its two smallest ``widths``: about −1 for SP, −2 or
    less for muP, ``-inf`` for zero weights; ``None`` without an output-layer weight."""
    names = [n for n, s in shapes.items() if s.kind == "output" and n.endswith("weight")]
    if not names or len(widths) < 2:
        return None
    squares = []
    for width in widths[:2]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build(factory, width, kwargs, "cpu")
        weights = [model.get_parameter(n).detach().float() for n in names]
        squares.append(sum(float((w**2).sum()) for w in weights) / sum(w.numel() for w in weights))
    if min(squares) == 0:
        return -math.inf
    return math.log(squares[1] / squares[0]) / math.log(widths[1] / widths[0])
