"""``init_snippet.py``: the winning initialization as plain ``torch.nn.init`` calls.

:func:`make_snippet` writes a standalone module with ``apply_init(model, generator=None)``:
it first checks that ``model``'s parameter names and shapes are those of the model it was
made for (a clear ``ValueError`` otherwise), then draws every initialized parameter by
name with the law initlab uses, the constants (stds, bounds, gains) computed from the
*module's* fans as initlab does:

=============================  =============================================================
initlab sampler                ``torch.nn.init`` call
=============================  =============================================================
variance scaling, truncated    ``trunc_normal_(p, 0, σ₀, -2σ₀, 2σ₀)``, σ₀ = sqrt(var)/0.8796
variance scaling, normal       ``normal_(p, 0, sqrt(var))``
variance scaling, uniform      ``uniform_(p, -sqrt(3 var), sqrt(3 var))``
xavier_* / kaiming_*           ``normal_``/``uniform_`` with the scheme's std
random_normal / _uniform       ``normal_`` / ``uniform_``; truncated_normal: ``trunc_normal_``
orthogonal(gain)               ``orthogonal_(p, gain)``
delta_orthogonal(gain)         ``zeros_`` + an ``orthogonal_`` matrix at the centre tap
lsuv                           ``orthogonal_(p, s)``, s the scale LSUV reached on your data
zeros / ones / constant        ``zeros_`` / ``ones_`` / ``constant_``
default (as built)             nothing: the layer keeps what its constructor drew
=============================  =============================================================

A fused projection a plan draws per row span (nanoGPT's ``c_attn``: :mod:`initlab.doctor.plan`)
gets one call per span on ``p[...][a:b]`` with that span's fans (fan_in = in, fan_out = b - a),
the rows of ``MultiheadAttention``'s ``in_proj_weight`` likewise. With an embedding scheme
(``--embedding-init``) every ``nn.Embedding`` table is drawn after the layers, as
``initialize(..., embedding_init=...)`` draws it; a readout tied to a table under a scheme
gets its bias only (the table is the embedding rule's). The snippet imports only
``torch`` and ``math``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from initlab.apply import resolve_bias
from initlab.compound_layers import (
    COMPOUND,
    Draw,
    attention_bias,
    check_spans,
    draws,
    fused_draws,
    is_attention_output,
    planned_spans,
    spanned,
    unspanned,
)
from initlab.coverage import weight_layers
from initlab.embedding_init import EMBEDDINGS
from initlab.errors import option
from initlab.initializers import Initializer, fans_of_module, fans_of_tensor, get, parse
from initlab.initializers.basic import TRUNCATED_STD
from initlab.tied_layers import drawing_order

HEADER = '''"""Initialization chosen by {who} ({name}).

{message}

