"""Suggestions derived from the gain and mean-field theory, never from a table of cases.

For a hidden layer with fan-in ``n`` followed by activation phi, the variance-preserving rule
of :func:`initlab.gain` prescribes the weight std ``gain(phi) / sqrt(n)``; mean-field theory
(:mod:`initlab.theory`) gives the edge of chaos ``sigma_w² = critical_sigma_w2(phi, sigma_b²)``
and, for the layer's *actual* ``sigma_w² = n · mean(W²)``, the phase, ``chi1`` and the
trainable depth ``6 xi_c``. A suggestion compares the layer's weight std with the
prescription (``ratio = actual / prescribed``) and names the registry schemes whose std
(:meth:`initlab.initializers.Initializer.std` at the layer's fans) is closest to it in log
scale, over the layers concerned: the best ``fan_in`` scheme (LeCun/He/Kaiming family) and
the best ``fan_avg`` scheme (Glorot/Xavier family). The gain is
:func:`~initlab.theory.prescribed_gain`: the edge of chaos for tanh (1, not PyTorch's 5/3,
which is chaotic at depth), as the doctor plans it. For ReLU that is ``he_normal``; for tanh
``lecun_normal`` or ``glorot_normal``; for sigmoid
``lecun_normal`` or ``glorot_normal`` — unless that goes against the finding (vanishing
gradients in sigmoid layers already above the rule: the activation is the limit). Constant
weights are named as the cause first. Dead units whose pre-activations sit below zero because
of the biases get "zero biases"; identical units get "a random scheme".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

import initlab.initializers as initializers
from initlab.errors import InitlabError, option
from initlab.initializers import Fans
from initlab.theory import analyze, gain, prescribed_gain, pytorch_gain
from initlab.theory.meanfield import critical_sigma_w2

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
    sb2 = float(group["bias_std"].fillna(0).median() ** 2)
    try:
        g = prescribed_gain(act, sb2)
    except InitlabError:
        return ""
    fans = [(int(fi), int(fo)) for fi, fo in zip(group["fan_in"], group["fan_out"], strict=True)]
    prescribed = [g / math.sqrt(fi) for fi, _ in fans]
    ratios = [w / p for w, p in zip(group["weight_std"], prescribed, strict=True)]
    r = float(pd.Series(ratios).median())
    sw2 = float((group["weight_std"] ** 2 * group["fan_in"]).median())
    units = group["units"] if "units" in group else group["fan_out"]
    weights = int((group["fan_in"] * units).median())  # numel: out x in x kernel
    theory = _theory_note(act, sw2, sb2, weights)
    named = f"gain({act}) = {g:.4g}" + (" (its edge of chaos)" if g != gain(act) else "")
    schemes = best_schemes(act, fans, sb2)
    names = " or ".join(f"{spec} ({family})" for family, spec in schemes.items())
    depth = len(group)  # a scheme at the prescription helps only if it reaches this depth
    helps = not _deep_enough(act, sw2, sb2, depth) and _deep_enough(act, g * g, sb2, depth)
    if 1 / SCALE_TOLERANCE <= r <= SCALE_TOLERANCE and not helps:
        return (
            f"{act} layers already follow the gain rule (weight std {r:.2f}× "
            f"gain/sqrt(fan_in), {named}); {theory}; consider normalization or less depth"
        )
    if (direction == "vanishing" and r > 1) or (direction == "exploding" and r < 1):
        way = "smaller" if r > 1 else "larger"
        return (
            f"{act} layers have weight std {r:.2f}× the gain rule gain/sqrt(fan_in) with "
            f"{named} already: a gain-rule scheme would make the weights {way} "
            f"and this worse; {theory}; the activation is the limit here: consider another "
            "activation (tanh, relu), normalization or less depth"
        )
    i = int(pd.Series(ratios).sub(r).abs().argmin())  # the layer closest to the median
    return (
        f"{act} layers have weight std {r:.2f}× the gain rule gain/sqrt(fan_in) with "
        f"{named} (e.g. {group['weight_std'].iloc[i]:.3g} vs "
        f"{prescribed[i]:.3g} at {group['layer'].iloc[i]}); {theory}; use {names}"
        f"{_keeping_biases(act, g)}"
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


def _deep_enough(act: str, sw2: float, sb2: float, layers: int) -> bool:
    """Whether mean field's trainable depth ``6 xi_c`` at ``sw2`` reaches ``layers`` (true
    where it cannot be computed): within the scale tolerance of the edge of chaos, a tanh
    net at sigma_w² = 0.64 still loses its signal over 20 layers (depth ≈ 14), where the
    prescription (1.0) would not; a sigmoid net loses it at the prescription too."""
    try:
        return analyze(act, sw2, sb2)["max_trainable_depth"] >= layers
    except (InitlabError, ValueError, ArithmeticError):
        return True


def _theory_note(act: str, sw2: float, sb2: float, weights: int = 0) -> str:
    """Mean-field phase at the actual sigma_w², and the edge of chaos.

    ``sigma_w²`` measured on ``weights`` sampled weights has a relative standard error
    ``sqrt(2 / weights)``; within three of them of the edge of chaos it is the edge (a He
    init measured at 2.003 is not "exploding with trainable depth 8240")."""
    try:
        mf = analyze(act, sw2, sb2)
        crit = critical_sigma_w2(act, sb2)
    except (InitlabError, ValueError, ArithmeticError):
        return f"sigma_w² = {sw2:.3g}"
    if weights and crit > 0 and abs(sw2 / crit - 1) <= 3 * math.sqrt(2 / weights):
        return (
            f"mean field: sigma_w² = {sw2:.3g} is the edge of chaos ({crit:.3g}) within "
            "sampling noise (chi1 = 1: the scale itself neither grows nor shrinks with depth)"
        )
    depth = mf["max_trainable_depth"]
    depth_text = "unbounded" if math.isinf(depth) else f"≈ {depth:.3g} layers"
    return (
        f"mean field: sigma_w² = {sw2:.3g} is {mf['phase']} (chi1 = {mf['chi1']:.3g}, "
        f"trainable depth {depth_text}; edge of chaos at sigma_w² = {crit:.3g})"
    )


def dead_advice(frame: pd.DataFrame, rows: pd.DataFrame) -> str:
    """Biases pushing pre-activations below zero → zero biases; otherwise the weight scale."""
    biased = rows[
        (rows["bias_mean"] < 0) & (rows["pre_mean"] < -BIAS_DEAD_SIGMAS * rows["pre_std"])
    ]
    if len(biased):
        return (
            f"the biases (mean {biased['bias_mean'].iloc[0]:.3g} at {biased['layer'].iloc[0]}) "
            f"push the pre-activations below zero (mean {biased['pre_mean'].iloc[0]:.3g}, std "
            f"{biased['pre_std'].iloc[0]:.3g}): use zero biases (initialize(..., bias='zeros'))"
        )
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
    residual = residual_advice(frame) if direction == "exploding" else ""
    if residual:  # the rule rescales the branches' last layers: no gain rule for them
        rows = rows[rows["branch_layer"] != rows["branch_size"] - 1]
    return "; ".join(part for part in (residual, scale_advice(frame, rows, direction)) if part)


def residual_advice(frame: pd.DataFrame) -> str:
    """For a residual model whose branches all start at full scale: the branches' outputs
    add up with depth (the stream's variance grows by a factor ``1 + v_branch / v_stream``
    per block, ``2^L`` for unit-gain branches without normalization), so the remedy is a
    residual rule, whatever the gain rule says of each layer. Empty when the model has
    fewer than two branches or a rule already zeroed the branches' last layers."""
    if "branch" not in frame or frame["branch"].nunique() < 2:
        return ""
    last = frame[frame["branch_layer"] == frame["branch_size"] - 1]
    if (last["weight_std"].fillna(1) == 0).any():
        return ""
    count = int(frame["branch"].nunique())
    return (
        f"the model's {count} residual branches add to the stream at full scale, so the "
        "signal grows with depth whatever each layer's init: apply a residual rule "
        "(--residual-init fixup, skipinit or zero_last_layer; zero_last_norm when a branch "
        "ends in a norm; "
        "initialize(..., residual_init=...); docs/residual.md)"
    )
