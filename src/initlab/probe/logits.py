"""The output layer's scale when its outputs are class logits: Karpathy's "check the loss at
init" as a finding.

With the default cross-entropy (class labels or token ids as targets), logits with a small
spread give nearly uniform predictions and a first loss near ``ln K`` (K classes). Logits
with std ``s`` put a share of the mass on a few classes at random: for Gaussian logits the
expected first loss grows like ``ln K + s²/2`` while ``s`` is small and like ``s · sqrt(2 ln K)``
beyond, so at ``s = 3`` with ten classes it is about twice ``ln K``, and the first steps go
to shrinking the logits instead of learning. Healthy inits stay far below
:data:`LOGIT_STD_HIGH`: He hidden layers with He output 1.2, Glorot/LeCun/orthogonal output
layers 0.2-0.4, a GPT's untied head 0.6. A readout tied to PyTorch's N(0, 1) embedding table
gives about 10, and hidden layers that grow by 2.3× a layer (below the exploding-activations
ratio over five layers) give hundreds.
"""

from __future__ import annotations

import math

import pandas as pd

from initlab.probe.findings import Finding
from initlab.probe.residual_advice import rules_to_try

LOGIT_STD_HIGH = 3.0
"""``large_logits`` fires when the output layer's outputs have a larger std than this."""


def logit_findings(frame: pd.DataFrame) -> list[Finding]:
    """``large_logits`` when the output layer's (last row's) ``pre_std`` exceeds
    :data:`LOGIT_STD_HIGH`; for a model whose outputs are class logits (the caller knows)."""
    if frame.empty:
        return []
    out = frame.iloc[-1]
    std = float(out["pre_std"])
    if not std > LOGIT_STD_HIGH:  # NaN: nothing measured
        return []
    classes = _classes(out)
    name = str(out["layer"])
    message = (
        f"the logits ({name}) have std {std:.3g} at init (limit {LOGIT_STD_HIGH:g}): the "
        f"softmax starts far from uniform and the first loss far above it"
    )
    if classes > 1:
        message += f"; uniform predictions would start at ln {classes} = {math.log(classes):.3g}"
    suggestion = _suggestion(frame, out)
    values = {"logit_std": std, "classes": float(classes)}
    return [Finding("large_logits", (name,), values, LOGIT_STD_HIGH, message, suggestion)]


OWN_GAIN_HIGH = 2.0
"""Above this ``weight_std · sqrt(fan_in)`` (the logit std the output layer gives unit
inputs) the output layer's own init is too large; below it the inputs are."""


DATA_MSQ_HIGH = 4.0
"""The first layer's inputs are called large only when their estimated mean square
(:func:`_input_mean_square`) exceeds this (a root-mean-square of 2): standardized data is 1."""


def _suggestion(frame: pd.DataFrame, out: pd.Series) -> str:
    """What to change: the output layer's init when its own gain ``weight_std · sqrt(fan_in)``
    is above :data:`OWN_GAIN_HIGH`, else what feeds it (its inputs' mean square is the
    logits' variance over its gain²): a residual stream or hidden activations that grew
    (post-activation std doubled, or pre-activation mean square quadrupled, from the first
    hidden layer to the last), data measured large at the first layer
    (:func:`_input_mean_square` above :data:`DATA_MSQ_HIGH`), or, when no one place stands
    out, small gains at every layer (max pooling, dropout's ``1/(1-p)`` in train mode), which
    a smaller output init absorbs."""
    weight = float(out["weight_std"])
    fan_in = float(out.get("fan_in", math.nan))
    gain = weight * math.sqrt(fan_in) if fan_in == fan_in else math.nan
    hidden = frame.iloc[:-1]
    grew = len(hidden) > 0 and (
        float(hidden["post_std"].iloc[-1]) > 2 * float(hidden["post_std"].iloc[0])
        or _column(hidden, "pre_msq", -1) > 4 * _column(hidden, "pre_msq", 0)
    )
    if gain == gain and gain <= OWN_GAIN_HIGH:
        residual = "branch" in frame and frame["branch"].notna().any()
        data = _input_mean_square(frame.iloc[0])
        cause = (
            "its residual stream grows with depth: apply a residual rule ("
            f"{rules_to_try(frame, ('depth_scaled', 'zero_last_layer', 'fixup'))}; "
            "docs/residual.md)"
            if residual
            else "the hidden activations grow toward the output: fix their init first"
            if grew
            else f"the data reaching the model is large (mean square about {data:.3g} at the "
            "first layer): standardize the inputs (mean 0, std 1 per feature)"
            if data > DATA_MSQ_HIGH
            else "no one layer stands out"
            + (" (the data is of unit scale)" if data == data else "")
            + ": small gains at every layer (max pooling, dropout's 1/(1-p)) add up; a "
            "smaller output init (--output-init glorot_uniform or lecun_normal) brings the "
            "logits down"
        )
        return (
            f"the output layer's own init is not the cause (std {weight:.3g}: logits of std "
            f"{gain:.2g} for unit inputs); its inputs are too large: {cause}"
        )
    tied = str(out.get("tied_table", "") or "")
    fix = (
        f"it is {tied}.weight (tied), so give the embedding tables a smaller init: "
        "--embedding-init normal(std=0.02) (GPT-2's) or lecun_normal sets it with them"
        if tied
        else "give it a smaller init (--output-init glorot_uniform, lecun_normal, or zeros as "
        "muP's readout)"
    )
    return f"the output layer's weights (std {weight:.3g}) are too large for its inputs: {fix}" + (
        "; the hidden activations also grow toward the output: fix their init first" if grew else ""
    )


def _column(frame: pd.DataFrame, name: str, row: int) -> float:
    """``frame[name].iloc[row]`` as a float; NaN where the column is missing."""
    return float(frame[name].iloc[row]) if name in frame else math.nan


def _input_mean_square(first: pd.Series) -> float:
    """The first layer's inputs' mean square, estimated from its pre-activations: ``E[z²] ≈
    fan_in · Var(w) · E[x²] + E[b²]`` for zero-mean weights drawn independently of ``x``,
    so ``(E[z²] − bias_mean² − bias_std²) / (fan_in · Var(w))``; NaN where a quantity is
    missing, or for an embedding (its inputs are token ids: no scale to standardize)."""
    if str(first.get("type", "")).startswith("Embedding"):
        return math.nan
    fan_in = float(first.get("fan_in", math.nan))
    weight = float(first.get("weight_std", math.nan))
    pre = float(first.get("pre_msq", math.nan))
    bias = [float(first.get(k, 0.0)) for k in ("bias_mean", "bias_std")]
    bias_msq = sum(b * b for b in bias if b == b)
    if not (fan_in > 0 and weight > 0):
        return math.nan
    return max(pre - bias_msq, 0.0) / (fan_in * weight**2)


def _classes(out: pd.Series) -> int:
    """The number of classes a Linear output layer scores (its ``units``; a convolution's
    ``fan_out`` counts its kernel too); 0 when unknown."""
    units = out.get("units", math.nan)
    return int(units) if units == units and units is not None else 0
