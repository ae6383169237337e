"""Verdicts on a per-layer table: a fixed vocabulary of findings with stated thresholds.

A diagnosis compares *hidden* layers: every Linear/Conv layer but the last one called (the
output layer, whose units are told apart by the labels and whose activation is the loss's
business). "First" and "last" below are the first and last hidden layers. An empty list of
findings means the network looks healthy at the scale of these tests.

=========================  ==================================================================
finding                    fires when
=========================  ==================================================================
vanishing_activations      post_std(last) / post_std(first) < ACTIVATION_RATIO_LOW (1/30)
exploding_activations      that ratio > ACTIVATION_RATIO_HIGH (30), or any hidden value is
                           non-finite (an overflow); not from a first hidden layer that
                           is constant (std 0: zero weights, left to dead_units/symmetry)
vanishing_gradients        pre_grad_std(first) / pre_grad_std(last) < GRADIENT_RATIO_LOW
                           (1/30), or weight_grad_norm(first layer) / weight_grad_norm(output
                           layer) < WEIGHT_GRAD_RATIO_LOW (1e-3), or nothing reaches the
                           first hidden layer (its dL/dz exactly 0, underflowed or cut by a
                           zero weight) while the output layer's is not
exploding_gradients        pre_grad_std ratio > GRADIENT_RATIO_HIGH (30), weight-gradient
                           ratio > WEIGHT_GRAD_RATIO_HIGH (1e3), or a non-finite gradient
saturation                 a hidden layer has saturated_frac > SATURATION_FRAC (0.5)
dead_units                 a hidden layer has dead_frac > DEAD_FRAC (0.5)
symmetry                   a hidden layer has weight_duplicates > 0 or act_duplicates > 0
=========================  ==================================================================

**Residual networks.** A layer inside a residual branch sees the stream through its branch,
and a branch may be switched off at init on purpose (a zero last layer or norm weight, a
layer-scale of 1e-6: SkipInit, Fixup, timm's ``zero_init_last``, ConvNeXt), which puts that
branch's inner gradients at or near 0 whatever the depth. With two or more branches (the
frame's ``branch``/``branch_layer``/``branch_size`` columns, from
:func:`initlab.residual.find_structure`) the depth ratios compare like with like
(:func:`activation_layers`, :func:`gradient_layers`): the layers outside every branch and
the first layer of each branch of one kind, which all read the stream; the weight-gradient
ratio and "nothing arrives" start from the first layer outside every branch (none: not
checked), and are skipped when the output layer is all zeros (Fixup). A branch's last layer
writes each unit to its own coordinate of the stream, so its units are told apart there and
are left out of ``symmetry``, and when zeroed out of ``dead_units``/``saturation`` (a
zeroed last layer is not a symmetry to break: Fixup relies on it).

Why two gradient ratios: the norm of dL/dW_l = delta_l h_{l-1}ᵀ multiplies the backward
signal delta_l (which shrinks toward the input when the forward signal h shrinks) by the
forward signal h_{l-1} (which shrinks toward the output), so it stays nearly constant across
depth even when back-propagated gradients vanish (Glorot & Bengio 2010 saw exactly this). The
std of the back-propagated gradient dL/dz is the sensitive measure; the weight-gradient norm
ratio catches the extreme cases.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import pandas as pd

from initlab.jsonsafe import json_number
from initlab.probe import suggestions

ACTIVATION_RATIO_LOW = 1 / 30
ACTIVATION_RATIO_HIGH = 30.0
GRADIENT_RATIO_LOW = 1 / 30
GRADIENT_RATIO_HIGH = 30.0
WEIGHT_GRAD_RATIO_LOW = 1e-3
WEIGHT_GRAD_RATIO_HIGH = 1e3
SATURATION_FRAC = 0.5
DEAD_FRAC = 0.5

FINDINGS = (
    "vanishing_activations",
    "exploding_activations",
    "vanishing_gradients",
    "exploding_gradients",
    "saturation",
    "dead_units",
    "symmetry",
    "large_logits",
    "dormant_branches",
    "saturated_attention",
    "exploding_through_time",
    "saturated_gates",
)
"""The vocabulary, in the order findings are reported (``large_logits``:
:mod:`initlab.probe.logits`, for models whose outputs are class logits;
``dormant_branches``: :mod:`initlab.probe.branches`; ``saturated_attention``:
:mod:`initlab.probe.attention`; ``exploding_through_time`` and ``saturated_gates``:
:mod:`initlab.probe.recurrent`, for RNN/LSTM/GRU modules)."""


@dataclass(frozen=True)
class Finding:
    """One verdict: which ``layers`` triggered it, the numbers (``values``), the
    ``threshold`` crossed, a one-line ``message`` and a theory-derived ``suggestion``."""

    name: str
    layers: tuple[str, ...]
    values: dict[str, float] = field(default_factory=dict)
    threshold: float = math.nan
    message: str = ""
    suggestion: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict (non-finite numbers become strings: ``"inf"``, ``"nan"``)."""
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["values"] = {k: json_number(v) for k, v in self.values.items()}
        d["threshold"] = json_number(self.threshold)
        return d

    def __str__(self) -> str:
        text = f"{self.name}: {self.message}"
        return text + (f"\n  suggestion: {self.suggestion}" if self.suggestion else "")


