"""Apply an initialization scheme to every weight layer of any ``nn.Module``.

Linear and convolution layers get the scheme (the last one called ``output_init``'s); RNNs and
multi-head attention get it on their input matrices with Keras' rules for the rest
(orthogonal recurrent kernels, an LSTM forget-gate bias of 1; see
:mod:`initlab.compound_layers`). Fans come from the *module* (``in_features``/
``out_features``; channels per group × kernel size for convolutions, transposed ones
included), not from the raw weight tensor, which gets transposed convolutions backwards
(pytorch#7865) and over-counts grouped ones. Pass ``fans="tensor"`` to reproduce
``torch.nn.init``'s tensor rule exactly. Modules no scheme sets (embeddings, norms, bare
parameters) are never touched: they are listed in :attr:`InitRecord.skipped`.

The scheme ``default`` leaves a layer exactly as its constructor (or the user's factory)
built it, weights and biases: ``initialize(model, "default")`` changes nothing and still
returns the per-layer record, so PyTorch's own defaults compare like any other scheme.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

import initlab.compound_layers as packed
import initlab.initializers as initializers
from initlab.arguments import as_inputs, check_batch, check_module, check_runs
from initlab.compound_layers import (
    COMPOUND,
    attention_bias,
    compound_layers,
    init_compound,
    is_attention_output,
    kept_row,
)
from initlab.computed_weights import refuse_computed
from initlab.config import AS_BUILT, output_scheme
from initlab.coverage import initializable_layers, skip_row, skipped_modules, weight_layers
from initlab.embedding_init import (
    EMBEDDINGS,
    TABLE_ROW,
    note_planned_tables,
    readouts_of_tables,
    record_embeddings,
    table_readout_row,
    tensors_set_by,
    zero_tied_padding,
)
from initlab.errors import InitlabError, UnknownNameError, closest_name, option
from initlab.init_record import InitRecord, layer_row, set_bias
from initlab.initializers import Initializer, fans_of_module, fans_of_tensor
from initlab.layer_order import output_layer
from initlab.notes import note
from initlab.renamed import INIT_KEYWORDS, renamed_keywords
from initlab.residual import apply_residual
from initlab.residual.plan import residual_rule
from initlab.residual.structure import Structure
from initlab.tied_layers import drawing_order, first_holders, tied_row

BIAS_POLICIES = ("zeros", "keep", "torch_default")

Scheme = str | Initializer
SchemeSpec = Scheme | Mapping[str, Scheme]


@renamed_keywords(INIT_KEYWORDS)
def initialize(
    model: nn.Module,
    scheme: SchemeSpec,
    *,
    bias: str | float | Initializer = "zeros",
    output_init: Scheme | None = None,
    generator: torch.Generator | None = None,
    fans: str = "module",
    data: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    residual_init: str | None = None,
    embedding_init: Scheme | None = None,
) -> InitRecord:
    """Initialize ``model`` in place and return a record of what was done.

    ``scheme``: an initializer name/spec (``"he_normal"``, ``"orthogonal(gain=1.41)"``), an
    :class:`~initlab.initializers.Initializer`, or a mapping ``{layer name: scheme}`` (layers
    not in it are left alone; a fused projection's row spans, from a doctor's plan or a spec
    ``"orthogonal per rows 0:64, 64:128, 128:192"``, give one draw per span with its own fans;
    a scheme alone runs no forward pass and draws each weight whole). ``output_init``: the
    scheme for the last Linear/Conv layer the forward calls (``None`` or ``"same"``: the same
    as the others; ``"keep"``: leave it as it is) — Keras's Dense default is
    ``glorot_uniform``, and the classic lab initializes only the hidden layers.
    ``scheme="default"`` keeps the whole model as built: output layer and biases included.
    ``bias``: ``"zeros"``, ``"keep"``, ``"torch_default"`` (U(±1/sqrt(fan_in)), what
    ``nn.Linear`` does; an attention's biases 0, as ``nn.MultiheadAttention`` sets them), a
    number (constant), or an initializer. ``generator`` makes the
    result reproducible; without one the global RNG is used, as ``torch.nn.init`` does.
    ``fans``: ``"module"`` (``in_features``/``out_features``; a convolution's
    ``(channels / groups) · prod(kernel_size)``, a transposed one read the right way round,
    its fan_in divided by ``prod(stride)``) or ``"tensor"`` (``torch.nn.init``'s rule,
    ``fan_in = shape[1] · r``, ``fan_out = shape[0] · r``, ``r = prod(shape[2:])``).
    ``data``: a batch of inputs for data-dependent schemes (``"lsuv"``, see
    :mod:`initlab.lsuv`), which refuse to run without it. ``residual_init``: a rule of
    :data:`initlab.residual.RESIDUAL_RULES` applied to every residual branch afterwards
    (``zero_last_layer``, ``zero_last_norm``, ``skipinit``, ``fixup``, ``depth_scaled``;
    see :mod:`initlab.residual.rules`); ``None``: a plan's own ``residual_rule`` (what
    :func:`initlab.plan` recorded), else ``none``; ``data`` also lets
    it find the branches of a model ``torch.fx`` cannot trace, from one run on it.
    ``embedding_init``: the scheme for every ``nn.Embedding`` table (``None`` or
    ``"default"``: as built; fan_in = embedding_dim; see :mod:`initlab.embedding_init`), a
    table tied to a readout (``head.weight = embed.weight``) included: a scheme sets only
    that readout's bias, a plan naming the readout draws it.
    The keywords are named as in :func:`initlab.compare` and on the command line; the old
    names ``output_layer``, ``residual`` and ``embedding`` still work, with a warning.
    """
    model = check_module(model, "initialize")
    if isinstance(data, (tuple, list)):
        data = type(data)(as_inputs(model, d) for d in data)
    else:
        data = as_inputs(model, data)
    if fans not in ("module", "tensor"):
        raise InitlabError(f"fans must be 'module' or 'tensor', got '{fans}'")
    layers = initializable_layers(model)
    rule = residual_rule(scheme, residual_init)
    plan = _resolve_plan(scheme, model, output_scheme(output_init), data)
    spans = packed.planned_spans(scheme, plan)  # fused projections: one draw per row span
    _refuse_computed(model, plan)
    tables_kept = embedding_init in (None, AS_BUILT)  # else init_embeddings says who sets them
    owned = {} if isinstance(scheme, Mapping) else readouts_of_tables(model, plan, tables_kept)
    plan.update(dict.fromkeys(owned))  # their weights are tables: the embedding rule's
    note_planned_tables(model, plan)
    _check_data(model, data, plan)
    bias_init = resolve_bias(bias)
    record = InitRecord(skipped=skipped_modules(model))
    _init_weights(model, plan, spans, bias_init, generator, fans, record, owned)
    set_now = tensors_set_by(model, record.rows, kept=("kept", AS_BUILT, TABLE_ROW))
    zero_tied_padding(model, set_now)
    embeddings = _as_initializer(embedding_init) if embedding_init is not None else None
    record_embeddings(model, embeddings, generator, record, set_now)
    _run_data_dependent(model, layers, plan, data, record)
    planned = getattr(scheme, "residual", None)  # a plan's branches (maybe found by a run)
    planned = planned if isinstance(planned, Structure) and data is None else None
    record.after_residual(model, apply_residual(model, rule, structure=planned, example=data))
    if not weight_layers(model) and not any(isinstance(m, EMBEDDINGS) for m in model.modules()):
        note(f"initialize: {type(model).__name__} has no weight layer a scheme sets: nothing set")
    return record


def _init_weights(
    model: nn.Module,
    plan: dict[str, Initializer | None],
    spans: Mapping[str, packed.RowSpans],
    bias_init: Initializer | None,
    generator: torch.Generator | None,
    fans: str,
    record: InitRecord,
    owned: dict[str, str],
) -> None:
    """Set every weight layer ``plan`` names (a fused projection with row ``spans``: one
    draw per span, :func:`initlab.compound_layers.init_fused`) and record it; a readout
    tied to an embedding table (``owned``: layer → table) gets its bias only. A weight
    shared by several layers (``decoder.weight = encoder.weight``) is drawn once
    (:func:`initlab.tied_layers.drawing_order`, :func:`~initlab.tied_layers.tied_row`);
    drawn again by each, the last draw won and the first layers' records described a tensor
    no longer there."""
    drawn: dict[int, tuple[str, dict[str, Any]]] = {}  # id(weight) → first layer, its row
    modules = dict(model.named_modules())
    layers = weight_layers(model)
    for name, module in drawing_order(layers, plan):
        init = plan.get(name)
        weight = getattr(module, "weight", None)
        if name in owned:
            record.rows.append(table_readout_row(name, module, owned[name], bias_init, generator))
        elif name in plan and init is not None and id(weight) in drawn:
            first, row = drawn[id(weight)]
            record.rows.append(
                tied_row(
                    name, module, init, first, row, bias_init, generator, init.name == AS_BUILT
                )
            )
        elif name not in plan:
            record.skipped.append(skip_row(name, module, "not in the plan"))
        elif isinstance(module, COMPOUND):
            record.rows.append(_init_compound(name, module, init, bias_init, generator))
        elif name in spans:
            row = packed.init_fused(name, module, init, bias_init, generator, spans[name])
            record.rows.append(row)
        else:
            own_bias = bias_init
            if bias_init is not None and is_attention_output(name, modules):
                own_bias = attention_bias(bias_init)[0]  # torch_default: 0, as MHA sets it
            record.rows.append(_init_layer(name, module, init, own_bias, generator, fans))
            if init is not None and weight is not None:
                drawn[id(weight)] = (name, record.rows[-1])
    place = {name: i for i, (name, _) in enumerate(layers)}  # the record in module order
    record.rows.sort(key=lambda row: place.get(row["layer"], len(place)))


def _refuse_computed(model: nn.Module, plan: dict[str, Initializer | None]) -> None:
    """A layer the plan sets whose weight is computed from other tensors (parametrized, or
    a hook-based ``weight_norm``/``spectral_norm``) → one line, before any weight changes:
    filling it would change nothing (:func:`initlab.computed_weights.refuse_computed`)."""
    for name, init in plan.items():
        if init is not None and init.name != AS_BUILT:
            refuse_computed(name, model.get_submodule(name))


def _check_data(
    model: nn.Module, data: torch.Tensor | tuple | list | None, plan: dict[str, Initializer | None]
) -> None:
    """When a scheme of the ``plan`` reads data (LSUV), one line before any weight changes
    for a batch it cannot use: empty, NaN/inf, or a single tensor of a shape the model cannot
    take. (Data given only to find residual branches is not read for its values: every run
    of a comparison passes its first batch, which the preflight checked already.)"""
    reads = any(getattr(i.sampler, "data_dependent", False) for i in plan.values() if i)
    if data is None or not reads:
        return
    for batch in data if isinstance(data, (tuple, list)) else (data,):
        check_batch(batch, "initialize")
    if isinstance(data, torch.Tensor):
        check_runs(model, data, "initialize")


def _run_data_dependent(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    plan: dict[str, Initializer | None],
    data: torch.Tensor | tuple[torch.Tensor, ...] | None,
    record: InitRecord,
) -> None:
    """The data pass of data-dependent schemes (LSUV), after every layer got its start; an
    attention's ``out_proj`` keeps its start (the attention reads it, no pass sees it)."""
    modules = dict(model.named_modules())
    pending = [
        (name, module, plan[name].sampler)
        for name, module in first_holders(drawing_order(layers, plan))
        if plan.get(name) is not None
        and getattr(plan[name].sampler, "data_dependent", False)
        and not is_attention_output(name, modules)
    ]
    if not pending:
        return
    if data is None:
        scheme = plan[pending[0][0]].name
        how = option("--data with the model's inputs", f"initialize(model, '{scheme}', data=batch)")
        raise InitlabError(f"'{scheme}' needs data: {how}")
    from initlab.lsuv import lsuv_pass

    report = lsuv_pass(model, data, pending)
    modules = dict(layers)
    rescaled = {f"tied to {layer}" for layer in report}
    for row in record.rows:
        if row["layer"] in report:
            row["rescalings"], row["output_var"] = report[row["layer"]]
        if row["layer"] in report or row["scheme"] in rescaled:  # a holder of a rescaled weight
            row["expected_std"] = None  # set by the data, not by a distribution
            row["std"] = float(modules[row["layer"]].weight.detach().std())


