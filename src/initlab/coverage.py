"""Which of a model's parameters an init scheme sets, and which it leaves as built.

A scheme (:func:`initlab.initialize`) sets the weight layers: Linear and (transposed)
convolution layers (:data:`INITIALIZABLE`), and the matrices of RNNs and multi-head
attention (:mod:`initlab.compound_layers`); an embedding init sets the embedding tables no
weight layer shares. Everything else with parameters of its own (norms, bare parameters,
attention's ``bias_k``/``bias_v``) stays as the factory built it: :func:`untouched_weights`
names it for the notes of ``compare`` and ``doctor``.
"""

from __future__ import annotations

import torch
from torch import nn

from initlab.compound_layers import COMPOUND, compound_layers, parameters_set
from initlab.embedding_init import EMBEDDINGS
from initlab.norm_layers import is_norm
from initlab.residual.structure import LAYERS as WEIGHT_LAYERS

INITIALIZABLE = WEIGHT_LAYERS
"""Linear and (transposed) convolution layers of any dimension."""


def initializable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear/Conv (name, module) pairs :func:`initialize` acts on, in registration
    order (the output layer is the last one *called*:
    :func:`initlab.layer_order.output_layer_name`)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, INITIALIZABLE)]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module a scheme sets, in registration order: Linear/Conv layers, RNNs and
    multi-head attentions (:mod:`initlab.compound_layers`)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (*INITIALIZABLE, *COMPOUND))]


def skipped_modules(model: nn.Module) -> list[dict[str, str]]:
    """Modules with parameters of their own that initlab does not initialize."""
    return [
        skip_row(name, module, f"no scheme sets its {', '.join(own)}: left as built")
        for name, module, own in _skipped(model)
    ]


def untouched_weights(model: nn.Module, *, embeddings: bool = False) -> list[str]:
    """``"name (Type: parameters)"`` (the model's own: ``"pos (Net's own parameter)"``,
    :func:`_named`) of each module with weights of its own that no scheme
    sets (embeddings unless ``embeddings`` says an embedding init sets them, attention's
    ``bias_k``/``bias_v``, bare parameters), norms left out when they hold scale 1 and
    shift 0: what stays as the factory built it whatever init a comparison names (norms at
    1 and 0: every framework's init, not a gap; a norm its factory set otherwise, such as
    torchvision's ``zero_init_residual`` scales of 0, is named)."""
    return [
        _named(name, module, _differing(module, own))
        for name, module, own in _skipped(model)
        if not (is_norm(module) and _as_every_framework(module))
        and not (embeddings and isinstance(module, EMBEDDINGS))
    ]


def _named(name: str, module: nn.Module, parameters: list[str]) -> str:
    """``blocks.0.norm (LayerNorm: weight)``; the model's own: ``pos (TinyViT's own
    parameter)`` (it read ``(model) (TinyViT: pos)``)."""
    if name:
        return f"{name} ({type(module).__name__}: {', '.join(parameters)})"
    own = "own parameter" if len(parameters) == 1 else "own parameters"
    return f"{', '.join(parameters)} ({type(module).__name__}'s {own})"


def _differing(module: nn.Module, own: list[str]) -> list[str]:
    """``own``, or for a norm only those of its parameters not at every framework's value
    (``weight`` where ``zero_init_residual`` set the scales to 0: its shifts are still 0)."""
    if not is_norm(module):
        return own
    standard = {"weight": 1.0, "bias": 0.0}
    return [
        n for n in own if n not in standard or not bool((getattr(module, n) == standard[n]).all())
    ] or own


def _as_every_framework(norm: nn.Module) -> bool:
    """Whether a norm's own parameters hold scale 1 and shift 0 (exact: set so, not drawn)."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    ones = not isinstance(weight, torch.Tensor) or bool((weight == 1).all())
    return ones and (not isinstance(bias, torch.Tensor) or not bool(bias.any()))


def _skipped(model: nn.Module) -> list[tuple[str, nn.Module, list[str]]]:
    """``(name, module, its own parameters no scheme sets)`` of each module that is not a
    Linear/Conv layer and has such parameters (an RNN's and an attention's matrices are set);
    a parameter tied to a layer's is set by that layer's init, so it is not counted, except
    an embedding table a readout shares: the embedding rule sets it
    (:func:`initlab.embedding_init.readouts_of_tables`)."""
    layers = _set_by_layers(model)
    found = []
    for name, module in model.named_modules():
        if isinstance(module, INITIALIZABLE):
            continue
        own = [n for n, p in module.named_parameters(recurse=False) if id(p) not in layers]
        if own:
            found.append((name, module, own))
    return found


def own_embeddings(model: nn.Module) -> list[str]:
    """The names of ``model``'s embedding tables (what an ``embedding`` scheme sets, a
    table tied to a readout included)."""
    return [name for name, module in model.named_modules() if isinstance(module, EMBEDDINGS)]


def _set_by_layers(model: nn.Module) -> set[int]:
    """``id`` of every tensor a weight layer's scheme sets (Linear/Conv, RNN, attention), not
    an embedding table a readout shares."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, EMBEDDINGS)}
    found = {id(p) for _, m in initializable_layers(model) for p in m.parameters(recurse=False)}
    found -= tables
    for _, module in compound_layers(model):
        own = module.named_parameters(recurse=False)
        found |= {id(p) for n, p in own if n in parameters_set(module)}
    return found


def skip_row(name: str, module: nn.Module, reason: str) -> dict[str, str]:
    """A row of :attr:`initlab.init_record.InitRecord.skipped`: the module and why."""
    return {"layer": name or "(model)", "type": type(module).__name__, "reason": reason}
