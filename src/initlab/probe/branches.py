"""Residual branches in the probe's frame: each layer's place in them (:func:`with_branches`)
and the branches that start at a saddle (the ``dormant_branches`` finding).

A branch ``f(x) = W_m φ(… φ(W_1 x))`` whose every layer is small adds almost nothing to the
stream, and, worse, each of its layers gets a gradient scaled by the product of the others'
weights: with per-layer gain ``g_j = std(W_j) · sqrt(fan_in_j)``, ``dL/dW_j`` is of order
``Π_{i≠j} g_i``. All ``g_j ≪ 1`` is the small-init saddle of Saxe et al. (2014): learning
starts after a plateau whose length grows like ``log(1/g)``, and the stream skips the
branches meanwhile (a pre-norm transformer at std 0.001 reached 0.20 accuracy where its
default init reached 0.80 after 150 Adam steps). The rules that switch a branch off on
purpose keep their inner layers at full scale — a zeroed last layer (Fixup, SkipInit,
``zero_last_layer``), a layer-scale ``γ = 1e-6`` (ConvNeXt), a zero gate — so their
branches learn at once, and none of them fires this finding.

The frame's rows carry each layer's ``branch`` (k), ``branch_layer`` (j) and ``branch_size``
(m); a branch with fewer than two rows (an ``nn.MultiheadAttention`` shows only its
``out_proj``) cannot be at a product saddle and is left out.
"""

from __future__ import annotations

import math

import pandas as pd
from torch import Tensor, nn

from initlab.probe.findings import Finding
from initlab.probe.residual_advice import DEAD, rules_to_try

DORMANT_GAIN = 1 / 30
"""A layer is small when ``std(W) · sqrt(fan_in)`` is below this: a thirtieth of a unit-gain
(LeCun) layer, the factor the depth-ratio findings use. GPT-2's N(0, 0.02) is 0.16 at width
64 and 0.55 at 768; N(0, 0.001) at width 64 is 0.008."""


def dormant_findings(frame: pd.DataFrame) -> list[Finding]:
    """``dormant_branches`` when at least half of the model's multi-layer residual branches
    have every layer below :data:`DORMANT_GAIN` (module docstring)."""
    if "branch" not in frame:
        return []
    rows = frame[frame["branch"].notna()].assign(
        gain=lambda f: f["weight_std"].astype(float) * f["fan_in"].astype(float) ** 0.5
    )
    branches = [group for _, group in rows.groupby("branch", sort=True) if len(group) >= 2]
    dormant = [g for g in branches if (g["gain"] < DORMANT_GAIN).all()]
    if not branches or 2 * len(dormant) < len(branches):
        return []
    largest = max(float(g["gain"].max()) for g in dormant)
    example = dormant[0].loc[dormant[0]["gain"].idxmax()]
    message = (
        f"{len(dormant)} of {len(branches)} residual branches start at a saddle: every layer "
        f"of each has gain std·sqrt(fan_in) below {DORMANT_GAIN:.3g} (at most {largest:.3g}; "
        f"{example['layer']}: std {float(example['weight_std']):.3g}, fan-in "
        f"{int(example['fan_in'])}), so each layer's gradient is scaled by the others' "
        "smallness and the stream skips the branches"
    )
    rules = rules_to_try(frame, ("zero_last_layer", "skipinit", "fixup"))
    suggestion = (
        "give the branches' inner layers a fan-in scale (lecun_normal, xavier_uniform, or "
        "GPT-2's normal(std=0.02)) and make only each branch's last layer small or zero if "
        f"the branches should start off ({rules})"
    )
    layers = tuple(str(g["layer"].iloc[0]) for g in dormant)
    values = {"dormant": float(len(dormant)), "branches": float(len(branches))}
    values["largest_gain"] = largest if math.isfinite(largest) else math.nan
    return [Finding("dormant_branches", layers, values, DORMANT_GAIN, message, suggestion)]


def with_branches(frame: pd.DataFrame, model: nn.Module, inputs: Tensor) -> pd.DataFrame:
    """``frame`` with each layer's place in the model's residual structure
    (:func:`initlab.residual.find_structure`): ``branch`` (k, 0-based; NaN outside every
    branch), ``branch_layer`` (j, 0-based) and ``branch_size`` (m), which the findings use
    to compare like with like in residual networks (:mod:`initlab.probe.findings`), and
    ``branch_dead_if_zeroed``: the ReLU that a zeroed last layer of the branch would feed 0
    (:mod:`initlab.probe.residual_advice`), NaN elsewhere."""
    from initlab.residual import find_structure

    place = {
        layer: (b.index, j, len(b.layers), b.dead_if_zeroed.get(b.layers[-1]))
        for b in find_structure(model, inputs).branches
        for j, layer in enumerate(b.layers)
    }
    nan = (math.nan, math.nan, math.nan, None)
    columns = list(zip(*(place.get(name, nan) for name in frame["layer"]), strict=True))
    names = ("branch", "branch_layer", "branch_size", DEAD)
    return frame.assign(**dict(zip(names, columns or ([], [], [], []), strict=True)))
