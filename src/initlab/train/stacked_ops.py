"""The per-model meaning of a traced forward's functions and methods on stacked tensors.

:func:`initlab.train.stacked.stacked_module` runs a model's traced graph on tensors that all
carry the model axis first: a value the model computes as ``[*shape]`` is ``[M, *shape]`` in
the stacked graph (its input ``[M, B, ...]``, its parameters ``[M, ...]``, every leaf's
output). A leaf module's replacement keeps that layout; every other node, a function or a
tensor method, is rewritten here (:func:`rewrite`) into what it does to each model's slice:

- shapes are the model's own: ``x.shape`` and ``x.size()`` → ``x.shape[1:]``, ``x.size(d)`` →
  ``x.size(d + 1)`` for d ≥ 0, ``x.dim()`` and ``x.ndim`` → ``x.dim() - 1``, ``x.numel()`` → the
  product of ``x.shape[1:]``. They are Python numbers, so arithmetic on them (``C // heads``,
  ``math.sqrt(d)``) runs as it is;
- dims: a model's dim d ≥ 0 is the stacked dim d + 1; a negative dim counts from the end in
  both layouts and stays. Defaults move too: ``flatten()`` starts at 1, ``torch.cat(ts)``
  joins along 1, and a reduction over every dim (``x.sum()``) reduces all but the model axis;
- shape arguments: ``view``/``reshape``/``expand`` get M prepended (``-1`` still infers one
  model's size); ``permute(*p)`` → ``permute(0, *(p + 1))``; ``x[idx]`` → ``x[:, idx]`` for
  basic indices (ints, slices, ``None``, ``...``; a tensor or list index would index across
  models and is refused);
- broadcasting: a model pads its lower-rank operand with 1s in front; on stacked tensors those
  1s go after the model axis, so every op with several tensor operands (``+``, ``==``,
  ``masked_fill``, ``torch.where``, ``@``, attention) first views the lower-rank ones as
  ``[M, 1, ..., 1, *rest]`` (:func:`align`): a ``[1, n, d]`` position table stacked
  ``[M, 1, n, d]`` meets ``[M, B, n, d]`` as it is, an ``[n, d]`` one as ``[M, 1, n, d]``;
- ``F.scaled_dot_product_attention`` runs with the model and batch axes flattened into one:
  attention is per example, and torch's fused CPU kernel takes 4-d inputs only (on 5-d ones
  it computes the math form, which took twice as long for 8 models of 4 heads).

- ``F.linear``, ``F.layer_norm`` and ``F.embedding`` on stacked parameters (read in forward:
  ``F.linear(x, self.weight)``) are each model's own product, norm and lookup
  (:mod:`initlab.train.stacked_norms`, which also runs the leaf modules of the same names).

Tensors the forward creates (``torch.arange(T)``, ``x.new_zeros(n)``, ``torch.tril``) are
:mod:`initlab.train.stacked_created`'s, which knows M. Each rule is the model's own
operation on each model's slice, so the stacked graph computes every model's function by
construction, whatever the sizes. Anything without a rule (a random tensor; an in-place
method; ``len(x)``, which torch.fx cannot trace) raises :class:`NotStackable` naming it, and
the stack uses ``vmap``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, fx

from initlab.train import stacked_created, stacked_norms
from initlab.train.layers import NotStackable

Rule = Callable[..., object]
_REQUIRED = object()
TENSOR_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device"})
"""Attributes a forward may read of a stacked tensor (``x.T``, ``x.data`` are refused)."""


def shift(dim: object) -> object:
    """The stacked dim of a model's dim (an int, or a tuple or list of them): d ≥ 0 → d + 1,
    a negative d as it is (both layouts share the trailing dims)."""
    if isinstance(dim, (tuple, list)):
        return tuple(shift(d) for d in dim)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise NotStackable(
            f"forward passes {dim!r} as a dim, which the stacked strategy cannot map"
        )
    return dim + 1 if dim >= 0 else dim


def at_rank(t: Tensor, rank: int) -> Tensor:
    """``t`` (``[M, *s]``) viewed ``[M, 1, ..., 1, *s]`` with ``rank`` dims: a model's lower-rank
    operand broadcast with 1s in front of its own dims, which come after the model axis."""
    missing = rank - t.dim()
    return t if missing <= 0 else t[(slice(None),) + (None,) * missing]


def align(values: Sequence[object]) -> list[object]:
    """``values`` with each tensor among them at the highest rank among them (:func:`at_rank`);
    other values (Python numbers) as they are."""
    rank = max((v.dim() for v in values if isinstance(v, Tensor)), default=0)
    return [at_rank(v, rank) if isinstance(v, Tensor) else v for v in values]


def _named(rule: Rule, call: Callable | str) -> Rule:
    rule.__name__ = f"stacked_{getattr(call, '__name__', call)}"
    return rule


def _callable(call: Callable | str) -> Callable:
    """A function, or a tensor method by name as the function ``torch.Tensor.<name>``."""
    return getattr(torch.Tensor, call) if isinstance(call, str) else call


def broadcasting(call: Callable | str) -> Rule:
    """``call`` on its tensor operands, positional or keyword, aligned (:func:`align`)."""
    fn = _callable(call)

    def rule(*args: object, **kwargs: object) -> object:
        values = align([*args, *kwargs.values()])
        return fn(*values[: len(args)], **dict(zip(kwargs, values[len(args) :], strict=True)))

    return _named(rule, call)


def dims_at(call: Callable | str, *params: tuple[int, str, object]) -> Rule:
    """``call`` with the dims it takes (``params``: position, keyword, default) shifted
    (:func:`shift`), a default too when the call leaves it out: ``x.flatten()`` per model is
    ``flatten(1)`` of the stacked tensor."""
    fn = _callable(call)

    def rule(*args: object, **kwargs: object) -> object:
        args_ = list(args)
        for position, name, default in params:
            given = position < len(args_)
            value = args_[position] if given else kwargs.get(name, default)
            if value is None or value is _REQUIRED:
                raise NotStackable(f"forward calls {fn.__name__} without a dim")
            if given:
                args_[position] = shift(value)
            else:
                kwargs[name] = shift(value)
        return fn(*args_, **kwargs)

    return _named(rule, call)


def reduction(call: Callable | str, keyword_options: bool = False) -> Rule:
    """A reduction ``call(x, dim=None, keepdim=False, ...)``: over the shifted dims, or with no
    dim (``None``, ``()``) over all of a model's dims, ``[M, -1]`` reduced along 1 (viewed
    ``[M, 1, ..., 1]`` with ``keepdim``). ``keyword_options``: only keywords after the dim
    (``var(dim, unbiased, keepdim)`` is an overload of ``var(dim, correction=, keepdim=)``)."""
    fn = _callable(call)

    def rule(x: Tensor, dim: object = None, *rest: object, **kwargs: object) -> object:
        if keyword_options and rest:
            raise NotStackable(f"forward calls {fn.__name__} with options not given by keyword")
        if dim is not None and dim != () and dim != []:
            return fn(x, shift(dim), *rest, **kwargs)
        keep = kwargs.get("keepdim", rest[0] if rest else False)
        out = fn(x.reshape(x.shape[0], -1), 1, *rest, **kwargs)
        return out.view(x.shape[0], *(1,) * (x.dim() - 1)) if keep else out

    return _named(rule, call)


def numbers_only(call: Callable) -> Rule:
    """A ``math`` function: on the model's Python numbers (shapes) as it is; a tensor (a
    model's 0-d tensor is ``[M]`` stacked) is refused."""

    def rule(*args: object, **kwargs: object) -> object:
        if any(isinstance(v, Tensor) for v in (*args, *kwargs.values())):
            raise NotStackable(f"forward calls math.{call.__name__} on a tensor")
        return call(*args, **kwargs)

    return _named(rule, call)


