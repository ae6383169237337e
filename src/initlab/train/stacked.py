"""A stack of M models as ONE module: the leaf modules replaced by stacked equivalents.

For a model whose ``forward`` :func:`torch.fx` can trace (no Python branches on tensors),
:func:`stacked_module` rebuilds the traced graph to run all M models at once on inputs laid
out ``[M, B, ...]``: every tensor in it carries the model axis first (a model's ``[*s]`` is
``[M, *s]``). Each function and tensor method of the forward (shapes read with ``x.size()``,
``view``, ``transpose``, ``softmax(dim=-1)``, ``x[:, 0]``, ``torch.cat``, broadcasting adds,
attention by ``F.scaled_dot_product_attention``...) gets its per-model meaning on that layout
(:mod:`initlab.train.stacked_ops`; ``F.linear``, ``F.layer_norm`` and ``F.embedding`` on
parameters read in forward by :mod:`initlab.train.stacked_norms`); a tensor it creates
(``torch.arange(T)``, ``torch.ones(T, T)``) is every model's same tensor expanded over M
(:mod:`initlab.train.stacked_created`); a parameter or buffer read directly (``x +
self.pos``) enters as its ``[M, ...]`` stacked tensor; and every leaf module is replaced by
one that runs all M models at once:

- ``nn.Linear`` → :class:`StackedLinear`: ``y[m] = x[m] W[m]^T + b[m]``, one ``baddbmm``
  forward and a backward in the weight's own ``[M, out, in]`` layout
  (:class:`initlab.train.layers._StackedLinear`);
- ``nn.BatchNorm1d`` on ``[B, C]`` → :class:`StackedBatchNorm1d`: batch norm over ``M·C``
  channels of ``[B, M·C]``, i.e. each model's own batch statistics and running statistics;
- ``nn.Flatten(s, e)`` → ``nn.Flatten(s + 1, e + 1)`` (the model axis comes first);
- parameter-free elementwise modules (activations, ``Identity``) are kept: on ``[M, B, ...]``
  they act per element;
- ``nn.Dropout`` → :class:`~initlab.train.dropout_streams.StackedDropout`: each model's
  masks from its own generator (:mod:`initlab.train.dropout_streams`);
- ``attn(q, k, v)[0]`` (or ``out, _ = attn(...)``) on a ``MultiheadAttention`` leaf picks
  from its ``(out, weights)`` tuple; when only the output is read, ``need_weights`` is
  ignored (the output is the same either way).

The stacked modules hold the stack's tensors themselves (no copies): the parameters are the
``[M, ...]`` leaves the optimizer updates, the buffers the ``[M, ...]`` running statistics.
Anything else (a leaf without a stacked equivalent, a function without a rule, a forward
torch.fx cannot trace) raises :class:`NotStackable` with the reason, and the stack uses
``vmap``.
"""

from __future__ import annotations

import operator

from torch import Tensor, fx, nn

from initlab.errors import first_line
from initlab.train import stacked_attention, stacked_conv, stacked_created, stacked_ops
from initlab.train.dropout_streams import DropoutStreams, StackedDropout
from initlab.train.layers import NotStackable, StackedBatchNormState, StackedLinear

ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip
EXTENSIONS = (stacked_conv, stacked_attention)
"""Modules with more stacked leaves: each has ``replacement(name, module, tensors)`` (a
stacked module, or ``None`` when it has none for ``module``)."""
__all__ = ["NotStackable", "stacked_module"]


