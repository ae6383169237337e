"""The mean-field prediction of each layer's pre-activation second moment, where it applies.

For a chain of Linear layers ``z_l = W_l phi(z_{l-1}) + b_l`` (an MLP without normalization,
residual connections or active dropout) with known activations, mean-field theory predicts
``q_l = E[z_l²]`` layer by layer with the layer's *actual* weight and bias scales::

    sigma_w²(l) = fan_in · mean(W_l²),   sigma_b²(l) = mean(b_l²)
    q_1 = sigma_w²(1) · mean(x²) + sigma_b²(1)                   (raw input x)
    q_l = sigma_w²(l) · E_z[phi(sqrt(q_{l-1}) z)²] + sigma_b²(l)   (the length map)

computed with :func:`initlab.theory.meanfield.predicted_variances` one layer at a time. It is
compared with the measured ``pre_msq = mean(z²)``. Elsewhere the prediction is NaN.

:func:`theory_note` is what the suggestions (:mod:`initlab.probe.suggestions`) quote of
mean-field theory at a group of layers' measured ``sigma_w²``: phase, chi1, the gradients'
factor ``sqrt(chi1)`` per layer and ``chi1**((L-1)/2)`` over ``L`` layers, and the trainable
depth ``6 / |ln chi1|``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.probe.hooks import LayerTensors
from initlab.theory.meanfield import Edge, edge_of_chaos, predicted_variances
from initlab.theory.scales import (
    TRAINABLE_DEPTH_FACTOR,
    analyze,
    gradient_factor,
    gradient_scale,
)


def applicable(layers: list[LayerTensors]) -> bool:
    """True for a plain chain of Linear layers with known activations between them, whose
    weights and biases have mean 0 (:func:`zero_mean`): the theory's units are i.i.d. with
    zero-mean weights and biases, so that z is Gaussian around 0. A constant init
    (``constant(0.01)``) or a bias of −10 on every unit breaks that: its q was 200 where z²
    measured 100, and 1.7e-7 where it measured 1.0."""
    if not layers or layers[0].input is None:
        return False
    for k, layer in enumerate(layers):
        if not isinstance(layer.module, nn.Linear) or layer.normalized or layer.inside:
            return False
        if not zero_mean(layer.weight) or not zero_mean(layer.bias):
            return False
        if k + 1 < len(layers):
            nxt = layers[k + 1].input
            if layer.activation is None or layer.post is None or nxt is None:
                return False
            if nxt.shape != layer.post.shape or not torch.equal(nxt, layer.post):
                return False
    return True


MEAN_SIGMAS = 4.0
"""How many standard errors from 0 the mean of a zero-mean init's ``n`` entries may lie."""


def zero_mean(values: torch.Tensor | None) -> bool:
    """Whether the entries of ``values`` could be zero-mean draws: ``|mean| <=
    MEAN_SIGMAS · sqrt(mean(v²) / n)`` (the sample mean's standard error, bounded by the
    root mean square), and a constant only when it is 0; True for ``None`` or one entry."""
    if values is None or values.numel() < 2:
        return True
    v = values.detach().double()
    if bool((v == v.flatten()[0]).all()):  # constant: zero-mean only if 0 (16 units or fewer
        return float(v.flatten()[0]) == 0.0  # pass the bound below whatever the constant)
    return abs(float(v.mean())) <= MEAN_SIGMAS * math.sqrt(float(v.square().mean()) / v.numel())


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