def _resolve_plan(
    scheme: SchemeSpec, model: nn.Module, output_init: Scheme | None, data: Any
) -> dict[str, Initializer | None]:
    """Map each layer name to its initializer (``None``: keep this layer as it is); the
    output layer is the last Linear/Conv layer the forward calls (found with ``data`` when
    ``torch.fx`` cannot trace the model), RNNs and attention are hidden layers."""
    layers, compound = initializable_layers(model), compound_layers(model)
    _refuse_unused_output(scheme, output_init)
    if isinstance(scheme, Mapping):
        known = {n for n, _ in layers + compound}
        if named := [k for k in scheme if not isinstance(k, str)]:
            example = next(iter(sorted(known)), "fc")
            raise InitlabError(
                f"a plan maps layer names (str, as model.named_modules() gives them) to "
                f"schemes, got the key {named[0]!r}; e.g. {{'{example}': 'he_normal'}}"
            )
        unknown = sorted(set(scheme) - known)
        if unknown:
            raise InitlabError(f"the plan names layers the model lacks: {', '.join(unknown)}")
        return {n: _as_initializer(packed.unspanned(s)[0]) for n, s in scheme.items()}
    hidden = _as_initializer(scheme)
    plan: dict[str, Initializer | None] = {name: hidden for name, _ in layers + compound}
    if layers and output_init is not None and hidden.name != AS_BUILT:
        last = _output_layer(model, data)
        plan[last] = None if output_init == "keep" else _as_initializer(output_init)
    return plan


