"""How a scheme sets layers that hold several weight matrices: RNNs and attention.

Keras semantics, since Keras is the framework whose layers name a scheme per matrix:

* **RNNs** (``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and their cells). The scheme sets each input
  kernel ``weight_ih`` (``[gates·H, in]``: fan_in = in, fan_out = gates·H, Keras'
  ``kernel_initializer`` on its ``[in, gates·H]`` kernel) and the LSTM projection ``weight_hr``;
  the recurrent kernel ``weight_hh`` gets ``orthogonal`` (gain 1), Keras'
  ``recurrent_initializer`` default, drawn over the whole ``[gates·H, H]`` kernel as Keras draws
  its ``[H, gates·H]`` one. (Saxe et al. 2014's argument, that an orthogonal recurrence neither
  shrinks nor grows the state, holds as such for the plain RNN: an LSTM's four ``H × H`` gate
  blocks of one orthogonal draw have mean squared singular value 1/4, a GRU's three 1/3, as with
  the fused projections below.) PyTorch adds two biases, ``b_ih + b_hh``: ``b_ih`` takes the
  bias policy and ``b_hh`` is 0, so their sum is Keras' single bias; an LSTM's forget-gate slice
  of ``b_ih`` (the second of the gates i, f, g, o) is then 1 (Keras' ``unit_forget_bias``,
  Jozefowicz et al. 2015). A GRU's ``b_hh`` takes the policy too (Keras' ``reset_after`` GRU has
  a recurrent bias of its own). The bias policy ``torch_default`` gives what the RNN's
  constructor does instead: both biases U(±1/sqrt(H)), no forget-gate 1.
* **Multi-head attention** (``nn.MultiheadAttention``). Its packed input projection
  ``in_proj_weight`` ``[3E, E]`` is three ``E × E`` maps (query, key, value), each set with
  its own fans (fan_in = E, or kdim/vdim for the separate ``k_proj_weight`` and
  ``v_proj_weight``), as Keras' ``MultiHeadAttention`` sets its query, key and value kernels;
  ``in_proj_bias`` takes the bias policy (``torch_default``: 0, as the attention's
  constructor sets it and ``out_proj``'s). ``out_proj`` is a Linear layer and set as one;
  ``bias_k``/``bias_v`` (``add_bias_kv``) stay as built.

A data-dependent scheme (``lsuv``) gives these matrices its orthonormal start only: its
rescaling pass runs on Linear/Conv outputs.

**Fused projections** (a Linear whose output the model cuts into pieces: nanoGPT's
``q, k, v = c_attn(x).split(d, 2)``) are set like ``in_proj_weight``, one draw per row span
``[a, b)`` with the fans of its own ``[b - a, in]`` block (fan_in = in, fan_out = b - a), when
a plan names the spans (:func:`spanned`; the doctor finds them by tracing:
:mod:`initlab.probe.split`). One draw over the whole ``[3d, d]`` matrix would give Glorot
fan_out = 3d (half the variance of ``d × d`` maps: 2/(d + 3d) against 2/(d + d)) and an
orthogonal draw whose ``d × d`` blocks have mean squared singular value 1/3, not 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import initlab.initializers as initializers
from initlab.config import AS_BUILT
from initlab.errors import InitlabError
from initlab.initializers import Fans, Initializer

COMPOUND = (nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention)
"""Layer types whose several weight matrices a scheme sets (see the module docstring)."""
RECURRENT_SCHEME = "orthogonal"
"""The recurrent kernel's init whatever the scheme: Keras' ``recurrent_initializer``."""
RECURRENT = " (recurrent: orthogonal)"
"""Added to an RNN's scheme in its record row."""
_TORCH_DEFAULT_BIAS = "torch_default_bias"
RowSpans = tuple[tuple[int, int], ...]
"""Row spans ``((a₀, b₀), (a₁, b₁), ...)`` of a weight ``[rows, ...]``, tiling ``[0, rows)``."""
PER_ROWS = " per rows "
"""Joins a scheme to its row spans in a plan's text form (:func:`spanned`)."""
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(frozen=True)
class Draw:
    """One fill: ``init`` with ``fans`` on ``parameter`` (rows ``rows[0]:rows[1]`` only, when
    given). ``rule`` (on a parameter's first draw) says what set the parameter."""

    parameter: str
    init: Initializer
    fans: Fans
    rows: tuple[int, int] | None = None
    rule: str = ""

    def target(self, module: nn.Module) -> Tensor:
        """The tensor this draw fills (a view of the rows, for a range)."""
        data = getattr(module, self.parameter).data
        return data if self.rows is None else data[self.rows[0] : self.rows[1]]


