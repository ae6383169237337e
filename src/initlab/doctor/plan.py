"""``recommend``: an initialization plan for any model, one scheme per layer, with reasons.

The rule for each Linear/Conv layer depends on the nonlinearity its output meets next
(found by :func:`initlab.probe.trace.find_activations`, the tracer the probe uses too):

============================  ================================================================
activation                    scheme
============================  ================================================================
relu                          ``he_normal`` — Var(W) = 2/fan_in keeps the signal's second moment
leaky_relu (slope a)          ``kaiming_normal(a=a, nonlinearity='leaky_relu')``
elu, gelu, silu, softplus     He-style ``variance_scaling(scale=g²)`` with the numeric gain g
selu                          ``lecun_normal`` — self-normalizing networks need Var(W) = 1/fan_in
tanh, sigmoid, softsign       ``glorot_normal`` — balances forward and backward variances
                              (Glorot & Bengio 2010); for tanh it sits on the edge of chaos
linear, hidden                ``orthogonal`` — keeps every singular value at 1 (Saxe et al. 2014)
linear, output layer          ``glorot_uniform`` — Keras's default, logits of order 1
unknown                       ``lsuv`` — no rule fits: measure and fix the variance with data
RNN (LSTM, GRU, RNN, cells)   ``glorot_uniform`` — Keras' kernel default for sigmoid/tanh
                              gates, with an orthogonal recurrent kernel and an LSTM
                              forget-gate bias of 1 (:mod:`initlab.compound_layers`)
multi-head attention          ``glorot_uniform`` on query, key and value, each E × E: Keras'
                              default, scores q·k/√d of order 1
============================  ================================================================

A Linear whose output the forward pass cuts into pieces that partition its output features
(a fused ``c_attn``: ``q, k, v = c_attn(x).split(d, 2)``; :mod:`initlab.probe.split`) keeps
its rule's scheme, drawn once per row span with the fans of that span's ``[b - a, in]``
block, as ``in_proj_weight`` is (:attr:`PlanEntry.spans`), wherever that changes the law:
Glorot's fan_out (one ``[3d, d]`` draw: Var = 2/(d + 3d), half of each map's 2/(d + d)) and
orthogonal's scale (each ``d × d`` block of one semi-orthogonal ``[3d, d]`` matrix has mean
squared singular value 1/3). A fan_in scheme's law is the same either way: no spans.

Gains come from :func:`initlab.gain` — the same code the diagnosis uses for its suggestions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from torch import Tensor, nn

from initlab.arguments import as_inputs, check_module, check_runs
from initlab.compound_layers import COMPOUND, RowSpans, is_attention_output, span_fans, spanned
from initlab.computed_weights import computed_by
from initlab.config import AS_BUILT
from initlab.coverage import initializable_layers, weight_layers
from initlab.embedding_init import tied_tables
from initlab.errors import UnknownNameError
from initlab.initializers import fans_of_module, parse
from initlab.layer_order import output_layer_name
from initlab.preserve import preserved
from initlab.probe.trace import NOT_RUN, activations_of, first_calls
from initlab.residual import Structure, find_structure
from initlab.theory import critical_sigma_w2, gain, prescribed_gain

NORMALIZED = (
    "a normalization follows (BatchNorm, LayerNorm): the forward signal does not depend on "
    "this init's scale, the effective learning rate does (gradients scale as 1/scale)"
)
"""Said of a layer whose output a norm rescales before its activation."""
HE_FAMILY = ("elu", "gelu", "silu", "softplus")
GATES, ATTENTION = "gates", "softmax"
COMPOUND_ACTIVATIONS = (GATES, ATTENTION)
"""The activation column of RNN and attention entries (not Linear/Conv layers)."""
GLOROT_FAMILY = ("tanh", "sigmoid", "softsign")
FROZEN = "frozen (requires_grad=False): this scheme re-draws weights that never train"
"""Said of a layer whose parameters the model freezes (:func:`recommend`'s note)."""


@dataclass(frozen=True)
class PlanEntry:
    """One layer's recommendation."""

    layer: str
    type: str
    activation: str
    scheme: str
    reason: str
    role: str = ""
    """Its place in the residual structure: ``branch k, layer j of m``, ``skip projection
    (branch k)``, ``output``; ``""`` elsewhere (see :meth:`Structure.role_of`)."""
    spans: RowSpans = ()
    """A fused projection's weight rows ``((a, b), ...)``, each drawn with its own fans
    (fan_in = in, fan_out = b - a); ``()``: one draw over the whole weight."""


@dataclass
class Plan(Mapping[str, str]):
    """Layer name → initializer spec; pass it to :func:`initlab.initialize` to apply it
    (with ``data=batch`` when a layer's scheme is ``lsuv``).

    ``residual``: the model's residual structure (branches, depth L, how it was found) and
    ``residual_rule`` the rule applied with the plan: ``initialize(model, plan)`` applies it
    after the layers' schemes, and ``str(plan)`` lists what it does to each parameter.
    ``parameters``: filled by :func:`initlab.plan`, one row per parameter (``name, shape,
    role, rule, rms_before, rms_after, std_before, std_after``)."""

    entries: list[PlanEntry] = field(default_factory=list)
    residual: Structure | None = None
    residual_rule: str = "none"
    residual_reason: str = ""
    """Why the doctor added ``residual_rule`` to its plan (``""``: the user chose it, or
    none; :func:`initlab.doctor.residual_fix.with_residual_rule`)."""
    parameters: list[dict[str, Any]] = field(default_factory=list)
    output: str | None = None
    """The output layer's name (the last Linear/Conv layer the forward calls), when known."""

    def __getitem__(self, layer: str) -> str:
        """The layer's scheme spec, its row spans written in (:meth:`specs`): one form,
        so ``dict(plan)`` and the plan itself initialize alike."""
        for entry in self.entries:
            if entry.layer == layer:
                return spanned(entry.scheme, entry.spans) if entry.spans else entry.scheme
        raise KeyError(layer)

    def __iter__(self) -> Iterator[str]:
        return (e.layer for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def needs_data(self) -> bool:
        return any(e.scheme.startswith("lsuv") for e in self.entries)

    @property
    def spans(self) -> dict[str, RowSpans]:
        """Layer → its row spans, for the fused projections drawn per span
        (:func:`initlab.initialize` reads them)."""
        return {e.layer: e.spans for e in self.entries if e.spans}

    def specs(self) -> dict[str, str]:
        """Layer → scheme spec with its row spans written in (``"orthogonal per rows 0:16,
        16:32, 32:48"``): the plan as a JSON-able mapping ``initialize`` and the doctor's
        snippet take as they take the plan itself."""
        return dict(self.items())

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([e.__dict__ for e in self.entries])
        return frame if self.spans else frame.drop(columns="spans", errors="ignore")

    def to_json(self) -> dict[str, Any]:
        """``{"parameters": [...], "residual": {"branches", "depth", "method", "notes"},
        "layers": [...]}``: the form ``initlab plan --out`` writes."""
        residual = self.residual.to_dict() if self.residual else None
        if residual is not None:
            residual["rule"] = self.residual_rule
        layers = [e.__dict__ for e in self.entries]
        return {"parameters": list(self.parameters), "residual": residual, "layers": layers}

    def residual_rows(self) -> list[dict[str, Any]]:
        """The :attr:`parameters` rows the residual rule changed or added (their ``rule``
        ends in ``(rule)``: ``he_normal, then zeroed (fixup)``, ``added = 0 (fixup)``)."""
        if self.residual_rule == "none":
            return []
        return [r for r in self.parameters if r["rule"].endswith(f"({self.residual_rule})")]

    def __str__(self) -> str:
        """The layer table, then, under a residual rule, one line per parameter it sets."""
        text = self.to_frame().to_string(index=False) if self.entries else "(no layers)"
        if self.residual_rule == "none":
            return text
        rows = self.residual_rows()
        text += f"\n{self.rule_line()}:"
        width = max((len(r["name"]) for r in rows), default=0)
        lines = [f"  {r['name']:<{width}}  {r['rule']}" for r in rows]
        return "\n".join([text, *(lines or ["  (initialize(model, plan) applies it)"])])

    def rule_line(self) -> str:
        """``residual rule depth_scaled, L = 16 branches, after the schemes`` and why
        (``""`` without a rule)."""
        if self.residual_rule == "none":
            return ""
        depth = f", L = {self.residual.depth} branches" if self.residual is not None else ""
        why = f" ({self.residual_reason})" if self.residual_reason else ""
        return f"residual rule {self.residual_rule}{depth}, after the schemes{why}"

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)


FAMILIES = ("variance", "orthogonal")


def recommend(model: nn.Module, inputs: Tensor, *, family: str = "variance") -> Plan:
    """Propose a scheme for every Linear/Conv layer of ``model`` from the activation that
    follows it in a forward pass of ``inputs`` (and Keras' rules for RNNs and attention).

    ``family="variance"``: the rules of the module docstring. ``family="orthogonal"``:
    ``orthogonal(gain=g)`` for Linear layers and ``delta_orthogonal(gain=g)`` for
    convolutions (Xiao et al. 2018) with the activation's gain g (:func:`orthogonal_gain`);
    ``lsuv`` where no rule fits.

    A note names the frozen (``requires_grad=False``) parameters the plan would re-draw,
    and their layers' reasons say so: applied, the plan replaces weights kept fixed
    (pretrained ones, say) with random ones that never train
    (:func:`initlab.model_notes.note_frozen_plan`).
    """
    from initlab.model_notes import note_frozen_plan

    plan = plan_for(model, inputs, family)
    frozen = set(note_frozen_plan(model, plan))
    plan.entries = [
        dataclasses.replace(e, reason=f"{e.reason}; {FROZEN}") if e.layer in frozen else e
        for e in plan.entries
    ]
    return plan


def plan_for(model: nn.Module, inputs: Tensor, family: str = "variance") -> Plan:
    """:func:`recommend`'s plan, without its note on frozen parameters: the doctor's
    candidate plans (:mod:`initlab.doctor.candidates`) are trained on models it builds; the
    plan it shows (:func:`initlab.doctor.workflow.examine`) is :func:`recommend`'s."""
    model = check_module(model, "recommend")
    inputs = as_inputs(model, inputs)
    check_runs(model, inputs, "recommend")
    if family not in FAMILIES:
        raise UnknownNameError("plan family", family, FAMILIES)
    with preserved(model, "current"):  # reading a parametrized weight may write its state
        return _plan_of(model, inputs, family)


def _plan_of(model: nn.Module, inputs: Tensor, family: str) -> Plan:
    """:func:`recommend`'s plan of ``model`` (checked) on ``inputs``."""
    layers = initializable_layers(model)
    calls = first_calls(model, inputs, layers)
    found, slopes = activations_of(calls)
    normed = {name for name, call in calls.items() if call is not None and call.normalized}
    last = output_layer_name(model, inputs)
    structure = find_structure(model, inputs)
    entries = []
    modules = dict(model.named_modules())
    for name, module in weight_layers(model):
        if isinstance(module, COMPOUND) or is_attention_output(name, modules):
            entry = compound_entry(name, module, structure.role_of(name))
            if not isinstance(module, COMPOUND) and found.get(name) not in (None, "unknown"):
                entry = dataclasses.replace(entry, activation=found[name])  # out_proj's own
            entries.append(entry)
            continue
        activation, is_output = found[name], name == last
        if tied := tied_tables(model, name):
            why = f"tied to {tied[0]}: an embedding table, kept with the model's other tables "
            why += "(initialize's embedding_init sets them all)"
            entries.append(
                PlanEntry(
                    name, type(module).__name__, activation, AS_BUILT, why, structure.role_of(name)
                )
            )
            continue
        if by := computed_by(module):  # no scheme can set it: initialize would refuse one
            why = f"its weight is computed by {by}: no scheme can set it; initialize the "
            why += "layer before wrapping it"
            role = structure.role_of(name)
            entries.append(PlanEntry(name, type(module).__name__, activation, AS_BUILT, why, role))
            continue
        if family == "orthogonal" and activation not in ("unknown", NOT_RUN) and not is_output:
            scheme, reason = orthogonal_rule(module, activation, slopes.get(name))
        else:
            scheme, reason = rule_for(activation, slopes.get(name), is_output=is_output)
        if name in normed and not is_output:
            reason += f"; {NORMALIZED}"
        cut = law_spans(module, scheme, calls[name].spans if calls.get(name) else None)
        reason += fused_reason(module, cut)
        role = structure.role_of(name)
        entries.append(
            PlanEntry(name, type(module).__name__, activation, scheme, reason, role, cut)
        )
    return Plan(entries, residual=structure, output=last)


def law_spans(module: nn.Module, scheme: str, spans: RowSpans | None) -> RowSpans:
    """``spans`` when drawing ``scheme`` once per row span ``[a, b)`` (fans ``(in, b - a)``)
    changes the law of some entry: its std differs from the whole weight's draw (fans
    ``(in, out)``), as for Glorot's fan_out and orthogonal's ``gain/sqrt(max(rows, cols))``;
    ``()`` otherwise (a fan_in scheme, LSUV, a layer left as built)."""
    if not spans or scheme == AS_BUILT or scheme.startswith("lsuv"):
        return ()
    init, shape = parse(scheme), tuple(module.weight.shape)
    whole = init.std(fans_of_module(module), shape=shape)
    parts = [
        init.std(fans, shape=(b - a, *shape[1:]))
        for (a, b), fans in zip(spans, span_fans(shape, spans), strict=True)
    ]
    return spans if any(part != whole for part in parts) else ()


def fused_reason(module: nn.Module, spans: RowSpans) -> str:
    """What the plan's reason adds for a fused projection (``""`` without spans)."""
    if not spans:
        return ""
    rows = ", ".join(f"{a}:{b}" for a, b in spans)
    names = "q, k, v: " if len(spans) == 3 else ""
    return (
        f"; fused projection ({names}{len(spans)} spans of rows {rows}, each its own fans: "
        f"fan_in {module.weight.shape[1]}, fan_out its rows), as MultiheadAttention's in_proj"
    )


def compound_entry(name: str, module: nn.Module, role: str) -> PlanEntry:
    """An RNN's or attention's entry: ``glorot_uniform`` with Keras' rules for the rest."""
    if not isinstance(module, (nn.MultiheadAttention, *COMPOUND)):  # its out_proj
        reason = (
            "attention output projection (read inside MultiheadAttention): Glorot, Keras' "
            "default for attention kernels"
        )
        return PlanEntry(name, type(module).__name__, ATTENTION, "glorot_uniform", reason, role)
    if isinstance(module, nn.MultiheadAttention):
        reason = (
            "attention: query, key and value each E × E with Glorot's variance, Keras' "
            "default: scores q·k/√d of order 1"
        )
        return PlanEntry(name, type(module).__name__, ATTENTION, "glorot_uniform", reason, role)
    forget = isinstance(module, (nn.LSTM, nn.LSTMCell))
    reason = (
        "recurrent: Keras' default, Glorot for the sigmoid/tanh gates, orthogonal recurrent "
        "kernel (Saxe et al. 2014)"
        + (", forget-gate bias 1 (Jozefowicz et al. 2015)" if forget else "")
    )
    return PlanEntry(name, type(module).__name__, GATES, "glorot_uniform", reason, role)


def orthogonal_gain(activation: str, slope: float | None = None) -> float:
    """The gain of an orthogonal init before ``activation``: sqrt(2/(1+a²)) for (leaky)
    ReLU, else :func:`initlab.theory.prescribed_gain` (the edge of chaos for tanh and
    linear, sigma_w² = 1: dynamical isometry, Pennington et al. 2017)."""
    if activation == "leaky_relu":
        a = 0.01 if slope is None else slope
        return (2 / (1 + a * a)) ** 0.5
    return prescribed_gain(activation)


def orthogonal_rule(module: nn.Module, activation: str, slope: float | None) -> tuple[str, str]:
    """``orthogonal``/``delta_orthogonal`` with :func:`orthogonal_gain` for one layer."""
    g = orthogonal_gain(activation, slope)
    is_conv = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
    groups = int(getattr(module, "groups", 1))
    per = f", one per group of {groups}" if groups > 1 else ""
    if is_conv and module.out_channels >= module.in_channels:  # per group: out/g >= in/g
        kernel = "x".join(map(str, module.kernel_size))
        return (
            f"delta_orthogonal(gain={g:.4g})",
            f"{activation} conv: an orthogonal matrix at the centre of the {kernel} kernel{per}, "
            f"gain {g:.4g}: the convolution is norm-preserving at init (Xiao et al. 2018)",
        )
    return (
        f"orthogonal(gain={g:.4g})",
        f"{activation}: every singular value equals the gain {g:.4g}{per} (Saxe et al. 2014)",
    )


def rule_for(activation: str, slope: float | None = None, *, is_output: bool) -> tuple[str, str]:
    """``(scheme spec, reason)`` for a layer followed by ``activation``."""
    if activation == NOT_RUN:
        return AS_BUILT, "not run on the probe batch (a branch it did not take): left as built"
    if activation == "relu":
        return "he_normal", "ReLU zeroes half the signal: Var(W) = 2/fan_in (gain √2) keeps it"
    if activation == "leaky_relu":
        a = 0.01 if slope is None else slope
        return (
            f"kaiming_normal(a={a:g}, nonlinearity='leaky_relu')",
            f"leaky ReLU (slope {a:g}): gain sqrt(2/(1+a²)) = {(2 / (1 + a * a)) ** 0.5:.4f}",
        )
    if activation in HE_FAMILY:
        g = gain(activation)
        return (
            f"variance_scaling(scale={g * g:.4f}, mode='fan_in', distribution='truncated_normal')",
            f"{activation}: He-style with its gain {g:.4f} = 1/sqrt(E[phi(z)²])",
        )
    if activation == "selu":
        return "lecun_normal", "SELU self-normalizes only with Var(W) = 1/fan_in (LeCun)"
    if activation in GLOROT_FAMILY:
        edge = critical_sigma_w2(activation, 0.0) if activation == "tanh" else None
        note = f"; for tanh σ_w² = {edge:.3g} is the edge of chaos" if edge else ""
        return (
            "glorot_normal",
            f"{activation} saturates: Glorot balances forward and backward variance{note}",
        )
    if activation == "linear":
        if is_output:
            return "glorot_uniform", "output layer: Keras's default keeps the outputs of order 1"
        return (
            "orthogonal",
            "linear layer: orthogonal keeps every singular value at 1 (Saxe et al.)",
        )
    return "lsuv", "no rule for what follows this layer: LSUV fixes its output variance with data"
