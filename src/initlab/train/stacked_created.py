"""Tensors a forward creates, on the stacked layout of :mod:`initlab.train.stacked_ops`.

A forward may build tensors from Python values: ``torch.arange(T, device=x.device)`` for
positions, ``torch.tril(torch.ones(T, T))`` for a causal mask, ``x.new_zeros(n)``. Their
arguments are shapes and numbers (a model's ``x.size(1)`` is the stacked ``x.size(2)``, so
every model passes the same ones), hence every model computes the same tensor ``t``. The
stacked value, model axis first like every tensor of the stacked graph, is ``t`` expanded
over the M models: ``t.expand(M, *t.shape)``, a view of one copy. Nothing may write into
such a view (its M rows share memory): the stacked graph has no in-place method (they have
no rule), so only a call with ``out=`` or ``inplace=True`` or a leaf module built with
``inplace=True`` could; where the forward has one (:func:`may_write`), each created tensor
is a real ``[M, *t.shape]`` copy instead.

- creation functions (``torch.arange``, ``zeros``, ``ones``, ``full``, ``empty``, ``eye``,
  ``linspace``) and methods (``x.new_zeros``, ``new_ones``, ``new_full``,
  ``new_empty``, ``new_tensor``, which take only x's dtype and device): as above. A tensor
  among their arguments (``torch.full(shape, x.mean())``) differs per model and is refused;
- ``torch.zeros_like(x)``, ``ones_like``, ``full_like``, ``empty_like`` follow x's shape,
  which is already stacked: they run as they are;
- a tensor built from constants alone (``torch.ones(4)``), which torch.fx computes while
  tracing (:func:`initlab.train.stacked.stacked_module` reads it as a constant): the same;
- ``torch.tril``/``triu`` (and the methods) act on the last two dims, batched over the
  others: as they are, on a model's matrix (2 or more dims).

Random tensors (``torch.randn``, ``rand_like``) have no rule: each model draws its own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, fx, nn

from initlab.train.layers import NotStackable

Rule = Callable[..., object]
CREATION_FUNCTIONS = (
    torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.eye, torch.linspace,
)  # fmt: skip
SIZES_ONE_BY_ONE = ("zeros", "ones", "empty")
"""Creation functions that take sizes one by one (``torch.ones(T, T)``), as :func:`traceable`
lets torch.fx trace them."""
CREATION_METHODS = ("new_zeros", "new_ones", "new_full", "new_empty", "new_tensor")
LIKE_FUNCTIONS = (torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like)
TRIANGLES = ("tril", "triu")


def created(call: Callable | str) -> Rule:
    """The rule of a creation ``call``: ``rule(models, copies, *args, **kwargs)`` is the
    model's ``call(*args, **kwargs)`` expanded over ``models`` (a copy with ``copies``). A
    method's tensor (``x`` of ``x.new_zeros``) passes only its dtype and device."""
    fn = getattr(torch.Tensor, call) if isinstance(call, str) else call
    name = f"x.{call}()" if isinstance(call, str) else f"torch.{call.__name__}"
    method = isinstance(call, str)

    def rule(models: int, copies: bool, *args: object, **kwargs: object) -> Tensor:
        values = [*args[1:], *kwargs.values()] if method else [*args, *kwargs.values()]
        if "out" in kwargs:
            raise NotStackable(f"forward calls {name} with out=, writing a model's tensor")
        if any(isinstance(v, Tensor) for v in _flat(values)):
            raise NotStackable(f"forward calls {name} on a tensor, which differs per model")
        return expanded(fn(*args, **kwargs), models, copies)

    rule.__name__ = f"stacked_{fn.__name__}"
    return rule


def expanded(t: Tensor, models: int | None, copies: bool) -> Tensor:
    """Every model's same ``t`` as the stacked ``[M, *t.shape]``: a view, or a copy with
    ``copies``; ``models`` (M) ``None`` where the stack has no tensor to tell it."""
    out = t.expand(_known(models), *t.shape)
    return out.contiguous() if copies else out


def _known(models: int | None) -> int:
    """M, which a created tensor needs (``None``: the stack has no tensor to tell it)."""
    if models is None:
        raise NotStackable("forward creates a tensor, and the stack has no parameter or "
                           "buffer to tell its number of models")  # fmt: skip
    return models