def compound_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs of ``model``'s RNNs and multi-head attentions."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, COMPOUND)]


def is_attention_output(name: str, modules: Mapping[str, nn.Module]) -> bool:
    """Whether layer ``name`` is the ``out_proj`` of a multi-head attention (``modules``:
    the model's named modules). The attention reads its weight itself
    (``F.multi_head_attention_forward``) and never calls it, so no hook on it fires: not a
    probe's, not LSUV's pass, not fixup's input bias."""
    parent, _, attr = name.rpartition(".")
    return attr == "out_proj" and isinstance(modules.get(parent), nn.MultiheadAttention)


def parameters_set(module: nn.Module) -> set[str]:
    """The names of ``module``'s own parameters a scheme sets (the others stay as built)."""
    own = {n for n, _ in module.named_parameters(recurse=False)}
    if isinstance(module, nn.MultiheadAttention):
        return own & {*_ATTENTION_WEIGHTS, "in_proj_bias"}
    return own if isinstance(module, (nn.RNNBase, nn.RNNCellBase)) else set()


def draws(module: nn.Module, init: Initializer, bias_init: Initializer | None) -> list[Draw]:
    """Every fill ``init`` (matrices) and ``bias_init`` (biases; ``None``: keep them) make on
    an RNN or attention ``module``, in order: what :func:`init_compound` runs and what
    ``initlab doctor``'s snippet writes as ``torch.nn.init`` calls."""
    if getattr(init.sampler, "data_dependent", False):
        init = initializers.get(RECURRENT_SCHEME)  # LSUV's orthonormal start, no rescaling
    if isinstance(module, nn.MultiheadAttention):
        return _attention_draws(module, init, bias_init)
    return _recurrent_draws(module, init, bias_init)


def init_compound(
    name: str,
    module: nn.Module,
    init: Initializer,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """Run :func:`draws` on ``module`` and return its record row; the row's ``parameters``
    maps each parameter a scheme sets to what set it (``kept`` for a kept bias)."""
    plan = draws(module, init, bias_init)
    for draw in plan:
        draw.init(draw.target(module), generator, fans=draw.fans)
    rules = dict.fromkeys(sorted(parameters_set(module)), "kept")
    rules.update({d.parameter: d.rule for d in plan if d.rule})
    first = plan[0]
    weight = getattr(module, first.parameter)
    return {
        "layer": name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, weight.shape)),
        "scheme": repr(init) + ("" if isinstance(module, nn.MultiheadAttention) else RECURRENT),
        "fan_in": first.fans.fan_in,
        "fan_out": first.fans.fan_out,
        "expected_std": first.init.std(first.fans, shape=first.target(module).shape),
        "std": float(weight.detach().std()),
        "bias": _bias_text(rules),
        "parameters": rules,
    }


def kept_row(name: str, module: nn.Module, scheme: str) -> dict[str, Any]:
    """The record row of a layer left as built (``scheme``: what the plan called it)."""
    chosen = parameters_set(module)
    names = [n for n, _ in module.named_parameters(recurse=False) if n in chosen]
    weights = [n for n in names if "weight" in n] or names
    shape = getattr(module, weights[0]).shape if weights else ()
    return {
        "layer": name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, shape)),
        "scheme": scheme,
        "bias": "kept",
        "parameters": dict.fromkeys(names, "kept"),
    }


def _recurrent_draws(
    module: nn.Module, init: Initializer, bias_init: Initializer | None
) -> list[Draw]:
    recurrent = initializers.get(RECURRENT_SCHEME)
    hidden = module.hidden_size
    plan = []
    for pname, param in module.named_parameters(recurse=False):
        fans = initializers.fans_of_tensor(param)
        if pname.startswith("weight_hh"):
            plan.append(Draw(pname, recurrent, fans, rule=repr(recurrent)))
        elif pname.startswith("weight"):  # weight_ih, and an LSTM's projection weight_hr
            plan.append(Draw(pname, init, fans, rule=repr(init)))
        elif bias_init is not None:
            plan += _recurrent_bias_draws(module, pname, bias_init, Fans(hidden, hidden))
    return plan


