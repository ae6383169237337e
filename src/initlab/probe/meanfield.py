"""The mean-field prediction of each layer's pre-activation second moment, where it applies.

For a chain of Linear layers ``z_l = W_l phi(z_{l-1}) + b_l`` (an MLP without normalization,
residual connections or active dropout) with known activations, mean-field theory predicts
``q_l = E[z_l²]`` layer by layer with the layer's *actual* weight and bias scales::

    sigma_w²(l) = fan_in · mean(W_l²),   sigma_b²(l) = mean(b_l²)
    q_1 = sigma_w²(1) · mean(x²) + sigma_b²(1)                   (raw input x)
    q_l = sigma_w²(l) · E_z[phi(sqrt(q_{l-1}) z)²] + sigma_b²(l)   (the length map)

computed with :func:`initlab.theory.meanfield.predicted_variances` one layer at a time. It is
compared with the measured ``pre_msq = mean(z²)``. Elsewhere the prediction is NaN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab.probe.hooks import LayerTensors
from initlab.theory.meanfield import predicted_variances


def applicable(layers: list[LayerTensors]) -> bool:
    """True for a plain chain of Linear layers with known activations between them."""
    if not layers or layers[0].input is None:
        return False
    for k, layer in enumerate(layers):
        if not isinstance(layer.module, nn.Linear) or layer.normalized or layer.inside:
            return False
        if k + 1 < len(layers):
            nxt = layers[k + 1].input
            if layer.activation is None or layer.post is None or nxt is None:
                return False
            if nxt.shape != layer.post.shape or not torch.equal(nxt, layer.post):
                return False
    return True


def predicted_q(layers: list[LayerTensors]) -> list[float]:
    """Mean-field ``q_l`` for every layer (all NaN where :func:`applicable` is False)."""
    if not applicable(layers):
        return [math.nan] * len(layers)
    first = layers[0].input
    q = float(first.detach().double().square().mean())
    out = []
    for k, layer in enumerate(layers):
        weight = layer.module.weight.detach().double()
        sw2 = float(weight.shape[1] * weight.square().mean())
        bias = layer.bias
        sb2 = 0.0 if bias is None else float(bias.double().square().mean())
        act = layers[k - 1].activation if k else "linear"
        if not (math.isfinite(q) and math.isfinite(sw2)):
            out.append(math.nan)
            continue
        q = float(predicted_variances(act, sw2, sb2, depth=1, q0=q, raw_input=k == 0)[0])
        out.append(q)
    return out