Paste into your project and call ``apply_init(model)`` after building the model; pass a
``torch.Generator`` for reproducible draws. Made for one model: it refuses any other.
"""

import math

import torch

EXPECTED = {expected}


def check_model(model):
    """Raise ValueError unless ``model`` has exactly the parameters this init was made for."""
    got = {{name: tuple(p.shape) for name, p in model.named_parameters()}}
    missing = sorted(set(EXPECTED) - set(got))
    extra = sorted(set(got) - set(EXPECTED))
    shapes = sorted(n for n in set(got) & set(EXPECTED) if got[n] != EXPECTED[n])
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {{missing[:3]}}")
        if extra:
            parts.append(f"unexpected {{extra[:3]}}")
        if shapes:
            n = shapes[0]
            parts.append(f"{{n}} has shape {{got[n]}}, expected {{EXPECTED[n]}}")
        raise ValueError(
            "apply_init was made for a different model: " + "; ".join(parts)
        )


@torch.no_grad()
def apply_init(model, generator=None):
    """Initialize ``model`` in place (see the module docstring); returns it."""
    check_model(model)
    # every name of a tied parameter (head.weight = embed.weight is listed once otherwise)
    p = dict(model.named_parameters(remove_duplicate=False))
    g = generator
'''


def make_snippet(
    model: nn.Module,
    schemes: Mapping[str, str],
    *,
    name: str,
    message: str,
    bias: str = "zeros",
    reference: nn.Module | None = None,
    residual: list[str] | None = None,
    tables: str | None = None,
    readouts: Mapping[str, str] | None = None,
) -> str:
    """The source of ``init_snippet.py`` for ``model`` initialized by ``schemes`` (layer →
    scheme spec; ``default`` keeps a layer; a fused projection's row spans, from a doctor's
    :class:`~initlab.doctor.plan.Plan` or a spec ``"orthogonal per rows 0:16, 16:32, 32:48"``,
    give one draw per row range, as :func:`initlab.initialize` makes them). ``reference``:
    the model initialized by initlab, whose weights give the scale LSUV reached;
    ``residual``: the lines of :func:`residual_lines`, appended after the per-layer draws;
    ``tables``: the embedding scheme (``embedding_init``) every embedding table is drawn
    from, after the layers, with fan_in = D and fan_out = V and a ``padding_idx`` row zeroed
    (``None`` or ``default``: as built); ``readouts``: ``{layer: table}`` for readouts whose
    weight is an embedding table that a scheme leaves to the embedding rule
    (:func:`initlab.embedding_init.readouts_of_tables`): only their bias is drawn."""
    expected = {n: tuple(p.shape) for n, p in model.named_parameters()}
    who = option("`initlab doctor --trials`", "`initlab.trials(...)`")
    header = HEADER.format(who=who, name=name, message=message, expected=_dict_literal(expected))
    lines = [header]
    ref = dict(reference.named_modules()) if reference is not None else {}
    plan = {n: _drawn(s) for n, s in schemes.items()}
    spans = planned_spans(schemes, plan)
    modules, drawn = dict(model.named_modules()), {}  # drawn: id(weight) → its layer
    for layer, module in drawing_order(weight_layers(model), plan):
        scheme = unspanned(schemes.get(layer, "default"))[0]
        kept = _kept_lines(layer, module, scheme, readouts or {}, drawn, bias, modules)
        if kept is not None:
            lines += kept
            continue
        lines.append(
            f"    # {layer}: {spanned(scheme, spans[layer]) if layer in spans else scheme}"
        )
        if isinstance(module, COMPOUND):
            lines += _compound_lines(layer, module, scheme, bias)
        elif layer in spans:  # a fused projection: one draw per row span, as initlab's
            check_spans(layer, spans[layer], module.weight.shape[0])
            cut = fused_draws(module, parse(scheme), resolve_bias(bias), spans[layer])
            lines += _draw_lines(layer, module, cut)
        else:
            lines += _weight_lines(layer, module, scheme, ref.get(layer))
            lines += _bias_lines(layer, module, bias, modules) if _has_bias(module, bias) else []
    lines += table_lines(model, tables) if tables not in (None, "default") else []
    lines += residual or []
    lines.append("    return model\n")
    return "\n".join(lines)


def _kept_lines(
    layer: str,
    module: nn.Module,
    scheme: str,
    readouts: Mapping[str, str],
    drawn: dict[int, str],
    bias: str,
    modules: Mapping[str, nn.Module],
) -> list[str] | None:
    """The lines of a layer whose weight is not drawn here: kept as built (``default``), an
    embedding table's (a scheme's tied readout), or tied to a layer drawn before (as
    :func:`initlab.initialize`: drawn once); the last two get their bias. ``None`` for a
    layer to draw, whose weight ``drawn`` then records."""
    if scheme == "default":
        return [f"    # {layer}: kept as built"]
    if layer in readouts:  # its weight is a table's, set with the tables
        said = f"    # {layer}: weight is {readouts[layer]}.weight, an embedding table"
    else:
        first = drawn.setdefault(id(getattr(module, "weight", None)), layer)
        if first == layer or isinstance(module, COMPOUND):
            return None
        said = f"    # {layer}: weight tied to {first}'s, drawn there"
    return [said, *(_bias_lines(layer, module, bias, modules) if _has_bias(module, bias) else [])]


def table_lines(model: nn.Module, scheme: str) -> list[str]:
    """Every embedding table of ``model`` drawn from ``scheme`` as
    :func:`initlab.embedding_init.init_embeddings` draws it: fans of the ``[V, D]`` tensor
    (fan_in = D, fan_out = V), then the ``padding_idx`` row zeroed."""
    init, lines = parse(scheme), []
    for name, module in model.named_modules():
        if not isinstance(module, EMBEDDINGS):
            continue
        target, shape = f"p[{_qualified(name, 'weight')!r}]", tuple(module.weight.shape)
        lines.append(f"    # {name}: embedding table, {scheme}")
        calls = draw_calls(init, target, fans_of_tensor(module.weight), shape)
        lines += [f"    {call}" for call in calls]
        if (padding := getattr(module, "padding_idx", None)) is not None:
            lines.append(f"    {target}[{padding}].zero_()")
    return lines


def _qualified(layer: str, parameter: str) -> str:
    """The parameter's name in ``model.named_parameters(remove_duplicate=False)`` (the model
    itself: ``layer == ""``); a tied parameter has one such name per module that holds it."""
    return f"{layer}.{parameter}" if layer else parameter


def _dict_literal(expected: Mapping[str, tuple]) -> str:
    body = "".join(f"\n    {n!r}: {s!r}," for n, s in expected.items())
    return "{" + body + "\n}"


def _weight_lines(layer: str, module: nn.Module, scheme: str, ref: nn.Module | None) -> list[str]:
    fans, shape = fans_of_module(module), tuple(module.weight.shape)
    target = f"p[{_qualified(layer, 'weight')!r}]"
    if scheme.startswith("lsuv"):
        orth = get("orthogonal").std(fans, shape=shape)  # per group on a grouped conv
        scale = float(ref.weight.detach().std()) / orth if ref is not None else 1.0
        return [f"    {c}" for c in draw_calls(get("orthogonal", gain=scale), target, fans, shape)]
    return [f"    {call}" for call in draw_calls(parse(scheme), target, fans, shape)]


def _drawn(scheme: str) -> Initializer | None:
    """The initializer of a layer's ``scheme`` (``None`` for ``default``, kept as built)."""
    bare = unspanned(scheme)[0]
    return None if bare == "default" else parse(bare)