class StackedBatchNorm1d(StackedBatchNormState):
    """M ``nn.BatchNorm1d`` on ``[M, B, C]``: ``F.batch_norm`` over the ``M·C`` channels of
    ``[B, M·C]`` (``y = (x - mean_b) / sqrt(var_b + eps) * gamma + beta`` per model and
    channel); running statistics are updated in place in the stacked ``[M, C]`` buffers."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise NotStackable("BatchNorm1d on inputs other than [batch, features]")
        m, b, c = x.shape
        out = self.normalize_rows(x.transpose(0, 1).reshape(b, m * c))
        return out.view(b, m, c).transpose(0, 1)


def _leaf_tensors(name: str, module: nn.Module, stacked: dict[str, Tensor]) -> dict:
    """The stacked tensors of one leaf module by name relative to it (``weight``,
    ``running_mean``; ``layers.0.linear1.weight`` for a container leaf)."""
    prefix = f"{name}." if name else ""
    names = [k for k, _ in module.named_parameters(remove_duplicate=False)]
    names += [k for k, _ in module.named_buffers(remove_duplicate=False)]
    if any(prefix + k not in stacked for k in names):
        raise NotStackable(f"{name} shares a tensor with another module")
    return {k: stacked[prefix + k] for k in names}


def _replacement(name: str, module: nn.Module, stacked: dict[str, Tensor]) -> nn.Module:
    """The stacked equivalent of the leaf ``module`` (or :class:`NotStackable`)."""
    kind = type(module)
    tensors = _leaf_tensors(name, module, stacked)
    if kind in (nn.Linear,) or kind.__name__ == "FastLinear":
        return StackedLinear(tensors["weight"], tensors.get("bias"))
    if kind is nn.BatchNorm1d:
        return StackedBatchNorm1d(module, tensors)
    if kind is nn.Flatten and module.start_dim >= 1:
        end = module.end_dim + 1 if module.end_dim >= 0 else module.end_dim
        return nn.Flatten(module.start_dim + 1, end)
    if kind in ELEMENTWISE_MODULES:
        return module
    if kind is nn.Dropout:
        return StackedDropout(module.p)
    for extension in EXTENSIONS:
        found = extension.replacement(name, module, tensors)
        if found is not None:
            return found
    raise NotStackable(f"no stacked equivalent of {kind.__name__} ({name})")


class StackedAttribute(nn.Module):
    """A stacked parameter or buffer used directly in ``forward`` (``x + self.pos``): the
    ``[M, ...]`` tensor itself, model axis first like every tensor of the stacked graph (the
    ops it meets align its rank, :func:`initlab.train.stacked_ops.align`)."""

    def __init__(self, tensor: Tensor) -> None:
        super().__init__()
        self.tensor = tensor

    def forward(self) -> Tensor:
        return self.tensor


def _tuple_item(node: fx.Node, leaves: nn.Module) -> bool:
    """Whether ``node`` is ``attn(...)[i]``: a constant index into the ``(out, weights)``
    tuple of an already stacked ``MultiheadAttention`` (tuple indexing, no tensor axis
    involved). An attention whose weights no node reads stops computing them."""
    source = node.args[0] if node.op == "call_function" and node.args else None
    if node.target is not operator.getitem or not isinstance(source, fx.Node):
        return False
    if source.op != "call_module" or not isinstance(node.args[1], int):
        return False
    leaf = leaves._modules.get(source.target)
    if not isinstance(leaf, stacked_attention.StackedMultiheadAttention):
        return False
    leaf.weights_unused = all(  # `out, _ = attn(...)` makes an unused [1]
        user.target is operator.getitem and (user.args[1] == 0 or not user.users)
        for user in source.users
    )
    return True


def _frozen_safe_trace(template: nn.Module) -> tuple[fx.Graph, dict[str, Tensor]]:
    """``template``'s graph, when tracing freezes nothing the forward decides in Python: a
    traced graph runs the branches taken at trace time forever, so a forward that branches
    on ``self.training`` (its graphs in train and eval mode differ) or changes its own
    Python attributes (a call counter that later switches a branch) would train as a copy
    of its first call. Those raise :class:`NotStackable` (the stack then runs the real
    forward under ``vmap``); the template's modes and attributes are left as they were.
    Also the tensors the forward builds from constants alone (``torch.ones(4)``), which
    torch.fx computes while tracing and reads as attributes (``_tensor_constant0``) that it
    sets on the template: by name, taken off the template again, not counted as changes."""
    state, modes = _python_state(template), [(m, m.training) for m in template.modules()]
    traced, changed = [], []
    try:
        for mode in (True, False):  # restored in between: both name their constants alike
            traced.append(_trace(template.train(mode)))
            changed += [k for k in _restore_python_state(template, state) if k not in traced[-1][1]]
    except Exception as exc:  # data-dependent control flow, unsupported Python
        raise NotStackable(_untraceable(exc)) from None
    finally:
        _restore_python_state(template, state)  # after a trace that failed
        for module, mode in modes:
            module.training = mode
    if changed:
        raise NotStackable(f"its forward changes {', '.join(changed[:3])}, which tracing freezes")
    train, evaluate = (_calls(graph) for graph, _ in traced)
    if train != evaluate:
        raise NotStackable("its forward branches on self.training, which tracing freezes")
    return traced[0] if template.training else traced[1]


def _calls(graph: fx.Graph) -> list[tuple]:
    """The graph's calls, their arguments compared as values (a node by its name):
    nanoGPT's ``dropout_p=self.dropout if self.training else 0`` traces ``0.0`` in training
    and ``0`` in eval, the same graph that compared as code differed."""

    def plain(value: object) -> object:
        if isinstance(value, fx.Node):
            return ("node", value.name)
        if isinstance(value, Tensor):  # (constants are get_attr nodes; this is a guard)
            return ("tensor", id(value))
        if isinstance(value, (tuple, list)):
            return tuple(plain(v) for v in value)
        if isinstance(value, slice):  # x[:, :T] with a traced T
            return ("slice", plain(value.start), plain(value.stop), plain(value.step))
        if isinstance(value, dict):
            return tuple(sorted((k, plain(v)) for k, v in value.items()))
        return value

    return [(n.op, n.target, plain(n.args), plain(n.kwargs)) for n in graph.nodes]


def _trace(template: nn.Module) -> tuple[fx.Graph, dict[str, Tensor]]:
    """The traced graph and the constant tensors torch.fx stored on ``template`` by name."""
    tracer = _tracer()
    with stacked_created.traceable():
        graph = tracer.trace(template)
    constants = {
        name: t
        for t, name in tracer.tensor_attrs.items()
        if isinstance(t, Tensor) and name.startswith("_tensor_constant")
    }
    return graph, constants


def _tracer() -> fx.Tracer:
    """A tracer that records buffers read in ``forward`` as graph inputs (``get_attr``), as
    it does parameters: nanoGPT's ``self.bias[:, :, :T, :T]`` then slices the stacked buffer
    by the traced length instead of failing on a real tensor sliced by a proxy."""
    tracer = fx.Tracer()
    tracer.proxy_buffer_attributes = True
    return tracer


def _untraceable(exc: Exception) -> str:
    """Why torch.fx could not trace a forward, in the words of the stacked strategy."""
    message = str(exc)
    if message.startswith("'len' is not supported"):
        return "forward calls len() on a tensor, which torch.fx cannot trace (x.size(0) can be)"
    if "control flow" in message:
        return "forward branches on a tensor's value or shape, which torch.fx cannot trace"
    return f"torch.fx cannot trace it ({first_line(exc)[:160]})"


_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"training"}
"""``nn.Module``'s own bookkeeping (parameters, buffers, submodules, hooks, the mode)."""