def hidden_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of every weight layer but the last (the output layer). Embedding tables are
    left out: a lookup is where the signal starts, not a layer it passes through, so its
    scale is no step of a depth trend (:mod:`initlab.probe.trace`)."""
    weights = frame[frame["type"] != "Embedding"] if "type" in frame else frame
    return weights.iloc[:-1]


def _is_residual(hid: pd.DataFrame) -> bool:
    return "branch" in hid and hid["branch"].nunique() >= 2


def signature(name: str) -> str:
    """A layer's name with every number as ``#``: ``blocks.3.attn.q`` → ``blocks.#.attn.q``,
    ``layer2.0.conv1`` → ``layer#.#.conv#``: the same for the same layer of every block, in
    every stage."""
    return re.sub(r"\d+", "#", name)


def _entries(hid: pd.DataFrame, reads_only: bool = False) -> pd.DataFrame:
    """The first layer of every residual branch of the first branch's kind (its signature):
    a transformer's attention branches, not its MLP ones. ``reads_only``: leave out a
    branch's only layer when its weight is all zeros (a rule zeroed the branch's output)."""
    entries = hid[hid["branch_layer"] == 0]
    if reads_only:
        entries = entries[(entries["branch_size"] > 1) | (entries["weight_std"] > 0)]
    if entries.empty:
        return entries
    kind = entries["layer"].map(signature)
    return entries[kind == kind.iloc[0]]


def activation_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """The hidden rows the activation ratio compares, in call order: every hidden layer; in
    a model with two or more residual branches, the layers outside every branch (a stem, a
    plain stack before the branches, transitions) and the first layer of each branch of the
    first one's kind, which all read the stream (module docstring)."""
    hid = hidden_layers(frame)
    if not _is_residual(hid):
        return hid
    return hid[hid["branch"].isna() | hid.index.isin(_entries(hid, reads_only=True).index)]


def gradient_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """The hidden rows the dL/dz ratio compares: every hidden layer; in a residual model
    the layers outside every branch when there are two (their dL/dz is the stream's), else
    the first layers of the branches of one kind (each scaled by its branch's gate alike)."""
    hid = hidden_layers(frame)
    if not _is_residual(hid):
        return hid
    stream = hid[hid["branch"].isna()]
    return stream if len(stream) >= 2 else _entries(hid)


def _first_layer(frame: pd.DataFrame) -> pd.Series | None:
    """The row whose weight gradient and dL/dz stand for the input end: the first layer; in
    a residual model the first one outside every branch: ``None`` when there is none (a
    pre-norm transformer's layers all sit in branches, whose weight gradients scale with
    their branch's own size, not with depth: std 0.005 gave a ratio of 3e-4 to the head)
    or when the output layer's weight is all zeros (Fixup's rule): nothing flows back from
    it at init, by design."""
    if float(frame["weight_std"].iloc[-1]) == 0:
        return None
    hid = hidden_layers(frame)
    if not _is_residual(hid):
        return frame.iloc[0]
    outside = hid[hid["branch"].isna()]
    return outside.iloc[0] if len(outside) else None


def _branch_last(hid: pd.DataFrame) -> pd.Series:
    """Whether each row is the last layer of its residual branch (False outside branches)."""
    if "branch" not in hid:
        return pd.Series(False, index=hid.index)
    return hid["branch_layer"] == hid["branch_size"] - 1


