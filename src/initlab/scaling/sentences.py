"""The words of a scaling check: why a flagged fit moves with width and what muP does about
it (:func:`cause`, by parameter kind and optimizer, :mod:`initlab.scaling.mup_rules`), the
sentence of each flagged :class:`~initlab.scaling.verdicts.Verdict`
(:func:`with_sentences`), and the output-layer fits at init that muP's readout explains
(:func:`explain_readout_init`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from initlab.errors import option
from initlab.scaling.mup_rules import MUP_FIX, MUP_KEEPS, MUP_LOWERS, NAMES
from initlab.scaling.roles import READOUT
from initlab.scaling.stream import STREAM
from initlab.scaling.verdicts import METRIC_WORDS, PRACTICAL_SLOPE, Verdict


def cause(
    verdict: Verdict, param: str, optimizer: str, kind: str, tie: str = "", attention: bool = False
) -> str:
    """Why a flagged module moves with width, and what muP does about it (``tie``: why its
    weight, shared with another layer, does not get its own rule; ``attention``: the model
    has attention, whose 1/d scale muP needs, :func:`initlab.scaling.coords.has_attention`)."""
    setting = f"under {NAMES.get(param, param)} with {NAMES.get(optimizer, optimizer)}"
    if tie:
        return f"{setting}, {tie}"
    if readout_shrinks_at_init(verdict, kind):
        return readout_init_cause(verdict, param, setting)
    if verdict.step == 0 and param == "default":
        return (
            f"the factory's initialization (checked as built, {option('--param default')}) has "
            "a scale that depends on width; variance ∝ 1/fan_in (SP, NTK, muP; muP's output "
            "layer: 0 or 1/fan_in²) keeps it flat"
        )
    if verdict.step == 0:
        return (
            f"the initialization's scale depends on width {setting}; muP initializes with "
            "variance ∝ 1/fan_in (the output layer: 0 or 1/fan_in²)"
        )
    if param == "mup":
        also = " and that attention uses 1/d" if attention else ""
        return (
            f"not expected {setting}: check the parameter kinds (`initlab scaling` prints "
            f"them){also}, and whether the factory applies muP itself (multipliers, a 1/width "
            f"readout: muP twice; check it as built with {option('--param default')})"
        )
    fix = MUP_FIX.get((kind, optimizer), "see docs/scaling.md for muP's rule")
    if verdict.slope > 0:
        return f"updates too large for this width {setting}; {fix}"
    if verdict.metric != "update":  # a size, not the update: the init may still dominate it
        return (
            f"its size shrinks as width grows {setting}: the init's scale carried forward "
            "(compare its step-0 fit) or updates too small to move it"
        )
    if (kind, optimizer) in MUP_LOWERS:  # muP's rule lowers this layer's rate: no cure
        fix = "muP lowers this layer's learning rate, so that is not the cure; check its inputs"
    elif (kind, optimizer) in MUP_KEEPS:  # muP does here what this run did
        fix = f"{fix}, as this run did: an effect of other layers, not this one's rule"
    return f"updates vanish as width grows {setting} (features stop learning); {fix}"


MUP_READOUT_SLOPE = -0.5
"""muP's readout init (variance ≤ 1/fan_in², Tensor Programs V Table 3, or 0) makes the
readout's output at init shrink as width^s with s ≤ −½: fan_in terms of variance ≤ 1/fan_in²
on O(1) inputs sum to a variance ≤ 1/fan_in (SP's 1/fan_in: s = 0). A fit whose 95% CI
reaches ``MUP_READOUT_SLOPE + PRACTICAL_SLOPE`` is read as within it (slopes within
:data:`PRACTICAL_SLOPE` are finite-width corrections)."""


MUP_READOUT_INIT = "muP's readout init (variance ≤ 1/fan_in²)"
"""The ``explained`` of a fit :func:`explain_readout_init` unflags."""


def within_mup_readout(verdict: Verdict) -> bool:
    """The fit shrinks (95% CI below 0) and its CI reaches muP's readout law
    (:data:`MUP_READOUT_SLOPE`, up to :data:`PRACTICAL_SLOPE`)."""
    return verdict.ci_high < 0 and verdict.ci_low <= MUP_READOUT_SLOPE + PRACTICAL_SLOPE


def readout_shrinks_at_init(verdict: Verdict, kind: str) -> bool:
    """A width fit of an output layer's (or the logits') size at step 0 whose slope is < 0:
    what muP's readout init does (:data:`MUP_READOUT_SLOPE`), not a growing init."""
    return (
        verdict.axis == "width"
        and verdict.step == 0
        and verdict.slope < 0
        and verdict.metric in ("l1", "std")
        and kind in ("output", "logits")
    )