# -- shapes and shape arguments ----------------------------------------------------------------


def tensor_attribute(x: object, name: str) -> object:
    """``x.shape`` → ``x.shape[1:]``, ``x.ndim`` → one less; ``dtype``, ``device`` and anything
    of a non-tensor as they are."""
    if isinstance(x, Tensor) and name == "shape":
        return x.shape[1:]
    if isinstance(x, Tensor) and name == "ndim":
        return x.dim() - 1
    return getattr(x, name)


def size(x: Tensor, dim: int | None = None) -> object:
    return x.shape[1:] if dim is None else x.size(shift(dim))


def dim(x: Tensor) -> int:
    return x.dim() - 1


def numel(x: Tensor) -> int:
    return math.prod(x.shape[1:])


def _shape(what: str, shape: tuple, kwargs: dict) -> tuple[int, ...]:
    """A model's shape argument, given as ints (``view(B, -1)``), one sequence (``view((B,
    -1))``, a ``torch.Size``) or by keyword (``size=``, ``shape=``)."""
    if kwargs:
        shape = tuple(kwargs.pop(k) for k in ("size", "shape") if k in kwargs) or shape
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if kwargs or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise NotStackable(f"forward calls x.{what}() with {shape}, not a shape")
    return shape


def view(x: Tensor, *shape: object, **kwargs: object) -> Tensor:
    """``x.view(*shape)`` as ``reshape``: a view where the strides allow, else a copy. A
    stacked leaf may hand on a layout the model's own tensor does not have (a conv's output
    is a permuted view of its ``[B, M·C, H, W]`` memory), so a view valid for each model can
    be impossible on the stack; the copy holds the same values. Only an in-place activation
    kept as it is (``nn.ReLU(inplace=True)`` on the view) can tell them apart: it changes the
    copy where the model changes its tensor too, and the output check of
    :func:`initlab.train.trial.verified` then trains the stack looped."""
    return x.reshape(x.shape[0], *_shape("view", shape, kwargs))