def _output_layer(model: nn.Module, data: Any) -> str | None:
    """The output layer (:func:`initlab.layer_order.output_layer`); a note when it is
    the registration order's guess: the forward could not be traced, and no ``data`` was
    given to run it (a model that registers its head first gets ``output_init`` on a hidden
    layer then)."""
    last, guessed = output_layer(model, data)
    if guessed:
        why = (
            "cannot be found without running it (torch.fx cannot trace it); pass "
            f"{option('--data', 'data=a batch of inputs')} to find it"
            if data is None
            else "could not be found"
        )
        note(
            f"output_init went to `{last}`, the last layer registered: the layer "
            f"{type(model).__name__}.forward calls last {why}"
        )
    return last


def _refuse_unused_output(scheme: SchemeSpec, output_init: Scheme | None) -> None:
    """One line for an ``output_init`` the scheme leaves no room for (it was ignored): a
    plan or mapping names every layer's scheme itself, and ``default`` keeps the whole
    model as built, its output layer included."""
    if output_init is None:
        return
    name = option("--output-init", "output_init")
    if isinstance(scheme, Mapping):
        raise InitlabError(
            f"{name} has no effect with a plan: it names each layer's scheme itself; leave "
            f"{name} out, or set the output layer's entry in the plan"
        )
    if isinstance(scheme, (str, Initializer)) and _as_initializer(scheme).name == AS_BUILT:
        raise InitlabError(
            f"{name} has no effect with 'default', which keeps the whole model as built; to "
            "set the output layer alone pass {its name: scheme} as the scheme"
        )


