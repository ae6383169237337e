"""A model's dataflow graph recorded by running it once, for models ``torch.fx`` cannot trace.

Symbolic tracing fails on code that needs real sizes: nanoGPT's attention slices its causal
mask with the sequence length (``self.bias[:, :, :T, :T]``), takes ``math.sqrt`` of a size,
``assert``\\ s on it. Running the model on an example batch has real sizes, so
:func:`run_graph` does that and records what ran as a ``torch.fx.Graph`` of the same shape
:func:`torch.fx.symbolic_trace` gives, which :func:`initlab.residual.fx.fx_structure` reads
unchanged:

- a call of a leaf module (what fx keeps whole: Linear/Conv/norms and other ``torch.nn``
  modules) → a ``call_module`` node, nothing recorded inside it;
- any other torch function or tensor method that returns tensors → a ``call_function`` node
  (``a + b``, ``torch.add``, ``x += y`` become ``operator.add``), recorded with a
  :class:`~torch.overrides.TorchFunctionMode`;
- edges: an argument that is a tensor some node produced (looked up by identity; an in-place
  op makes its result the tensor's producer). Other tensors (parameters read directly,
  constants) are not nodes; ``nn_module_stack`` says which modules were running.

One batch is one path through the code: data-dependent branches not taken are not in the
graph. The model runs in training mode without gradients and is left as it was
(:func:`initlab.preserve.preserved`: modes, parameters, buffers such as batch-norm running
statistics, and the random state).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from initlab.preserve import preserved

ADDITIONS = {
    torch.Tensor.__add__,
    torch.Tensor.__radd__,
    torch.Tensor.__iadd__,
    torch.Tensor.add,
    torch.Tensor.add_,
    torch.add,
}
"""The ways to write an addition: all recorded as ``operator.add``."""


class _Recorder(TorchFunctionMode):
    """Records torch functions into ``graph`` while no leaf module is running."""

    def __init__(self, graph: fx.Graph, producers: dict[int, fx.Node]) -> None:
        super().__init__()
        self.graph, self.producers = graph, producers
        self.kept: list[Tensor] = []  # keeps recorded tensors alive: ids stay unique
        self.leaf_depth = 0
        self.stack: dict[str, tuple[str, type]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.leaf_depth == 0:
            tensors = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
            if tensors:
                target = operator.add if func in ADDITIONS else func
                node = self.node("call_function", target, args, kwargs)
                self.produced(node, tensors)
        return out

    def node(self, op: str, target: Any, args: tuple, kwargs: dict) -> fx.Node:
        """A node whose tensor arguments are replaced by their producers (``None`` if none)."""

        def arg(value: Any) -> Any:
            if isinstance(value, Tensor):
                return self.producers.get(id(value))
            return value if isinstance(value, (int, float, bool, str, type(None))) else None

        node = self.graph.create_node(op, target, tree_map(arg, args), tree_map(arg, kwargs))
        node.meta["nn_module_stack"] = dict(self.stack)
        return node

    def produced(self, node: fx.Node, tensors: list[Tensor]) -> None:
        for t in tensors:
            self.producers[id(t)] = node
            self.kept.append(t)


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)


def _leaves(model: nn.Module) -> set[str]:
    """What ``torch.fx`` (:class:`initlab.residual.fx.LayerTracer`) keeps whole: weight layers,
    norms and other ``torch.nn`` modules, but not the containers."""
    from initlab.residual.fx import LayerTracer

    tracer = LayerTracer()
    return {
        name
        for name, module in model.named_modules()
        if name and not isinstance(module, CONTAINERS) and tracer.is_leaf_module(module, name)
    }


@contextmanager
def _module_hooks(model: nn.Module, recorder: _Recorder) -> Iterator[None]:
    """Hooks that keep ``recorder.stack`` and make each leaf module call one node."""
    handles = []
    leaves = _leaves(model)
    for name, module in model.named_modules():
        if any(name.startswith(leaf + ".") for leaf in leaves):
            continue  # inside a leaf: never recorded

        def pre(module, args, kwargs, name=name):
            if name:
                recorder.stack[name] = (name, type(module))
            if name in leaves:
                if recorder.leaf_depth == 0:
                    module._initlab_call = recorder.node("call_module", name, args, kwargs)
                recorder.leaf_depth += 1

        def post(module, args, kwargs, output, name=name):
            if name in leaves:
                recorder.leaf_depth -= 1
                if recorder.leaf_depth == 0:
                    tensors = [t for t in tree_flatten(output)[0] if isinstance(t, Tensor)]
                    recorder.produced(module.__dict__.pop("_initlab_call"), tensors)
            recorder.stack.pop(name, None)

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_graph(model: nn.Module, example: Tensor | tuple[Tensor, ...]) -> fx.Graph:
    """The graph of ``model`` run on ``example`` (module docstring). Raises whatever the
    model raises on it."""
    inputs = example if isinstance(example, tuple) else (example,)
    graph, producers = fx.Graph(), {}
    for i, x in enumerate(inputs):
        producers[id(x)] = graph.placeholder(f"input_{i}")
    recorder = _Recorder(graph, producers)
    hooks = _module_hooks(model, recorder)
    with preserved(model, "train"), torch.no_grad(), hooks, recorder:
        output = model(*inputs)
    last = [producers.get(id(t)) for t in tree_flatten(output)[0] if isinstance(t, Tensor)]
    graph.output(last[0] if len(last) == 1 else tuple(last))
    return graph