def _recurrent_bias_draws(
    module: nn.Module, pname: str, bias_init: Initializer, fans: Fans
) -> list[Draw]:
    """``--bias torch_default``: the RNN's own U(±1/sqrt(H)) on both biases. Otherwise
    Keras' single bias as PyTorch's two: ``b_ih`` (and a GRU's ``b_hh``) from the policy,
    another ``b_hh`` 0, and an LSTM's forget-gate rows of ``b_ih`` then 1."""
    mode = _mode(module)
    if bias_init.name == _TORCH_DEFAULT_BIAS:
        return [Draw(pname, bias_init, fans, rule=repr(bias_init))]
    if pname.startswith("bias_hh") and mode != "GRU":
        zeros = initializers.get("zeros")
        return [Draw(pname, zeros, fans, rule="zeros (b_ih carries the bias)")]
    if mode == "LSTM" and pname.startswith("bias_ih"):
        hidden, ones = module.hidden_size, initializers.get("ones")
        return [
            Draw(pname, bias_init, fans, rule=f"{bias_init!r}, forget gate 1"),
            Draw(pname, ones, fans, rows=(hidden, 2 * hidden)),
        ]
    return [Draw(pname, bias_init, fans, rule=repr(bias_init))]


def _mode(module: nn.Module) -> str:
    """``"LSTM"``, ``"GRU"`` or ``"RNN"`` for a layer or a cell."""
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    return "GRU" if isinstance(module, (nn.GRU, nn.GRUCell)) else "RNN"


def _attention_draws(
    module: nn.MultiheadAttention, init: Initializer, bias_init: Initializer | None
) -> list[Draw]:
    """Query, key and value maps each with its fans (a packed ``in_proj_weight``'s thirds
    as :func:`fused_draws` draws row blocks); ``in_proj_bias`` in the same rows."""
    thirds = _thirds(3 * module.embed_dim)
    if module.in_proj_weight is not None:
        fans = span_fans(tuple(module.in_proj_weight.shape), thirds)
        rule = f"{init!r} (query, key, value each)"
        plan = _row_block_draws("in_proj_weight", init, thirds, fans, rule)
    else:
        names = _ATTENTION_WEIGHTS[1:]
        fans = [initializers.fans_of_tensor(getattr(module, n)) for n in names]
        plan = [Draw(n, init, f, rule=repr(init)) for n, f in zip(names, fans, strict=True)]
    if module.in_proj_bias is not None and bias_init is not None:
        bias_init, why = attention_bias(bias_init)
        plan += _row_block_draws("in_proj_bias", bias_init, thirds, fans, why)
    return plan


def attention_bias(bias_init: Initializer) -> tuple[Initializer, str]:
    """The policy for a multi-head attention's biases (``in_proj_bias`` and ``out_proj``'s)
    and the record's words for it: ``torch_default`` is what the layer's constructor sets,
    which for these is 0 (``nn.MultiheadAttention._reset_parameters``), not nn.Linear's
    U(±1/sqrt(fan_in))."""
    if bias_init.name == _TORCH_DEFAULT_BIAS:
        return initializers.get("zeros"), "zeros (as nn.MultiheadAttention sets them)"
    return bias_init, repr(bias_init)


def _row_block_draws(
    parameter: str, init: Initializer, spans: RowSpans, fans: list[Fans], rule: str
) -> list[Draw]:
    """``init`` on each row block ``spans[i]`` of ``parameter`` with ``fans[i]``, in order;
    the first draw carries the record's ``rule``."""
    return [
        Draw(parameter, init, f, rows=span, rule="" if i else rule)
        for i, (span, f) in enumerate(zip(spans, fans, strict=True))
    ]


def _thirds(rows: int) -> list[tuple[int, int]]:
    third = rows // 3
    return [(0, third), (third, 2 * third), (2 * third, rows)]


def spanned(scheme: str, spans: RowSpans) -> str:
    """``"orthogonal per rows 0:16, 16:32, 32:48"``: ``scheme`` drawn once per row span, the
    form a plan's ``{layer: scheme}`` mapping (and its JSON) carries spans in."""
    return scheme + PER_ROWS + ", ".join(f"{a}:{b}" for a, b in spans)