def _python_state(model: nn.Module) -> dict[nn.Module, dict[str, object]]:
    """Each module's own attributes beside nn.Module's bookkeeping: what a forward may
    change in Python (a counter, a cached size, a flag), whatever its type."""
    return {
        module: {k: v for k, v in vars(module).items() if k not in _MODULE_INTERNALS}
        for module in model.modules()
    }


def _restore_python_state(model: nn.Module, state: dict[nn.Module, dict[str, object]]) -> list:
    """Put back each module's attributes as ``state`` holds them (dropping those added
    since); the dotted names of those that had changed (rebound, added or removed)."""
    changed = []
    for name, module in model.named_modules():
        before, now = state.get(module, {}), vars(module)
        keys = {*before, *(k for k in now if k not in _MODULE_INTERNALS)}
        for key in sorted(keys):
            old, new = before.get(key, _ABSENT), now.get(key, _ABSENT)
            if old is new or (type(old) is type(new) and _equal_plain(old, new)):
                continue
            changed.append(f"{name}.{key}" if name else key)
            if old is _ABSENT:
                del now[key]
            else:
                now[key] = old
    return changed


_ABSENT = object()


def _equal_plain(old: object, new: object) -> bool:
    """Equal numbers, strings or flags (a forward that sets ``self.size = 4`` again)."""
    return isinstance(old, (bool, int, float, str)) and old == new


def stacked_module(
    template: nn.Module, stacked: dict[str, Tensor], streams: DropoutStreams | None = None
) -> fx.GraphModule:
    """``template``'s traced graph with stacked leaves holding ``stacked`` (state-dict names
    → ``[M, ...]`` tensors); inputs and outputs ``[M, B, ...]``; its dropout draws each
    model's masks from ``streams`` (else from the global generator). Raises
    :class:`NotStackable` where a node has no stacked meaning (module docstring)."""
    graph, constants = _frozen_safe_trace(template)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise NotStackable("forward takes more than one input")
    models = next(iter(stacked.values())).shape[0] if stacked else None
    copies = stacked_created.may_write(graph, template)
    leaves = nn.Module()
    for node in graph.nodes:
        if _tuple_item(node, leaves):
            continue
        if node.op == "get_attr":
            if node.target in constants:  # one tensor, every model's: like a created one
                tensor = stacked_created.expanded(constants[node.target], models, copies)
            elif node.target in stacked:
                tensor = stacked[node.target]
            else:
                raise NotStackable(f"forward reads {node.target}, not a parameter or buffer")
            new = str(len(leaves._modules))
            leaves.add_module(new, StackedAttribute(tensor))
            node.op, node.target = "call_module", new
        elif node.op == "call_module":
            module = template.get_submodule(node.target)
            new = str(len(leaves._modules))
            leaves.add_module(new, _replacement(node.target, module, stacked))
            node.target = new
        elif node.op in ("call_function", "call_method"):
            stacked_ops.rewrite(node, models, copies)
    for leaf in leaves.modules():
        if isinstance(leaf, StackedDropout):
            leaf.streams = streams
    return fx.GraphModule(leaves, graph)