def reshape(x: Tensor, *shape: object, **kwargs: object) -> Tensor:
    return x.reshape(x.shape[0], *_shape("reshape", shape, kwargs))


def expand(x: Tensor, *sizes: object, **kwargs: object) -> Tensor:
    """``x.expand(*sizes)``: new leading dims of the model's come after the model axis."""
    sizes_ = _shape("expand", sizes, kwargs)
    return at_rank(x, len(sizes_) + 1).expand(x.shape[0], *sizes_)


def permute(x: Tensor, *dims: object, **kwargs: object) -> Tensor:
    dims_ = _shape("permute", dims, {"size": kwargs.pop("dims")} if "dims" in kwargs else kwargs)
    return x.permute(0, *shift(dims_))


def squeeze(x: Tensor, dim: object = None) -> Tensor:
    """Without a dim: the model's size-1 dims, never the model axis."""
    if dim is None:
        dim = tuple(d for d in range(1, x.dim()) if x.shape[d] == 1)
        return x.squeeze(dim) if dim else x
    return x.squeeze(shift(dim))


_BASIC_INDEX = (int, slice, type(None), type(Ellipsis))


def getitem(x: object, index: object) -> object:
    """``x[index]``: a tensor's as ``x[:, index]`` (basic indices only), a tuple's or
    ``torch.Size``'s (shape values, a leaf's ``(out, weights)``, ``split``) as it is."""
    if not isinstance(x, Tensor):
        return x[index]
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, bool) or not isinstance(i, _BASIC_INDEX) for i in items):
        raise NotStackable("forward indexes a tensor with a tensor or a list, which the stacked "
                           "strategy has no rule for")  # fmt: skip
    return x[(slice(None), *items)]