def _flat(values: list[object]) -> list[object]:
    """``values`` with the items of lists and tuples among them (``x.new_tensor([a, b])``)."""
    return [w for v in values for w in (v if isinstance(v, (list, tuple)) else (v,))]


def triangle(call: str) -> Rule:
    """``torch.tril(x)`` / ``x.triu()``: the last two dims of a model's matrix, batched over
    the model axis as over any other leading dim."""
    fn = getattr(torch.Tensor, call)

    def rule(x: Tensor, *args: object, **kwargs: object) -> Tensor:
        if x.dim() < 3:
            raise NotStackable(f"forward calls {call} on a tensor of fewer than 2 dims")
        return fn(x, *args, **kwargs)

    rule.__name__ = f"stacked_{call}"
    return rule


CREATED: dict[Callable | str, Rule] = {
    **{fn: created(fn) for fn in CREATION_FUNCTIONS},
    **{name: created(name) for name in CREATION_METHODS},
}
"""Creation functions and methods by name → their rules (which take M and ``copies`` first)."""
FUNCTIONS: dict[Callable, Rule | None] = {
    **dict.fromkeys(LIKE_FUNCTIONS),
    **{getattr(torch, name): triangle(name) for name in TRIANGLES},
}
METHODS: dict[str, Rule] = {name: triangle(name) for name in TRIANGLES}
"""Functions and methods of stacked tensors (``None``: as they are), like those of
:mod:`initlab.train.stacked_ops`."""


def rewrite(node: fx.Node, models: int | None, copies: bool) -> bool:
    """Give ``node`` its stacked meaning (module docstring) if it creates a tensor or is
    one of :data:`FUNCTIONS` / :data:`METHODS`; whether it did. ``models``: M (``None``
    where the stack has no tensor to tell it, which a created tensor then needs)."""
    key = node.target if node.op == "call_function" else str(node.target)
    table = FUNCTIONS if node.op == "call_function" else METHODS
    if key in table:
        if table[key] is not None:
            node.op, node.target = "call_function", table[key]
        return True
    if key not in CREATED:  # functions by object, methods by name: they never collide
        return False
    node.op, node.target = "call_function", CREATED[key]
    node.args = (_known(models), copies, *node.args)
    return True


def may_write(graph: fx.Graph, template: nn.Module) -> bool:
    """Whether a node of ``graph`` (traced from ``template``, not yet rewritten) may write
    into a tensor: a call given ``out=`` or ``inplace=True`` (by keyword or position), or a
    leaf module whose ``inplace`` is set (``nn.ReLU(inplace=True)``)."""
    for node in graph.nodes:
        if node.op == "call_module":
            if getattr(template.get_submodule(node.target), "inplace", False) is True:
                return True
        elif node.op in ("call_function", "call_method"):
            if "out" in node.kwargs or node.kwargs.get("inplace") is True:
                return True
            if node.op == "call_function" and _inplace_by_position(node):
                return True
    return False


def _inplace_by_position(node: fx.Node) -> bool:
    """``F.relu(x, True)``: ``inplace`` given by position to a Python function."""
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    except (TypeError, ValueError):  # a builtin without a signature, or other arguments
        return False
    return bound.arguments.get("inplace") is True


@contextlib.contextmanager
def traceable() -> Iterator[None]:
    """While tracing: ``torch.ones(T, T)`` with traced sizes as ``torch.ones((T, T))``.

    torch's argument parser takes sizes one by one only as ints, so torch.fx fails on
    ``torch.ones(T, T, device=x.device)`` with ``T = x.size(1)`` ("ones() takes 1 positional
    argument but 2 were given"), though it traces ``torch.ones((T, T))``. Inside this
    block the functions of :data:`SIZES_ONE_BY_ONE` pass traced sizes given one by one as
    one tuple (any other call as it is; the graph records the function itself)."""
    originals = {name: getattr(torch, name) for name in SIZES_ONE_BY_ONE}

    def sizes_as_tuple(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args: object, **kwargs: object) -> object:
            if len(args) > 1 and any(isinstance(a, fx.Proxy) for a in args):
                return fn(args, **kwargs)
            return fn(*args, **kwargs)

        return call

    for name, fn in originals.items():
        setattr(torch, name, sizes_as_tuple(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)