def _compound_lines(layer: str, module: nn.Module, scheme: str, bias: str) -> list[str]:
    """An RNN's or attention's draws (:func:`initlab.compound_layers.draws`) as calls."""
    return _draw_lines(layer, module, draws(module, parse(scheme), resolve_bias(bias)))


def _draw_lines(layer: str, module: nn.Module, plan: list[Draw]) -> list[str]:
    """Each :class:`~initlab.compound_layers.Draw` as calls on its parameter (its rows)."""
    lines = []
    for draw in plan:
        target = f"p[{_qualified(layer, draw.parameter)!r}]"
        if draw.rows is not None:
            target += f"[{draw.rows[0]}:{draw.rows[1]}]"
        shape = tuple(draw.target(module).shape)
        lines += [f"    {call}" for call in draw_calls(draw.init, target, draw.fans, shape)]
    return lines


def draw_calls(init: Initializer, target: str, fans, shape: tuple[int, ...]) -> list[str]:
    """The ``torch.nn.init`` statements that draw ``target`` (of ``shape``) from ``init``'s
    law."""
    elementwise = _elementwise_call(init.sampler, target, fans)
    if elementwise is not None:
        return [elementwise]
    matrix = _matrix_calls(init.sampler, target, fans, shape)
    if matrix is not None:
        return matrix
    sd = init.std(fans, shape=shape) or 0.0
    return [  # no plain torch.nn.init law for this scheme: the same mean and std
        f"# {init!r} has no torch.nn.init equivalent: a normal law with its std",
        f"torch.nn.init.normal_({target}, 0.0, {sd!r}, generator=g)",
    ]


def _elementwise_call(s: object, target: str, fans) -> str | None:
    """The one statement drawing every entry of ``target`` independently from sampler
    ``s``'s law (uniform on ``±sqrt(3 var)``, normal, normal truncated at 2σ, constant);
    ``None`` for a sampler that is not elementwise."""
    kind = type(s).__name__
    if kind == "LayerBias":
        b = 1 / math.sqrt(fans.fan_in) if fans.fan_in > 0 else 0.0
        return f"torch.nn.init.uniform_({target}, {-b!r}, {b!r}, generator=g)"
    if kind == "VarianceScaling":
        var = s.variance(fans)
        if s.distribution == "truncated_normal":
            sd = math.sqrt(var) / TRUNCATED_STD
            return f"torch.nn.init.trunc_normal_({target}, 0.0, {sd!r}, {-2 * sd!r}, {2 * sd!r}, g)"
        if s.distribution == "untruncated_normal":
            return f"torch.nn.init.normal_({target}, 0.0, {math.sqrt(var)!r}, generator=g)"
        bound = math.sqrt(3 * var)
        return f"torch.nn.init.uniform_({target}, {-bound!r}, {bound!r}, generator=g)"
    if kind in ("Xavier", "Kaiming"):
        sd = s.std(fans)
        if s.distribution == "normal":
            return f"torch.nn.init.normal_({target}, 0.0, {sd!r}, generator=g)"
        bound = math.sqrt(3.0) * sd
        return f"torch.nn.init.uniform_({target}, {-bound!r}, {bound!r}, generator=g)"
    if kind == "Normal":
        return f"torch.nn.init.normal_({target}, {s.mean!r}, {s.stddev!r}, generator=g)"
    if kind == "Uniform":
        return f"torch.nn.init.uniform_({target}, {s.low!r}, {s.high!r}, generator=g)"
    if kind == "TruncatedAtTwo":
        lo, hi = s.mean - 2 * s.stddev, s.mean + 2 * s.stddev
        return f"torch.nn.init.trunc_normal_({target}, {s.mean!r}, {s.stddev!r}, {lo!r}, {hi!r}, g)"
    if kind == "TruncNormal":
        return (
            f"torch.nn.init.trunc_normal_({target}, {s.mean!r}, {s.stddev!r}, {s.a!r}, {s.b!r}, g)"
        )
    if kind == "Constant":
        return f"torch.nn.init.constant_({target}, {s.value!r})"
    return None