def unspanned(spec: str) -> tuple[str, RowSpans | None]:
    """``(scheme, spans)`` of a :func:`spanned` spec (``(spec, None)`` for any other)."""
    scheme, found, text = spec.rpartition(PER_ROWS) if isinstance(spec, str) else ("", "", "")
    if not found:
        return spec, None
    try:
        spans = tuple((int(a), int(b)) for a, _, b in (t.partition(":") for t in text.split(",")))
    except ValueError:
        raise InitlabError(f"{spec!r}: row spans are written a:b, c:d, ...") from None
    return scheme, spans


def planned_spans(scheme: object, plan: Mapping[str, Initializer | None]) -> dict[str, RowSpans]:
    """The row spans a per-layer ``scheme`` names (its :func:`spanned` specs: a doctor's
    plan reads as those, and so does its ``dict``), for the layers whose resolved ``plan``
    init draws numbers: not kept (``None``, ``default``) and not data-dependent (LSUV
    rescales the whole layer)."""
    if not isinstance(scheme, Mapping):
        return {}
    found = {n: spans for n, s in scheme.items() if (spans := unspanned(s)[1])}
    return {
        n: spans
        for n, spans in found.items()
        if (init := plan.get(n)) is not None
        and init.name != AS_BUILT  # as the constructor built it
        and not getattr(init.sampler, "data_dependent", False)
    }


def check_spans(name: str, spans: RowSpans, rows: int) -> None:
    """Refuse ``spans`` that do not tile ``[0, rows)`` in order: layer ``name``'s weight
    rows must each be drawn exactly once."""
    ends = [0, *(b for _, b in spans)]
    tiled = all(a == end and b > a for (a, b), end in zip(spans, ends, strict=False))
    if not spans or not tiled or ends[-1] != rows:
        got = ", ".join(f"{a}:{b}" for a, b in spans)
        raise InitlabError(f"{name}: row spans {got} do not tile its {rows} output rows")


def span_fans(shape: tuple[int, ...], spans: RowSpans) -> list[Fans]:
    """The fans of each row block ``[b - a, *shape[1:]]`` of a weight of ``shape``: for a
    Linear ``[out, in]``, fan_in = in and fan_out = b - a (the tensor rule on the block)."""
    return [initializers.fans_of_tensor((b - a, *shape[1:])) for a, b in spans]


def fused_draws(
    module: nn.Linear, init: Initializer, bias_init: Initializer | None, spans: RowSpans
) -> list[Draw]:
    """A fused Linear's fills: ``init`` on each row block of ``weight`` with that block's
    fans, then ``bias_init`` on the same rows of ``bias`` with the same fans (as
    ``in_proj_weight`` and ``in_proj_bias``); what :func:`init_fused` runs and the doctor's
    snippet writes."""
    fans = span_fans(tuple(module.weight.shape), spans)
    plan = _row_block_draws("weight", init, spans, fans, spanned(repr(init), spans))
    if module.bias is not None and bias_init is not None:
        plan += _row_block_draws("bias", bias_init, spans, fans, repr(bias_init))
    return plan


def init_fused(
    name: str,
    module: nn.Linear,
    init: Initializer,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
    spans: RowSpans,
) -> dict[str, Any]:
    """Run :func:`fused_draws` on ``module`` and return its record row (``fan_in``,
    ``fan_out`` and ``expected_std`` of the first span's block)."""
    check_spans(name, spans, module.weight.shape[0])
    plan = fused_draws(module, init, bias_init, spans)
    for draw in plan:
        draw.init(draw.target(module), generator, fans=draw.fans)
    first, bias = plan[0], getattr(module, "bias", None)
    return {
        "layer": name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, module.weight.shape)),
        "scheme": first.rule,
        "fan_in": first.fans.fan_in,
        "fan_out": first.fans.fan_out,
        "expected_std": init.std(first.fans, shape=first.target(module).shape),
        "std": float(module.weight.detach().std()),
        "bias": "none" if bias is None else (repr(bias_init) if bias_init else "kept"),
    }


def _bias_text(rules: dict[str, str]) -> str:
    """The row's bias column: the rule of the first input bias (``none`` without one)."""
    return next((r for n, r in rules.items() if n.startswith(("bias_ih", "in_proj_bias"))), "none")


__all__ = [
    "COMPOUND",
    "Draw",
    "compound_layers",
    "draws",
    "fused_draws",
    "init_compound",
    "init_fused",
    "is_attention_output",
    "kept_row",
    "parameters_set",
    "planned_spans",
    "spanned",
    "unspanned",
]