# -- products ------------------------------------------------------------------------------


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` per model: a model's vector operand (``[M, k]``) as ``[M, 1, k]`` (left) or
    ``[M, k, 1]`` (right), its unit dim dropped from the result, as ``torch.matmul`` does."""
    if a.dim() < 2 or b.dim() < 2:
        raise NotStackable("forward multiplies a 0-d tensor with @")
    left, right = a.dim() == 2, b.dim() == 2
    a, b = align((a.unsqueeze(1) if left else a, b.unsqueeze(-1) if right else b))
    out = torch.matmul(a, b)
    if right:
        out = out.squeeze(-1)
    return out.squeeze(-1 if right else -2) if left else out


def attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
              *args: object, **kwargs: object) -> Tensor:  # fmt: skip
    """``F.scaled_dot_product_attention`` per model: q, k, v and the mask aligned, and from 5
    stacked dims on (``[M, B, heads, T, d]``) the leading ones flattened into one batch axis
    (the fused CPU kernel's 4-d layout; a mask broadcast over them is expanded first)."""
    q, k, v = align((query, key, value))
    mask = None if attn_mask is None else at_rank(attn_mask, q.dim())
    if q.dim() <= 4:
        return F.scaled_dot_product_attention(q, k, v, mask, *args, **kwargs)
    lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])

    def flat(t: Tensor) -> Tensor:
        return t.expand(*lead, *t.shape[-3:]).reshape(-1, *t.shape[-3:])

    mask = None if mask is None else flat(mask)
    out = F.scaled_dot_product_attention(flat(q), flat(k), flat(v), mask, *args, **kwargs)
    return out.view(*lead, *out.shape[1:])


def where(condition: Tensor, *args: object, **kwargs: object) -> Tensor:
    """``torch.where(c, a, b)`` aligned; ``torch.where(c)`` (indices of a model's nonzeros,
    different per model) is refused."""
    if len(args) + len(kwargs) < 2:
        raise NotStackable("forward calls torch.where(condition), which the stacked strategy "
                           "has no rule for")  # fmt: skip
    values = align([condition, *args, *kwargs.values()])
    rest = dict(zip(kwargs, values[1 + len(args) :], strict=True))
    return torch.where(*values[: 1 + len(args)], **rest)


# -- the tables ----------------------------------------------------------------------------

AS_IS_FUNCTIONS = {
    operator.neg, operator.pos, operator.invert, operator.abs,
    torch.relu, torch.tanh, torch.sigmoid, torch.exp, torch.log, torch.sqrt, torch.rsqrt,
    torch.abs, torch.neg, torch.logical_not, torch.square,
    F.relu, F.gelu, F.silu, F.tanh, F.sigmoid, F.leaky_relu, F.elu, F.softplus, F.mish,
}  # fmt: skip
"""Functions of one tensor acting per element (the same on ``[M, ...]`` as on each slice)."""
AS_IS_METHODS = {
    "relu", "tanh", "sigmoid", "neg", "exp", "log", "sqrt", "rsqrt", "abs", "square",
    "logical_not", "float", "double", "half", "bool", "long", "to", "type_as", "contiguous",
    "clone", "detach", "reshape_as",
}  # fmt: skip
BROADCASTING_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
    operator.mod, operator.pow, operator.eq, operator.ne, operator.lt, operator.le,
    operator.gt, operator.ge, operator.and_, operator.or_, operator.xor,
    torch.add, torch.sub, torch.mul, torch.div, torch.pow, torch.maximum, torch.minimum,
    torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge, torch.logical_and,
    torch.logical_or, torch.masked_fill, torch.clamp,
}  # fmt: skip
BROADCASTING_METHODS = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt",
    "ge", "logical_and", "logical_or", "masked_fill", "clamp", "expand_as",
}  # fmt: skip
DIMS = {
    "flatten": ((1, "start_dim", 0), (2, "end_dim", -1)),
    "transpose": ((1, "dim0", _REQUIRED), (2, "dim1", _REQUIRED)),
    "unsqueeze": ((1, "dim", _REQUIRED),),
    "unflatten": ((1, "dim", _REQUIRED),),
    "softmax": ((1, "dim", None),),
    "log_softmax": ((1, "dim", None),),
    "split": ((2, "dim", 0),),
    "chunk": ((2, "dim", 0),),
    "tensor_split": ((2, "dim", 0),),
    "unbind": ((1, "dim", 0),),
}
"""Methods (and the ``torch`` functions of the same name) taking dims: their positions,
keywords and defaults."""
REDUCTIONS = {"sum": False, "mean": False, "amax": False, "amin": False, "var": True, "std": True}
"""Reductions over dims; ``True``: options after the dim by keyword only."""

METHODS: dict[str, Rule | None] = {
    **dict.fromkeys(AS_IS_METHODS),
    **{name: broadcasting(name) for name in BROADCASTING_METHODS},
    **{name: dims_at(name, *params) for name, params in DIMS.items()},
    **{name: reduction(name, keyword) for name, keyword in REDUCTIONS.items()},
    "size": size, "dim": dim, "numel": numel, "view": view, "reshape": reshape,
    "view_as": torch.Tensor.reshape_as, "expand": expand, "permute": permute,
    "squeeze": squeeze, "matmul": matmul, "bmm": matmul,
}  # fmt: skip
"""Tensor methods by name → the rule a ``call_method`` node becomes (``None``: as it is)."""
FUNCTIONS: dict[Callable, Rule | None] = {
    **dict.fromkeys(AS_IS_FUNCTIONS),
    **{fn: broadcasting(fn) for fn in BROADCASTING_FUNCTIONS},
    **{getattr(torch, name): dims_at(getattr(torch, name), *p) for name, p in DIMS.items()},
    **{getattr(torch, name): reduction(getattr(torch, name), k) for name, k in REDUCTIONS.items()},
    F.softmax: dims_at(F.softmax, (1, "dim", None)),
    F.log_softmax: dims_at(F.log_softmax, (1, "dim", None)),
    torch.cat: dims_at(torch.cat, (1, "dim", 0)),
    torch.stack: dims_at(torch.stack, (1, "dim", 0)),
    torch.reshape: reshape, torch.permute: permute, torch.squeeze: squeeze,
    torch.matmul: matmul, operator.matmul: matmul, torch.bmm: matmul,
    F.scaled_dot_product_attention: attention, torch.where: where,
    F.linear: stacked_norms.linear, F.layer_norm: stacked_norms.layer_norm,
    F.embedding: stacked_norms.embedding,
    operator.getitem: getitem, getattr: tensor_attribute,
}  # fmt: skip
"""Functions → the rule a ``call_function`` node becomes (``None``: as it is)."""


def rewrite(node: fx.Node, models: int | None, copies: bool) -> None:
    """Give the ``call_function`` or ``call_method`` ``node`` its per-model meaning in place
    (module docstring): left as it is, or a call of its rule with the same arguments (a
    method's tensor first); :class:`NotStackable` naming it where there is no rule. A
    created tensor is expanded over ``models`` (copied with ``copies``,
    :func:`initlab.train.stacked_created.rewrite`)."""
    if stacked_created.rewrite(node, models, copies):
        return
    target = node.target
    if node.op == "call_method":
        rule = METHODS.get(target, _REQUIRED)
    elif getattr(target, "__module__", None) == "math":
        rule = numbers_only(target)
    else:
        rule = FUNCTIONS.get(target, _REQUIRED)
    if target is getattr and node.args[1] not in TENSOR_ATTRIBUTES:
        raise NotStackable(
            f"forward reads x.{node.args[1]}, which the stacked strategy has no rule for"
        )
    if rule is _REQUIRED:
        raise NotStackable(f"forward calls {describe(node)}, which the stacked strategy has no "
                           "rule for")  # fmt: skip
    if rule is not None:
        node.op, node.target = "call_function", rule


def describe(node: fx.Node) -> str:
    """How the forward wrote the call: ``x.cumsum()``, ``torch.cumsum``, ``F.pad``,
    ``operator.lshift``."""
    target = node.target
    if node.op == "call_method":
        return f"x.{target}()"
    name = getattr(target, "__name__", str(target))
    for prefix, space in (("torch", torch), ("F", F), ("operator", operator)):
        if getattr(space, name, None) is target:
            return f"{prefix}.{name}"
    return f"{getattr(target, '__module__', None) or '?'}.{name}"
