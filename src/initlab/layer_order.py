"""A model's output layer: the last Linear/Conv layer its ``forward`` calls.

Registration order (``named_modules``) is the order of ``__init__``, not of ``forward``: a
model that defines its head first (``self.classifier = nn.Linear(...)`` before the body, as
many Hugging Face and timm models do) would have its head taken for a hidden layer and its
last hidden layer for the output layer, and ``output_init=``/``--output-init`` would set the
wrong one. The call order comes from a ``torch.fx`` trace (nothing runs), else from one run
on an ``example`` batch (:func:`initlab.residual.run_trace.run_graph`, which puts buffers and
the RNG back), else it is the registration order. The probe's findings already take the
last layer *called* as the output (:mod:`initlab.probe.findings`).
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

from initlab.initializers.fans import WEIGHT_LAYERS


def registered_layers(model: nn.Module) -> list[str]:
    """The names of ``model``'s Linear/Conv layers, in registration order."""
    return [n for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def graph_layers(model: nn.Module, graph: fx.Graph) -> list[str]:
    """The Linear/Conv layers ``graph`` uses, in order of use, each once (its last use): a
    call of the layer, a read of one of its parameters (``F.linear(h, self.head.weight)``,
    ``self.head.forward(h)`` traced through), or a call of the ``nn.MultiheadAttention`` that
    reads its ``out_proj`` weight inside torch."""
    modules = dict(model.named_modules())
    used = []
    for node in graph.nodes:
        target = str(node.target)
        if node.op == "get_attr":
            target = target.rpartition(".")[0]
        elif node.op != "call_module":
            continue
        module = modules.get(target)
        if isinstance(module, nn.MultiheadAttention):
            used.append(f"{target}.out_proj" if target else "out_proj")
        elif isinstance(module, WEIGHT_LAYERS):
            used.append(target)
    return list(reversed(dict.fromkeys(reversed(used))))


def call_graph(model: nn.Module, example: Any = None) -> fx.Graph | None:
    """``model``'s graph from ``torch.fx``, else from one run on ``example``; ``None`` when
    neither works (the model is untraceable and there is no example, or it fails on it)."""
    from initlab.residual.fx import trace
    from initlab.residual.run_trace import run_graph

    try:
        return trace(model)
    except Exception:  # fx raises many kinds on data-dependent code
        pass
    if example is None:
        return None
    try:
        return run_graph(model, example)
    except Exception:  # the caller reports the model's failure on real data itself
        return None


def known_output_layer(model: nn.Module, example: Any = None) -> str | None:
    """The output layer when the order of use is known, else ``None`` (no guess, unlike
    :func:`output_layer_name`): the last layer the graph uses, unless the last registered
    layer is not among them while a module the graph does not open holds it (a use the
    graph cannot see). A last registered layer the forward never touches (an unused
    projection or auxiliary head) is not the output layer."""
    graph = call_graph(model, example) if registered_layers(model) else None
    used = trusted_order(model, graph)
    return used[-1] if used else None


def trusted_order(model: nn.Module, graph: fx.Graph | None) -> list[str] | None:
    """:func:`graph_layers` of ``graph`` when it can be trusted to show the output layer
    (:func:`known_output_layer`), else ``None``."""
    used = graph_layers(model, graph) if graph is not None else []
    registered = registered_layers(model)
    if not used or (registered[-1] not in used and _opaque_holder(graph, registered[-1])):
        return None
    return used


def _opaque_holder(graph: fx.Graph, name: str) -> bool:
    """Whether ``graph`` calls a module that contains the layer ``name`` as a whole (a leaf
    it does not trace into), so the layer may be used where the graph cannot see."""
    return any(
        node.op == "call_module" and name.startswith(f"{node.target}.") for node in graph.nodes
    )


def output_layer_name(model: nn.Module, example: Any = None) -> str | None:
    """The name of ``model``'s output layer: the last Linear/Conv layer its forward uses
    (module docstring); the last registered one when the order of use cannot be found, or
    when the graph never shows that layer used (a use the graph cannot see: the
    registration order, right for most models, is the safer guess then); ``None`` for a
    model without one."""
    return output_layer(model, example)[0]


def output_layer(model: nn.Module, example: Any = None) -> tuple[str | None, bool]:
    """:func:`output_layer_name` and whether it is the registration order's guess (the
    order of use could not be found: two or more layers, and no graph to trust)."""
    registered = registered_layers(model)
    if len(registered) < 2:
        return (registered[-1] if registered else None), False
    known = known_output_layer(model, example)
    return (known, False) if known is not None else (registered[-1], True)
