"""Initializer specs as text: ``"he_normal"``, ``"orthogonal(gain=1.41)"``, ``"constant(0.1)"``.

Grammar: ``name`` or ``name(arg, ..., key=value, ...)``. Positional arguments fill the
scheme's parameters in order. Values are Python literals read with :func:`ast.literal_eval`
(numbers, quoted strings, True/False/None); a bare word is a string (``mode=fan_in``), and
``sqrt(<number>)`` is allowed (``kaiming_uniform(a=sqrt(5))``). Nothing is ever evaluated.
``repr(initializer)`` is a spec that parses back to an equal initializer.

This module is the grammar only (it knows no scheme): :func:`initlab.initializers.parse`
(in :mod:`~initlab.initializers.registry`) reads a spec with :func:`split_spec`, binds the
positional arguments with :func:`bind_positional` and builds the initializer.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from typing import Any

from initlab.errors import InitlabError

_SPEC = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_SCALARS = (bool, int, float, str, type(None))


def bind_positional(
    spec: str, name: str, args: list[Any], kwargs: dict[str, Any], order: Sequence[str]
) -> dict[str, Any]:
    """``kwargs`` with the positional ``args`` bound to the parameters ``order`` in turn;
    too many arguments, or one given twice, raise :class:`InitlabError`."""
    if len(args) > len(order):
        takes = f"takes {len(order)} parameter(s)" if order else "takes no parameters"
        raise InitlabError(f"{spec!r}: {name} {takes}, got {len(args)} positional")
    bound = dict(kwargs)
    for key, value in zip(order, args, strict=False):
        if key in bound:
            raise InitlabError(f"{spec!r}: parameter '{key}' given twice")
        bound[key] = value
    return bound


def split_spec(spec: str) -> tuple[str, list[Any], dict[str, Any]]:
    """``"name(a, k=v)"`` → ``("name", [a], {"k": v})`` without looking the name up."""
    if not isinstance(spec, str):
        raise InitlabError(f"an initializer spec is a string, got {spec!r}")
    match = _SPEC.match(spec)
    if not match:
        raise InitlabError(
            f"cannot read initializer spec {spec!r}: expected name or name(key=value, ...)"
        )
    name, body = match.group(1), match.group(2)
    if body is None or not body.strip():
        return name, [], {}
    call = _parse_call(spec, body)
    args = [_value(spec, node) for node in call.args]
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise InitlabError(f"{spec!r}: '**' is not allowed in a spec")
        if keyword.arg in kwargs:  # Python's parser accepts it; the last value won silently
            raise InitlabError(f"{spec!r} gives {keyword.arg} twice: give it once")
        kwargs[keyword.arg] = _value(spec, keyword.value)
    return name, args, kwargs


def _parse_call(spec: str, body: str) -> ast.Call:
    try:
        tree = ast.parse(f"f({body})", mode="eval").body
    except SyntaxError as err:
        raise InitlabError(f"cannot read the arguments of {spec!r}: {err.msg}") from err
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "f"):
        raise InitlabError(f"cannot read initializer spec {spec!r}: unbalanced parentheses")
    if any(isinstance(node, ast.Starred) for node in tree.args):
        raise InitlabError(f"{spec!r}: '*' is not allowed in a spec")
    return tree


def _value(spec: str, node: ast.expr) -> Any:
    """A literal, a bare word (as a string) or ``sqrt(<number>)``; anything else is refused."""
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "sqrt"
        and len(node.args) == 1
        and not node.keywords
    ):
        inner = _value(spec, node.args[0])
        if isinstance(inner, (int, float)) and not isinstance(inner, bool) and inner >= 0:
            return math.sqrt(inner)
        raise InitlabError(f"{spec!r}: sqrt() takes one number >= 0")
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError) as err:
        raise InitlabError(
            f"{spec!r}: cannot read value {ast.unparse(node)!r} (use a number, a word, "
            "a quoted string, True/False/None or sqrt(number))"
        ) from err
    if not isinstance(value, _SCALARS):
        raise InitlabError(f"{spec!r}: value {ast.unparse(node)!r} must be a single scalar")
    return value
