"""Suggestions derived from the gain and mean-field theory, never from a table of cases.

For a hidden layer with fan-in ``n`` followed by activation phi, the rule prescribes the
weight std ``g / sqrt(n)`` with ``g = prescribed_gain(phi, sigma_b²)``: :func:`initlab.gain`,
except for tanh (and linear), whose ``g`` is the critical gain, the edge of chaos
``sqrt(critical_sigma_w2(phi, sigma_b²))`` (1 at zero biases, not PyTorch's 5/3, which is
chaotic at depth), as the doctor plans it; the advice names it so ("the critical gain for
tanh ... (its edge of chaos), not initlab.gain('tanh')"), never ``gain(tanh)``. A suggestion
compares the layer's weight std with the prescription (``ratio = actual / prescribed``),
quotes mean field at the layers' *actual* ``sigma_w² = n · mean(W²)``
(:func:`~initlab.probe.meanfield.theory_note`: phase, chi1, the gradients' factor
``sqrt(chi1)`` per layer and ``chi1**((L-1)/2)`` over the ``L`` layers concerned, and the
trainable depth) and names the registry schemes whose std
(:meth:`initlab.initializers.Initializer.std` at the layer's fans) is closest to the
prescription in log scale, over the layers concerned: the best ``fan_in`` scheme
(LeCun/He/Kaiming family) and the best ``fan_avg`` scheme (Glorot/Xavier family). For ReLU
that is ``he_normal``; for tanh and sigmoid ``lecun_normal`` or ``glorot_normal``.

**Trainable depth**, one convention for every activation and phase: ``6 xi_grad = 6 / |ln
chi1|``, the depth over which the back-propagated gradients' mean square changes e^6-fold (std
e^3 ≈ 20-fold, inside the gradient findings' limit of 30, so a net whose predicted factor
crosses that limit is always deeper than its trainable depth). It equals Schoenholz et al.'s
``6 xi_c`` in the ordered phase and ``analyze(...)["max_trainable_depth"]`` where ``q*`` is 0
or inf; in the chaotic phase with finite ``q*`` the longer ``6 xi_c`` (the inputs'
correlations) is quoted beside it (:mod:`initlab.theory.scales`, docs/theory.md).

Where even the prescription's trainable depth is below the layers' number (sigmoid: 2.08
layers at sigma_w² = 1), the schemes are named as the best scale only, beside normalization,
fewer layers or another activation, whatever the layers' own scale. A gain-rule scheme is not
suggested against the finding (vanishing gradients in sigmoid layers already above the rule:
the activation is the limit). Constant weights are named as the cause first. Dead units whose
pre-activations sit below zero because of the biases get "zero biases"; identical units get
"a random scheme".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

import initlab.initializers as initializers
from initlab.errors import InitlabError, option
from initlab.initializers import Fans
from initlab.probe.meanfield import theory_note
from initlab.probe.residual_advice import residual_advice
from initlab.theory import gain, prescribed_gain, pytorch_gain, xi_grad
from initlab.theory.gains import EDGE_OF_CHAOS
from initlab.theory.scales import TRAINABLE_DEPTH_FACTOR, unstable_fixed_point

SCALE_TOLERANCE = 1.25
"""A weight std within this factor of ``gain / sqrt(fan_in)`` follows the gain rule."""
BIAS_DEAD_SIGMAS = 1.0
"""Dead units are blamed on the biases when ``bias_mean < 0`` and ``pre_mean < -1 · pre_std``."""
_KAIMING_NAMES = ("linear", "sigmoid", "tanh", "relu", "selu")


def candidates(activation: str, sigma_b2: float = 0.0) -> dict[str, list[str]]:
    """Registry specs to choose from, by family; the gain enters as a parameter, not a table
    (:func:`~initlab.theory.prescribed_gain` at the biases' variance ``sigma_b2``)."""
    g = prescribed_gain(activation, sigma_b2)
    if g == gain(activation) and activation in _KAIMING_NAMES and pytorch_gain(activation):
        exact = f"kaiming_normal(nonlinearity='{activation}')"
    else:
        exact = (
            f"variance_scaling(scale={g * g:.4g}, mode='fan_in', distribution='truncated_normal')"
        )
    return {
        "fan_in": ["he_normal", "lecun_normal", exact],
        "fan_avg": ["glorot_normal", f"xavier_normal(gain={g:.4g})"],
    }


def best_schemes(
    activation: str, fans: Sequence[tuple[int, int]], sigma_b2: float = 0.0
) -> dict[str, str]:
    """Per family, the candidate whose std is closest to ``gain / sqrt(fan_in)`` over ``fans``
    (sum of squared log errors; ties go to the first listed), ``gain`` prescribed at the
    biases' variance ``sigma_b2``."""
    target = prescribed_gain(activation, sigma_b2)
    best: dict[str, str] = {}
    for family, specs in candidates(activation, sigma_b2).items():
        errors = []
        for spec in specs:
            try:
                init = initializers.parse(spec)
                stds = [init.std(Fans(fi, fo)) for fi, fo in fans]
            except InitlabError:
                continue
            if not all(s and s > 0 for s in stds):
                continue
            ratios = [s * math.sqrt(fi) / target for s, (fi, _) in zip(stds, fans, strict=True)]
            err = sum(math.log(r) ** 2 for r in ratios)
            errors.append((round(err, 9), spec))
        if errors:
            best[family] = min(errors, key=lambda e: e[0])[1]
    return best


def _rows(frame: pd.DataFrame, layers: Sequence[str]) -> pd.DataFrame:
    return frame[frame["layer"].isin(list(layers))]


def _span(frame: pd.DataFrame, layers: Sequence[str]) -> pd.DataFrame:
    """Hidden rows from the first to the last of ``layers`` (ratio findings name two ends)."""
    hidden = frame.iloc[:-1]
    idx = hidden.index[hidden["layer"].isin(list(layers))]
    return hidden.loc[idx.min() : idx.max()] if len(idx) else hidden.iloc[0:0]


def scale_advice(frame: pd.DataFrame, rows: pd.DataFrame, direction: str | None = None) -> str:
    """Compare the weight std of ``rows`` with the gain rule; name the matching schemes.

    ``direction`` (``"vanishing"``/``"exploding"``, the finding's) guards the advice: a
    gain-rule scheme smaller than the weights a vanishing signal already has (sigmoid at He's
    scale: its derivative is at most 1/4) would make it worse, so the activation is named as
    the limit instead. Constant (zero) weights are the cause whatever else holds, even behind
    a normalization."""
    constant = _constant_weight_rows(rows)
    if len(constant):
        more = f" and {len(constant) - 1} more" if len(constant) > 1 else ""
        return (
            f"the weights of {constant['layer'].iloc[0]}{more} are constant (weight std 0): "
            "the init is the cause; break the symmetry with a random scheme"
        )
    parts = []
    if rows["normalized"].all() and len(rows):
        return (
            "these layers are normalized (BatchNorm/LayerNorm), which makes them invariant to "
            "the weight scale: the init is not the cause; deep plain normalized nets need "
            "skip connections (Yang et al. 2019) or less depth"
        )
    unknown = _untraced(rows)
    rows = rows.assign(activation=rows["activation"].fillna("linear"))
    for act, group in rows[~rows["normalized"]].groupby("activation", sort=False):
        parts.append(_activation_advice(str(act), group, direction))
    if len(unknown):
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        parts.append(
            f"no activation was traced after {unknown['layer'].iloc[0]}{more}: taken as "
            "linear (gain 1); if one follows, use weight std gain(phi)/sqrt(fan_in) with "
            "initlab.gain(phi)"
        )
    return "; ".join(p for p in parts if p)


def _untraced(rows: pd.DataFrame) -> pd.DataFrame:
    """The unnormalized rows with no activation traced after them, except a residual
    branch's last layer: its output is added to the stream as it is (a transformer's
    ``out_proj`` and ``fc2``), so linear is known, not assumed."""
    untraced = rows["activation"].isna() & ~rows["normalized"]
    if "branch" in rows:
        untraced &= ~(rows["branch_layer"] == rows["branch_size"] - 1)
    return rows[untraced]


def _constant_weight_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose weights are all equal, except a residual branch's last layer (zeroed on
    purpose by SkipInit/Fixup-style rules)."""
    constant = rows["weight_std"].fillna(1).eq(0)
    if "branch" in rows:
        constant &= ~(rows["branch_layer"] == rows["branch_size"] - 1)
    return rows[constant]


def _activation_advice(act: str, group: pd.DataFrame, direction: str | None = None) -> str:
    """The advice for one activation's layers: their weight std against ``g / sqrt(fan_in)``
    (``ratio``), mean field at their ``sigma_w²`` (:func:`~initlab.probe.meanfield.theory_note`)
    and the schemes to use, told when even the prescription cannot train this many layers
    (:func:`_short_of_depth`)."""
    sw2, sb2 = measured_scale(group)
    try:
        g = prescribed_gain(act, sb2)
    except InitlabError:
        return ""
    fans = [(int(fi), int(fo)) for fi, fo in zip(group["fan_in"], group["fan_out"], strict=True)]
    prescribed = [g / math.sqrt(fi) for fi, _ in fans]
    ratios = [w / p for w, p in zip(group["weight_std"], prescribed, strict=True)]
    r = float(pd.Series(ratios).median())
    units = group["units"] if "units" in group else group["fan_out"]
    weights = int((group["fan_in"] * units).median())  # numel: out x in x kernel
    layers = len(group)
    theory = theory_note(act, sw2, sb2, weights=weights, layers=layers, direction=direction)
    named = _named_gain(act, g, sb2)
    schemes = best_schemes(act, fans, sb2)
    names = " or ".join(f"{spec} ({family})" for family, spec in schemes.items())
    short = _short_of_depth(act, g, sb2, layers)
    drifting = drifts(act, g, sb2, layers)
    helps = not short and trainable_depth(act, sw2, sb2) < layers
    if 1 / SCALE_TOLERANCE <= r <= SCALE_TOLERANCE and not helps:
        limit = "consider normalization or less depth"
        if short:  # the note above quotes that depth: these weights are at the rule
            limit = f"at the gain rule's scale these {layers} layers may train slowly if at all"
            if act == "sigmoid":  # beyond mean field's depth is not "cannot train"
                limit += " (Glorot & Bengio's 5-layer sigmoid nets trained, slowly)"
            limit += ": consider "
            limit += _elsewhere(act)
        elif drifting:
            limit = f"{drifting}: consider {HOLD_THE_SCALE}"
        return (
            f"{act} layers already follow the gain rule (weight std {r:.2f}× "
            f"g/sqrt(fan_in), {named}); {theory}; {limit}"
        )
    if (direction == "vanishing" and r > 1) or (direction == "exploding" and r < 1):
        way = "smaller" if r > 1 else "larger"
        return (
            f"{act} layers have weight std {r:.2f}× the gain rule g/sqrt(fan_in) with "
            f"{named} already: a gain-rule scheme would make the weights {way} "
            f"and this worse; {theory}; the activation is the limit here: consider "
            f"{_elsewhere(act, first=True)}"
        )
    i = int(pd.Series(ratios).sub(r).abs().argmin())  # the layer closest to the median
    use = f"use {names}"
    if short:
        use = f"{short}: use {names} for the best scale, and with it {_elsewhere(act)}"
    elif drifting:
        use = f"{drifting}: use {names} for the best start, and with it {HOLD_THE_SCALE}"
    return (
        f"{act} layers have weight std {r:.2f}× the gain rule g/sqrt(fan_in) with "
        f"{named} (e.g. {group['weight_std'].iloc[i]:.3g} vs "
        f"{prescribed[i]:.3g} at {group['layer'].iloc[i]}); {theory}; {use}"
        f"{_keeping_biases(act, g)}"
    )


def measured_scale(group: pd.DataFrame) -> tuple[float, float]:
    """``(sigma_w², sigma_b²)`` of a group of layers as mean field reads them: the median of
    ``fan_in · weight_std²`` and the square of the median bias std (0 without biases)."""
    sw2 = float((group["weight_std"] ** 2 * group["fan_in"]).median())
    return sw2, float(group["bias_std"].fillna(0).median() ** 2)


def _named_gain(act: str, g: float, sb2: float) -> str:
    """``g = gain(act) = ...``, or, where the prescription is the edge of chaos and not
    :func:`initlab.gain` (tanh: 1 against PyTorch's 5/3), ``g = ..., the critical gain for
    act at sigma_b² = ... (its edge of chaos), not initlab.gain('act')``."""
    if act in EDGE_OF_CHAOS and not math.isclose(g, gain(act), rel_tol=1e-9):
        return (
            f"g = {g:.4g}, the critical gain for {act} at sigma_b² = {sb2:.3g} (its edge of "
            f"chaos), not initlab.gain('{act}')"
        )
    return f"g = gain({act}) = {g:.4g}"


def _elsewhere(act: str, *, first: bool = False) -> str:
    """The remedies beyond the weight scale: normalization, fewer layers, another activation
    (tanh or relu, whichever ``act`` is not); the activation first when ``first``."""
    others = " or ".join(a for a in ("tanh", "relu") if a != act)
    if first:
        return f"another activation ({others}), normalization or less depth"
    return f"normalization, fewer layers or another activation ({others})"


def _short_of_depth(act: str, g: float, sb2: float, layers: int) -> str:
    """Empty when the prescription ``sigma_w² = g²`` reaches ``layers``; otherwise the sentence
    saying it does not (sigmoid: 2.08 layers at sigma_w² = 1, whatever the layers' own scale),
    so that no scheme is recommended as if it trained this deep."""
    depth = trainable_depth(act, g * g, sb2)
    if depth >= layers:
        return ""
    return (
        f"even at the gain rule's scale (sigma_w² = {g * g:.3g}) mean field's trainable depth "
        f"is {depth:.3g} layers, fewer than these {layers}"
    )


HOLD_THE_SCALE = "normalization (LayerNorm, BatchNorm) or residual connections to hold the scale"
"""The remedy where the gain rule's variance is a repelling fixed point (:func:`drifts`)."""
DRIFT_FACTOR = 2.0
"""A repelling fixed point is named when ``L'**layers`` reaches this: a variance 10% off
``q_u`` at the first layer is then at least 20% off at the last."""


def drifts(act: str, g: float, sb2: float, layers: int) -> str:
    """Empty unless the gain rule's variance is a repelling fixed point of the length map
    (:func:`~initlab.theory.scales.unstable_fixed_point`: gelu, silu) and ``L'**layers``
    reaches :data:`DRIFT_FACTOR`; then the sentence saying that no weight scale alone holds
    these layers' variance (any deviation grows by ``L'`` per layer, down or up)."""
    try:
        found = unstable_fixed_point(act, g * g, sb2)
    except (InitlabError, ValueError, ArithmeticError):
        return ""
    if found is None or found[1] ** layers < DRIFT_FACTOR:
        return ""
    q_u, slope = found
    return (
        f"at the gain rule's scale the variance q = {q_u:.3g} is an unstable fixed point "
        f"for {act} (L'(q) = {slope:.3g} > 1): any deviation from it grows ×{slope:.3g} per "
        f"layer, ×{slope**layers:.3g} over these {layers} layers, down or up, so no "
        "weight scale alone holds them steady"
    )


def _keeping_biases(act: str, prescribed: float) -> str:
    """`` with these biases kept (bias='keep'): ...`` when the prescription is the edge of
    chaos at the measured bias variance, not at zero biases: initializing with the default
    ``bias='zeros'`` moves the edge back to gain 1, and the scheme would be chaotic."""
    at_zero = prescribed_gain(act)
    if math.isclose(prescribed, at_zero, rel_tol=1e-3):
        return ""
    keep = option("--bias keep", "bias='keep'")
    return (
        f", with these biases kept ({keep}): with zero biases the edge of chaos is at "
        f"gain {at_zero:.4g}"
    )


def trainable_depth(act: str, sw2: float, sb2: float) -> float:
    """Mean field's trainable depth ``6 xi_grad = 6 / |ln chi1|`` at ``sw2`` (the convention
    of every suggestion, :func:`~initlab.probe.meanfield.theory_note`); inf where it cannot
    be computed. Within the scale tolerance of the edge of chaos, a tanh net at
    sigma_w² = 0.64 still loses its gradients over 20 layers (depth ≈ 13.4), where the
    prescription (1.0) would not; a sigmoid net loses them at the prescription too (2.08)."""
    try:
        return TRAINABLE_DEPTH_FACTOR * xi_grad(act, sw2, sb2)
    except (InitlabError, ValueError, ArithmeticError):
        return math.inf


def bias_advice(rows: pd.DataFrame) -> str:
    """Zero biases, when negative biases push ``rows``' pre-activations more than
    ``BIAS_DEAD_SIGMAS`` stds below zero (a ReLU then passes almost nothing: dead units, and
    a signal that vanishes in 3 layers at the gain rule); ``""`` otherwise."""
    biased = rows[
        (rows["bias_mean"] < 0) & (rows["pre_mean"] < -BIAS_DEAD_SIGMAS * rows["pre_std"])
    ]
    if biased.empty:
        return ""
    return (
        f"the biases (mean {biased['bias_mean'].iloc[0]:.3g} at {biased['layer'].iloc[0]}) "
        f"push the pre-activations below zero (mean {biased['pre_mean'].iloc[0]:.3g}, std "
        f"{biased['pre_std'].iloc[0]:.3g}): use zero biases (initialize(..., bias='zeros'))"
    )


def dead_advice(frame: pd.DataFrame, rows: pd.DataFrame) -> str:
    """Biases pushing pre-activations below zero → zero biases; otherwise the weight scale."""
    if biased := bias_advice(rows):
        return biased
    advice = scale_advice(frame, rows)
    return advice or "consider leaky_relu, or a smaller learning rate if this appeared in training"


def symmetry_advice(frame: pd.DataFrame, rows: pd.DataFrame) -> str:
    """Identical units can only be told apart by a random init: name one for the activation."""
    acts = rows["activation"].dropna()
    act = str(acts.iloc[0]) if len(acts) else "linear"
    fans = [(int(fi), int(fo)) for fi, fo in zip(rows["fan_in"], rows["fan_out"], strict=True)]
    try:
        schemes = best_schemes(act, fans)
    except InitlabError:
        schemes = {"fan_in": "he_normal"}
    zero = rows["weight_std"].fillna(1).eq(0).any()
    cause = "weights are constant (all equal)" if zero else "units share their weights"
    return (
        f"{cause}: break the symmetry with a random scheme, e.g. "
        f"{' or '.join(schemes.values())} for {act}"
    )


def suggest(name: str, frame: pd.DataFrame, layers: Sequence[str]) -> str:
    """The suggestion for finding ``name`` triggered by ``layers`` of ``frame``."""
    if name == "symmetry":
        return symmetry_advice(frame, _rows(frame, layers))
    if name == "dead_units":
        return dead_advice(frame, _rows(frame, layers))
    if name == "saturation":
        return scale_advice(frame, _rows(frame, layers))
    direction = name.partition("_")[0]
    rows = _span(frame, layers)
    if direction == "vanishing" and (biased := bias_advice(rows)):
        return biased  # the weights follow the gain rule, the biases switch the units off
    residual = residual_advice(frame) if direction == "exploding" else ""
    if residual:  # the rule rescales the branches' last layers: no gain rule for them
        rows = rows[rows["branch_layer"] != rows["branch_size"] - 1]
    return "; ".join(part for part in (residual, scale_advice(frame, rows, direction)) if part)