def _as_initializer(scheme: Scheme) -> Initializer:
    if isinstance(scheme, Initializer):
        return scheme
    if isinstance(scheme, str):
        return initializers.parse(scheme)
    raise InitlabError(f"an initialization scheme must be a name or an Initializer, got {scheme!r}")


def resolve_bias(bias: str | float | Initializer) -> Initializer | None:
    """The bias initializer of a policy (``None``: keep the bias as it is); a number, also
    as a string (``"0.1"``, as the command line gives it), is a constant."""
    if isinstance(bias, Initializer):
        return bias
    if isinstance(bias, bool):
        raise InitlabError(f"bias must be one of {BIAS_POLICIES}, a number or an initializer")
    if isinstance(bias, str):
        with contextlib.suppress(ValueError):
            bias = float(bias)
    if isinstance(bias, (int, float)):
        return initializers.get("constant", value=float(bias))
    if bias == "keep":
        return None
    if bias == "torch_default":
        return initializers.get("torch_default_bias")
    try:
        return _as_initializer(bias)
    except UnknownNameError as exc:
        if exc.name != bias:  # a bad name inside a spec such as "uniform(x=1)" stays as is
            raise
        hint = closest_name(bias, [*BIAS_POLICIES, *exc.choices])
        suggestion = f"; did you mean '{hint}'?" if hint else ""
        raise InitlabError(
            f"unknown bias '{bias}'{suggestion} (valid: {', '.join(BIAS_POLICIES)}, a number, "
            "or an initializer spec such as 'constant(value=0.01)': see initlab list)"
        ) from None


def _init_layer(
    name: str,
    module: nn.Module,
    init: Initializer | None,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
    rule: str,
) -> dict[str, Any]:
    fans = fans_of_module(module) if rule == "module" else fans_of_tensor(module.weight)
    if init is not None and init.name == AS_BUILT:
        bias_init = None  # the layer as built: its bias too
    if init is not None:
        init(module.weight, generator, fans=fans)
    if init is None:
        bias_init = None  # a layer the plan keeps keeps its bias too
    bias_text = set_bias(module, bias_init, generator, fans)
    scheme, std = (
        (repr(init), init.std(fans, shape=module.weight.shape)) if init else ("kept", None)
    )
    return layer_row(name, module, scheme, fans, std, bias_text)


def _init_compound(
    name: str,
    module: nn.Module,
    init: Initializer | None,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """An RNN or attention layer (:mod:`initlab.compound_layers`); as built under ``default``."""
    if init is None or init.name == AS_BUILT:
        return kept_row(name, module, repr(init) if init is not None else "kept")
    return init_compound(name, module, init, bias_init, generator)