def _matrix_calls(s: object, target: str, fans, shape: tuple[int, ...]) -> list[str] | None:
    """The statements drawing ``target`` from an orthogonal sampler ``s`` (a grouped
    convolution's groups each their own orthogonal block; delta-orthogonal: zeros with an
    orthogonal centre tap), dirac's identity taps or identity's ``gain · I``; ``None`` for
    any other sampler."""
    kind = type(s).__name__
    if kind == "Identity":  # gain · I: its std is no law to draw from
        return [f"torch.nn.init.eye_({target})", f"{target}.mul_({s.gain!r})"]
    if kind == "Dirac":  # the convolution's own groups where the scheme names none
        groups = s.groups if s.groups != 1 else getattr(fans, "groups", 1)
        return [f"torch.nn.init.dirac_({target}, groups={groups})"]
    if kind not in ("Orthogonal", "DeltaOrthogonal"):
        return None
    groups = _groups(fans, shape)
    rows = shape[0] // groups if shape else 0
    loop, pad = (f"for k in range({groups}):", "    ") if groups > 1 else ("", "")
    part = f"[k * {rows} : (k + 1) * {rows}]" if groups > 1 else ""  # each group's own rows
    if kind == "Orthogonal":  # drawn in float32 (QR has no bf16/fp16 kernel), then copied
        block = (rows, *shape[1:])
        draw = f"torch.nn.init.orthogonal_(torch.empty{block!r}, gain={s.gain!r}, generator=g)"
        return [line for line in (loop, f"{pad}{target}{part}.copy_({draw})") if line]
    centre = ", ".join(str((k - 1) // 2) for k in shape[2:])
    lines = [
        f"torch.nn.init.zeros_({target})",
        loop,
        f"{pad}centre = torch.empty({rows}, {shape[1]})",
        f"{pad}torch.nn.init.orthogonal_(centre, gain={s.gain!r}, generator=g)",
        f"{pad}{target}{part}[:, :, {centre}] = centre",
    ]
    return [line for line in lines if line]


def _groups(fans: object, shape: tuple[int, ...]) -> int:
    """A grouped convolution's groups (:attr:`initlab.initializers.Fans.groups`), whose
    blocks of rows the orthogonal schemes draw one by one; 1 for anything else."""
    groups = getattr(fans, "groups", 1)
    return groups if shape and shape[0] % groups == 0 else 1


def _has_bias(module: nn.Module, bias: str) -> bool:
    """Whether the snippet sets ``module``'s bias: it has one, and the policy is not keep."""
    return getattr(module, "bias", None) is not None and bias != "keep"


def _bias_lines(
    layer: str, module: nn.Module, bias: str, modules: Mapping[str, nn.Module]
) -> list[str]:
    """The bias's draw under the policy ``bias`` (an attention's ``out_proj`` under
    ``torch_default``: 0, as :func:`initlab.compound_layers.attention_bias` sets it)."""
    target = f"p[{_qualified(layer, 'bias')!r}]"
    init = resolve_bias(bias)
    if init is not None and is_attention_output(layer, modules):
        init = attention_bias(init)[0]
    if bias == "zeros" or (init is not None and init.name == "zeros"):
        return [f"    torch.nn.init.zeros_({target})"]
    shape = tuple(module.weight.shape)
    return [f"    {c}" for c in draw_calls(init, target, fans_of_module(module), shape)]


def residual_lines(plain: nn.Module, ruled: nn.Module) -> list[str]:
    """What a residual rule changed after the per-layer draws, found by comparing
    ``plain`` (the per-layer init alone) with ``ruled`` (the same draws, then the rule):
    a parameter that became zero → ``zeros_``; one scaled by a constant c → ``mul_(c)``;
    anything else → a normal law with its std."""
    before = {n: p.detach() for n, p in plain.named_parameters()}
    lines = []
    for name, after in ruled.named_parameters():
        after, old = after.detach(), before.get(name)
        if old is None or torch.equal(old, after):
            continue
        target = f"p[{name!r}]"
        if not after.any():
            lines.append(f"    torch.nn.init.zeros_({target})  # residual rule")
            continue
        ratio = float(after.norm() / old.norm()) if old.any() else math.nan
        if ratio == ratio and torch.allclose(after, old * ratio, rtol=1e-4, atol=1e-7):
            lines.append(f"    {target}.mul_({ratio!r})  # residual rule")
        else:
            sd = float(after.std()) if after.numel() > 1 else 0.0
            lines.append(f"    torch.nn.init.normal_({target}, 0.0, {sd!r}, generator=g)")
    return lines