def readout_init_cause(verdict: Verdict, param: str, setting: str) -> str:
    """The sentence of an output layer (or the logits) shrinking at init: muP-compatible when
    its 95% CI reaches muP's law (:func:`within_mup_readout`: its variance can be
    ≤ 1/fan_in²), else between SP's law (flat) and muP's."""
    who = (
        f"the factory's output layer (checked as built, {option('--param default')})"
        if param == "default"
        else f"the output layer's init {setting}"
    )
    if within_mup_readout(verdict) and param == "default":  # flagged: SP's weights
        return (
            f"{who} shrinks with width at init, but its weights keep SP's variance ∝ "
            "1/fan_in, so it is no muP readout (variance ≤ 1/fan_in², or 0): what shrinks is "
            "its bias (PyTorch's default draws it with std 1/√fan_in) or its inputs"
        )
    if within_mup_readout(verdict):
        flat = "; SP's and NTK's 1/fan_in would keep it flat" if param != "mup" else ""
        return (
            f"{who} shrinks with width as muP's readout does (variance ≤ 1/fan_in², or 0; "
            f"or its output scaled by 1/width in the forward): muP-compatible, not a "
            f"defect{flat}"
        )
    return (
        f"{who} shrinks faster than SP's 1/fan_in (flat) and more slowly than muP's readout "
        "(variance ≤ 1/fan_in²: width^−½ or steeper), so it follows neither; muP "
        "zero-initializes the output layer or gives it variance 1/fan_in²"
    )


def explain_readout_init(
    verdicts: list[Verdict], param: str, kinds: Mapping[str, str], weight_law: float | None = None
) -> list[Verdict]:
    """Under muP, or for the factory's own init (``default``: the model as its author built
    it, a muP readout being a deliberate choice), mark each output layer (or logits) fit
    that shrinks at init within muP's rule (:func:`readout_shrinks_at_init`,
    :func:`within_mup_readout`) ``explained``, not flagged: muP allows any readout variance
    ≤ 1/fan_in², so its output may vanish with width at step 0 (the updates make the logits
    Θ(1) after it). Under SP and NTK, which initlab applied itself, they stay flagged, with
    a sentence saying that they are muP-compatible (:func:`readout_init_cause`). As built,
    only when the readout's weights do follow muP's law (``weight_law``, the slope of their
    mean square in log width, :func:`initlab.scaling.readout_law.readout_weight_law`, at
    most :data:`~initlab.scaling.readout_law.MUP_WEIGHT_LAW`): PyTorch's default readout
    keeps SP's weights, and its output shrinks through its bias."""
    from initlab.scaling.readout_law import MUP_WEIGHT_LAW

    if param not in ("mup", "default"):
        return verdicts
    if param == "default" and (weight_law is None or weight_law > MUP_WEIGHT_LAW):
        return verdicts
    out = []
    for v in verdicts:
        kind = module_kind(v.module, kinds)
        if readout_shrinks_at_init(v, kind) and within_mup_readout(v):
            v = replace(v, flagged=False, explained=MUP_READOUT_INIT)
        out.append(v)
    return out


def sentence(
    verdict: Verdict, param: str, optimizer: str, kind: str, tie: str = "", attention: bool = False
) -> str:
    """ "`blocks.3.fc2` output grows as width^0.49 by step 3 (95% CI 0.41–0.57): ..."
    (:func:`cause` for ``tie`` and ``attention``)."""
    what = "logits std" if verdict.module == "(logits)" else METRIC_WORDS.get(verdict.metric)
    if STREAM in verdict.module:  # a norm's input: the residual stream (initlab.scaling.stream)
        what = {"l1": "mean |input|", "std": "input std"}.get(verdict.metric, what)
    name = {"(logits)": "the model", READOUT: "the readout"}.get(
        verdict.module, f"`{verdict.module}`"
    )
    power = {
        "width": f"width^{verdict.slope:.2f}",
        "log_depth": f"depth^{verdict.slope:.2f}",
        "depth": f"exp({verdict.slope:.2f}·depth)",
    }[verdict.axis]
    where = (
        ""
        if verdict.at is None
        else (f" at width {verdict.at}" if verdict.axis != "width" else f" at depth {verdict.at}")
    )
    text = (
        f"{name} {what} {verdict.direction} as {power} by step "
        f"{verdict.step}{where} (95% CI {verdict.ci_low:.2f}–{verdict.ci_high:.2f})"
    )
    if verdict.axis != "width":
        return f"{text}: {law_words(verdict)}"
    return f"{text}: {cause(verdict, param, optimizer, kind, tie, attention)}"