def _symmetry_candidates(frame: pd.DataFrame) -> pd.DataFrame:
    """The hidden rows whose identical units would stay identical: all but the last layer
    of each residual branch."""
    hid = hidden_layers(frame)
    return hid[~_branch_last(hid)]


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` keeping explosions: inf/finite = inf, finite/inf = 0,
    x/0 = inf (x > 0); NaN for 0/0, inf/inf and anything with a NaN."""
    if math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    if math.isinf(denominator):
        return math.nan if math.isinf(numerator) else 0.0
    if denominator == 0:
        return math.inf if numerator > 0 else math.nan
    return numerator / denominator


def summary(frame: pd.DataFrame) -> dict[str, float]:
    """The three depth ratios the verdicts use (NaN with fewer than two hidden layers).

    ``activation_std_ratio`` = post_std(last hidden) / post_std(first hidden);
    ``grad_std_ratio`` = pre_grad_std(first hidden) / pre_grad_std(last hidden), over
    :func:`activation_layers` and :func:`gradient_layers` (all hidden layers of a plain net);
    ``weight_grad_norm_ratio`` = weight_grad_norm(first layer) / weight_grad_norm(last layer)
    (:func:`_first_layer`: a residual model's first layer outside its branches).
    """
    out = dict.fromkeys(
        ("activation_std_ratio", "grad_std_ratio", "weight_grad_norm_ratio"), math.nan
    )
    act, grad = activation_layers(frame), gradient_layers(frame)
    if len(act) >= 2:
        post = act["post_std"].astype(float)
        out["activation_std_ratio"] = ratio(post.iloc[-1], post.iloc[0])
    if len(grad) >= 2:
        back = grad["pre_grad_std"].astype(float)
        out["grad_std_ratio"] = ratio(back.iloc[0], back.iloc[-1])
    first = _first_layer(frame)
    if len(frame) >= 2 and first is not None:
        norm = frame["weight_grad_norm"].astype(float)
        out["weight_grad_norm_ratio"] = ratio(float(first["weight_grad_norm"]), norm.iloc[-1])
    return {k: float(v) for k, v in out.items()}


def find(frame: pd.DataFrame) -> list[Finding]:
    """Every finding that fires on ``frame`` (a :attr:`Diagnosis.layers` table), in
    :data:`FINDINGS` order, each with its suggestion."""
    if len(frame) < 2:
        return _not_finite(frame)
    found = [
        *_activation_findings(frame),
        *_gradient_findings(frame),
        *_fraction_findings(frame),
        *_symmetry_findings(frame),
    ]
    return sorted(found, key=lambda f: FINDINGS.index(f.name))


def _not_finite(frame: pd.DataFrame) -> list[Finding]:
    """``exploding_gradients`` for a one-layer model whose gradients are already inf/NaN at
    init (the depth ratios need two layers: it was called healthy)."""
    grads = pd.to_numeric(frame.get("weight_grad_norm", pd.Series(dtype=float)), errors="coerce")
    spread = pd.to_numeric(frame.get("pre_grad_std", pd.Series(dtype=float)), errors="coerce")
    infinite = grads.abs().eq(math.inf).any() or spread.abs().eq(math.inf).any()
    if not (infinite or grads.isna().any()):
        return []
    layer = str(frame["layer"].iloc[0])
    message = f"the gradients at {layer} are not finite (inf/NaN) at init: the loss is not"
    suggestion = (
        "the forward pass makes inf/NaN before any training: check the model's forward and "
        "its inputs (a division by zero, a log of 0, an overflowing scale)"
    )
    return [Finding("exploding_gradients", (layer,), {}, math.inf, message, suggestion)]


def _ends(hid: pd.DataFrame) -> tuple[str, str]:
    return str(hid["layer"].iloc[0]), str(hid["layer"].iloc[-1])


def _activation_findings(frame: pd.DataFrame) -> list[Finding]:
    hid = activation_layers(frame)
    if len(hid) < 2:
        return []
    r = summary(frame)["activation_std_ratio"]
    first, last = _ends(hid)
    values = {
        "ratio": r,
        "first_std": hid["post_std"].iloc[0],
        "last_std": hid["post_std"].iloc[-1],
    }
    overflow = hidden_layers(frame)
    overflow = overflow[overflow["nonfinite_frac"] > 0]
    if r < ACTIVATION_RATIO_LOW:
        msg = (
            f"activation std falls from {values['first_std']:.3g} ({first}) to "
            f"{values['last_std']:.3g} ({last}): ratio {r:.3g} < {ACTIVATION_RATIO_LOW:.3g}"
        )
        return [
            _make("vanishing_activations", (first, last), values, ACTIVATION_RATIO_LOW, msg, frame)
        ]
    if values["first_std"] == 0 and not len(overflow):
        return []  # nothing to grow from: constant units, for dead_units and symmetry to name
    if r > ACTIVATION_RATIO_HIGH or len(overflow):
        where = f"; non-finite values from {overflow['layer'].iloc[0]} on" if len(overflow) else ""
        limit = f" > {ACTIVATION_RATIO_HIGH:.3g}" if r > ACTIVATION_RATIO_HIGH else ""
        msg = (
            f"activation std grows from {values['first_std']:.3g} ({first}) to "
            f"{values['last_std']:.3g} ({last}): ratio {r:.3g}{limit}{where}"
        )
        layers = (first, last) if not len(overflow) else (first, str(overflow["layer"].iloc[0]))
        return [_make("exploding_activations", layers, values, ACTIVATION_RATIO_HIGH, msg, frame)]
    return []


def _gradient_findings(frame: pd.DataFrame) -> list[Finding]:
    hid = gradient_layers(frame)
    s = summary(frame)
    g, w = s["grad_std_ratio"], s["weight_grad_norm_ratio"]
    values = {"grad_std_ratio": g, "weight_grad_norm_ratio": w}
    layers = _ends(hid) if len(hid) >= 2 else (str(frame["layer"].iloc[0]),)
    silent = math.isnan(g) and len(hid) and bool((hid["pre_grad_std"] == 0).all())
    ratio = "0/0 (dL/dz is 0 at every hidden layer)" if silent else f"{g:.3g}"
    rule = (
        f"dL/dz std first/last hidden {ratio} (limits {GRADIENT_RATIO_LOW:.3g}, "
        f"{GRADIENT_RATIO_HIGH:.3g})"
    )
    if not math.isnan(w):  # NaN: no first layer outside the residual branches (_first_layer)
        rule += (
            f"; weight-gradient norm first/output {w:.3g} "
            f"(limits {WEIGHT_GRAD_RATIO_LOW:.0e}, {WEIGHT_GRAD_RATIO_HIGH:.0e})"
        )
    bad = ~frame["pre_grad_std"].apply(_not_inf) | ~frame["weight_grad_norm"].apply(_not_inf)
    first, out_grad = _first_layer(frame), float(frame["pre_grad_std"].iloc[-1])
    none_arrive = (
        len(frame) >= 2 and first is not None and first["pre_grad_std"] == 0 and out_grad > 0
    )
    if g < GRADIENT_RATIO_LOW or w < WEIGHT_GRAD_RATIO_LOW or none_arrive:
        cut = (
            f"; dL/dz is exactly 0 at {first['layer']} (underflow, or a zero weight "
            f"cuts it) while the output layer's is {out_grad:.3g}"
            if none_arrive
            else ""
        )
        msg = f"back-propagated gradients shrink toward the input: {rule}{cut}"
        return [_make("vanishing_gradients", layers, values, GRADIENT_RATIO_LOW, msg, frame)]
    if g > GRADIENT_RATIO_HIGH or w > WEIGHT_GRAD_RATIO_HIGH or bad.any():
        extra = f"; non-finite gradients at {frame['layer'][bad].iloc[0]}" if bad.any() else ""
        msg = f"back-propagated gradients grow toward the input: {rule}{extra}"
        return [_make("exploding_gradients", layers, values, GRADIENT_RATIO_HIGH, msg, frame)]
    return []


def _not_inf(value: float) -> bool:
    return not math.isinf(value)


def _fraction_findings(frame: pd.DataFrame) -> list[Finding]:
    hid = hidden_layers(frame)
    hid = hid[~(_branch_last(hid) & (hid["weight_std"] == 0))]  # zeroed on purpose: not dead
    if "activation" in hid:  # no nonlinearity to die or saturate: a zero there is by design
        hid = hid[hid["activation"] != "linear"]  # (a SkipInit gate of 0 on a branch's end)
    out = []
    for name, column, limit, what in (
        ("saturation", "saturated_frac", SATURATION_FRAC, "saturated activation values"),
        ("dead_units", "dead_frac", DEAD_FRAC, "units zero for every sample"),
    ):
        hit = hid[hid[column] > limit]
        if len(hit):
            values = dict(zip(hit["layer"].astype(str), hit[column].astype(float), strict=True))
            worst = max(values, key=values.get)
            msg = (
                f"{len(hit)} layer(s) with more than {limit:.0%} {what} "
                f"(worst: layer {worst}, {values[worst]:.1%})"
            )
            out.append(_make(name, tuple(values), values, limit, msg, frame))
    return out


def _symmetry_findings(frame: pd.DataFrame) -> list[Finding]:
    hid = _symmetry_candidates(frame)
    dup = hid[["weight_duplicates", "act_duplicates"]].fillna(0).max(axis=1)
    hit = hid[dup > 0]
    if not len(hit):
        return []
    values = dict(zip(hit["layer"].astype(str), dup[dup > 0].astype(float), strict=True))
    total = int(sum(values.values()))
    msg = (
        f"{total} unit(s) in {len(hit)} layer(s) have incoming weights or activations "
        "identical to another unit's: where their outgoing weights are identical too they "
        "get identical gradients and stay copies of one unit (a layer feeding distinct "
        "weights, such as the output layer's, drifts apart but reads the copies below)"
    )
    return [_make("symmetry", tuple(values), values, 0.0, msg, frame)]


def _make(
    name: str,
    layers: tuple[str, ...],
    values: dict[str, float],
    threshold: float,
    message: str,
    frame: pd.DataFrame,
) -> Finding:
    values = {k: float(v) for k, v in values.items()}
    advice = suggestions.suggest(name, frame, layers)
    return Finding(name, tuple(layers), values, float(threshold), message, advice)