def theory_note(
    act: str,
    sw2: float,
    sb2: float,
    *,
    weights: int = 0,
    layers: int = 0,
    direction: str | None = None,
) -> str:
    """What mean field says of ``layers`` layers of ``act`` at ``(sw2, sb2)``, for a suggestion.

    The phase and chi1 (:func:`initlab.theory.analyze`), the gradients' factor per layer in
    std, ``sqrt(chi1)``, and from the last of the layers to the first, ``chi1**((layers-1)/2)``
    (what a finding's ``dL/dz std first/last hidden`` measures), and the trainable depth
    ``6 xi_grad = 6 / |ln chi1|``: the depth over which the gradients' mean square changes
    e^6-fold (their std e^3 ≈ 20-fold, inside the gradient findings' limits of 30). That one
    convention holds for every activation and phase (:mod:`initlab.theory.scales`); in the
    chaotic phase Schoenholz's longer ``6 xi_c`` is quoted beside it, as the inputs'
    correlations'. The depth is only compared with ``layers`` when it is shorter, or when
    ``direction`` (the finding's, ``"vanishing"``/``"exploding"``) says the measurement goes
    beyond the prediction: the note never calls a depth fine that a finding flags.

    ``sigma_w²`` measured on ``weights`` sampled weights has a relative standard error
    ``sqrt(2 / weights)``; within three of them of the edge of chaos it is the edge (a He
    init measured at 2.003 is not "exploding with trainable depth 8240")."""
    try:
        mf = analyze(act, sw2, sb2)
        edge = edge_of_chaos(act, sb2)
    except (InitlabError, ValueError, ArithmeticError):
        return f"sigma_w² = {sw2:.3g}"
    where = _edge_text(edge)
    crit = edge.sigma_w2
    if weights and 0 < crit < math.inf and abs(sw2 / crit - 1) <= 3 * math.sqrt(2 / weights):
        if edge.jump:
            return (
                f"mean field: sigma_w² = {sw2:.3g} is at the jump ({crit:.3g}) within sampling "
                f"noise, so the gradients may vanish or explode ({where})"
            )
        return (
            f"mean field: sigma_w² = {sw2:.3g} is the edge of chaos ({crit:.3g}) within "
            "sampling noise (chi1 = 1: the scale itself neither grows nor shrinks with depth)"
            + _beyond(direction, "keep their scale")
        )
    head = f"mean field: sigma_w² = {sw2:.3g} is {mf['phase']} (chi1 = {mf['chi1']:.3g})"
    if mf["phase"] == "critical":
        body = "the gradients keep their scale with depth; trainable depth unbounded"
        return f"{head}: {body}{_beyond(direction, 'keep their scale')}; {where}"
    return f"{head}: {_gradient_text(mf, layers, direction)}; {where}"


def _gradient_text(mf: dict, layers: int, direction: str | None) -> str:
    """The gradients' factors and the trainable depth ``6 / |ln chi1|`` (:func:`theory_note`)."""
    x1 = float(mf["chi1"])
    way = "grow" if x1 > 1 else "shrink"
    depth = TRAINABLE_DEPTH_FACTOR * gradient_scale(x1)
    text = f"back-propagated gradients {way} ×{math.sqrt(x1):.3g} per layer in std"
    if layers > 1:
        factor = gradient_factor(x1, layers - 1)
        text += f", ×{factor:.3g} from the last of these {layers} layers to the first"
    text += (
        f"; trainable depth ≈ {depth:.3g} layers (6/|ln chi1|: their mean square changes e^6-fold)"
    )
    if layers and depth < layers:
        text += f", fewer than these {layers}"
    if mf["phase"] == "chaotic" and mf["max_trainable_depth"] > depth:
        text += (
            f" (the inputs' correlations last longer, 6·xi_c ≈ "
            f"{mf['max_trainable_depth']:.3g} layers: the gradients explode first)"
        )
    if layers and depth >= layers:
        return text + _beyond(direction, way)
    return text


_FINDING_WAY = {"vanishing": "shrink", "exploding": "grow"}


def _beyond(direction: str | None, way: str) -> str:
    """A finding ``direction`` (``"vanishing"``/``"exploding"``) where mean field predicts
    ``way`` (``"grow"``/``"shrink"``/``"keep their scale"``) but not enough of it: the
    measurement goes beyond the prediction, and the note says so."""
    if direction not in _FINDING_WAY:
        return ""
    if _FINDING_WAY[direction] == way:
        return (
            f"; the measurement {way}s more than that: trust it (mean field assumes infinitely "
            "wide, plain layers)"
        )
    return (
        f"; mean field predicts that the gradients {way}, yet this finding is {direction}: "
        "trust the measurement (mean field assumes infinitely wide, plain layers)"
    )


def _edge_text(edge: Edge) -> str:
    """Where the edge of chaos is, or that chi1 jumps across 1 instead (gelu, silu)."""
    if not math.isfinite(edge.sigma_w2):
        return "no edge of chaos up to sigma_w² = 1e4"
    if edge.jump:
        return (
            f"no sigma_w² gives chi1 = 1: chi1 jumps from {edge.chi1_below:.3g} to "
            f"{edge.chi1_above:.3g} at sigma_w² = {edge.sigma_w2:.3g}"
        )
    return f"edge of chaos at sigma_w² = {edge.sigma_w2:.3g}"