def law_words(verdict: Verdict) -> str:
    """What a depth fit's law says (mean-field theory, docs/theory.md): an exponential in
    depth is a network off criticality (ordered: decays; chaotic or exploding: grows), a
    power of depth what a residual stream that adds unscaled branches gives (each adds its
    variance: std ∝ depth^0.5) or a critical initialization."""
    if verdict.law == "undetermined":
        return "two depths cannot tell an exponential from a power of depth (add a depth)"
    if verdict.law == "power":
        return (
            "a power of depth fits better than an exponential: polynomial, as a residual "
            "stream adding unscaled branches gives (each adds its variance: std ∝ depth^0.5; "
            "residual rule depth_scaled keeps it level), or a critical init (edge of chaos)"
        )
    factor = math.exp(verdict.slope)
    side = "ordered side: it vanishes" if verdict.slope < 0 else "chaotic or exploding side"
    return (
        f"an exponential in depth fits better than a power (×{factor:.2f} per unit of depth): "
        f"off criticality, on the {side} (mean-field theory, docs/theory.md)"
    )


def module_kind(module: str, kinds: dict[str, str]) -> str:
    """The kind of a traced module: its weight's (``logits`` for the model's output)."""
    if module == "(logits)":
        return "logits"
    return kinds.get(f"{module.split('[')[0]}.weight", "hidden")


MULTIPLIER_TREND = 1.5
"""How much a readout's rescaling must change across the widths to be a width multiplier
(muP's ``base/width``: ×8 over 8× the width), not a fixed transform of the logits (a
``log_softmax`` also changes their std, by the same factor at every width)."""


def rescaled_readout_hint(readout: str | None, scale: Any = None) -> dict[str, str]:
    """What to say of the readout and the logits when the forward rescales the readout's
    output by a factor that changes with width (``scale``: per width, from
    :func:`initlab.scaling.evidence.readout_scale`, by at least :data:`MULTIPLIER_TREND`):
    muP's output multiplier, so telling it to scale its learning rate by 1/width would apply
    muP twice; ``{}`` otherwise. Keyed as :func:`module_tie` reads hints."""
    if readout is None or scale is None or not len(scale):
        return {}
    if float(scale.max()) < MULTIPLIER_TREND * float(scale.min()):
        return {}
    said = (
        f"the forward already rescales `{readout}`'s output (muP's output multiplier), so its "
        "learning rate is not the cure (lowering it would apply muP twice): the growth comes "
        "from the layers before it (muP scales hidden layers' Adam learning rate by 1/width); "
        "see their fits"
    )
    return {f"{readout}.weight": said, "(logits)": said}


def module_tie(module: str, ties: Mapping[str, str]) -> str:
    """Why ``module``'s weight does not get its own rule because it is tied ("" when it
    does); ``ties["(logits)"]`` for the logits."""
    if module == "(logits)":
        return ties.get(module, "")
    return ties.get(f"{module.split('[')[0]}.weight", "")


def with_sentences(
    verdicts: list[Verdict],
    param: str,
    optimizer: str,
    kinds: dict[str, str],
    ties: Mapping[str, str] | None = None,
    attention: bool = False,
) -> list[Verdict]:
    """The verdicts, the flagged ones with their sentence. ``ties``: parameter name → why it
    does not get its own module's rule (:func:`initlab.scaling.parametrize.tie_hint`), and
    ``"(logits)"`` → the same for a tied readout; ``attention``: whether the model has
    attention (only then do the sentences mention its 1/d scale)."""
    out, ties = [], dict(ties or {})
    for v in verdicts:
        text = ""
        if v.flagged:
            tie = module_tie(v.module, ties)
            kind = module_kind(v.module, kinds)
            text = sentence(v, param, optimizer, kind, tie, attention)
        out.append(replace(v, sentence=text))
    return out
