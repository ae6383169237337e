"""What mean field warns of in a network no finding flags: cautions, not findings.

The findings measure one batch against fixed limits (a 30-fold change of scale over the
layers). Mean field can see trouble the measurement does not yet cross: 60 tanh layers at
He's scale (sigma_w² = 2, chaotic: chi1 = 1.106) measured a gradient ratio of 24, inside the
limit of 30, and were called healthy with nothing more, while their trainable depth
(``6 / |ln chi1|`` = 59.8 layers) is below their number; 30 gelu layers at the gain rule stay
within the limits for some seeds although their variance sits on a repelling fixed point
(:func:`initlab.theory.scales.unstable_fixed_point`). A caution is the scale advice of
:mod:`initlab.probe.suggestions` for such layers, said where mean field applies (a plain
chain of Linear layers: the frame's ``q_pred`` is set) and no scale finding fired.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from initlab.data.scale import RMS_LIMIT, input_scale
from initlab.probe.findings import Finding
from initlab.probe.suggestions import drifts, measured_scale, scale_advice, trainable_depth

SCALE_FINDINGS = frozenset(
    {"vanishing_activations", "exploding_activations", "vanishing_gradients",
     "exploding_gradients", "saturation", "dead_units"}
)  # fmt: skip
"""Findings whose suggestion already carries mean field's advice on the layers' scale
(:func:`~initlab.probe.suggestions.scale_advice`): no caution repeats it."""


def theory_cautions(frame: pd.DataFrame, findings: list[Finding]) -> list[str]:
    """One line per activation whose hidden layers mean field calls too deep for their scale
    (trainable depth below their number) or drifting (a repelling fixed point), in a plain
    chain that no scale finding flagged; empty otherwise."""
    if {f.name for f in findings} & SCALE_FINDINGS or "q_pred" not in frame:
        return []
    if frame.empty or frame["q_pred"].isna().any():  # mean field does not apply
        return []
    hidden = frame.iloc[:-1]
    hidden = hidden[hidden["activation"].notna() & ~hidden["normalized"].astype(bool)]
    lines = []
    for act, group in hidden.groupby("activation", sort=False):
        layers = len(group)
        sw2, sb2 = measured_scale(group)
        if not (math.isfinite(sw2) and sw2 > 0):
            continue
        short = trainable_depth(str(act), sw2, sb2) < layers
        if short or drifts(str(act), math.sqrt(sw2), sb2, layers):
            lines.append(
                "mean field, though no measured limit was crossed on this batch: "
                + scale_advice(frame, group)
            )
    return lines


def input_scale_cautions(inputs: object) -> list[str]:
    """One line when the batch's float ``inputs`` are far from unit scale: a
    root-mean-square outside [1/:data:`~initlab.data.scale.RMS_LIMIT`, RMS_LIMIT], the rule
    loading notes data by (:mod:`initlab.data.scale`). Every finding compares layers with
    each other, so inputs 10⁴ too large pass through a ReLU net of unchanged ratios as
    "healthy" at activations of std 14,500, and every init compared on them inherits the
    scale. Token ids, several input tensors and empty batches get none."""
    if not (isinstance(inputs, torch.Tensor) and inputs.is_floating_point() and inputs.numel()):
        return []
    rms = input_scale(inputs.detach().float())[4]
    if math.isfinite(rms) and 1 / RMS_LIMIT <= rms <= RMS_LIMIT:
        return []
    return [
        f"the inputs are far from unit scale (root-mean-square {rms:.3g} over this batch): "
        "every init here starts from that scale; standardize them (mean 0, std 1 per "
        "feature) before comparing inits"
    ]
