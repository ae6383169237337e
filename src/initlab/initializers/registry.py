"""The initializer registry: every scheme by name, with its parameters, origin and formula.

``get("he_normal")`` and ``get("orthogonal", gain=2.0)`` build :class:`Initializer` objects;
``register`` adds users' own schemes. Names are matched case-insensitively, with ``-`` read as
``_``; an unknown name raises :class:`~initlab.errors.UnknownNameError`, which suggests the
closest one.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from initlab.errors import InitlabError, UnknownNameError, closest_name
from initlab.initializers import basic, data_dependent, structured, torch_names, variance_scaling
from initlab.initializers.base import FillFn, Formula, Initializer, Sampler, Scheme
from initlab.initializers.parse import bind_positional, split_spec

_REGISTRY: dict[str, Scheme] = {}
_BUILTIN: set[str] = set()
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_LITERALS = (bool, int, float, str, type(None))


def register(
    name: str,
    factory: Callable[..., Sampler | FillFn],
    *,
    origin: str,
    formula: Formula,
    doc: str | None = None,
    pytorch_equivalent: str | None = None,
    keras_equivalent: str | None = None,
    jax_equivalent: str | None = None,
) -> None:
    """Add a scheme called ``name``; a name already taken raises :class:`InitlabError`.

    ``factory(**params)`` returns a :class:`Sampler` or a plain ``fill(tensor, generator,
    fans)`` function; every parameter needs a default (a bool, int, float, str or None), which
    :func:`info` reports and :func:`get` fills in. ``formula`` is one line, a ``str.format``
    template over the parameters (``"N(0, {std}²)"``) or a function of the parameter dict.
    ``origin`` says whose semantics it follows ("keras", "pytorch", "jax", "initlab", ...).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InitlabError(f"an initializer name is lowercase [a-z0-9_], got {name!r}")
    if name in _REGISTRY:
        raise InitlabError(f"initializer '{name}' is already registered")
    if not callable(factory):
        raise InitlabError(f"factory of '{name}' must be callable, got {factory!r}")
    if not isinstance(origin, str) or not origin:
        raise InitlabError(f"origin of '{name}' must be a non-empty string, got {origin!r}")
    if not (isinstance(formula, str) or callable(formula)):
        raise InitlabError(f"formula of '{name}' must be a string or a function")
    scheme = Scheme(
        name, factory, origin, formula, doc, pytorch_equivalent, keras_equivalent, jax_equivalent
    )
    _check_signature(scheme)
    _REGISTRY[name] = scheme


def unregister(name: str) -> None:
    """Remove a user-registered scheme (built-in schemes cannot be removed)."""
    scheme = _scheme(name)
    if scheme.name in _BUILTIN:
        raise InitlabError(f"'{scheme.name}' is built in and cannot be unregistered")
    del _REGISTRY[scheme.name]


def names() -> list[str]:
    """All registered initializer names, in registry order (Keras, JAX, PyTorch, user)."""
    return list(_REGISTRY)


def get(name: str | Initializer, **params: Any) -> Initializer:
    """The initializer ``name`` with ``params`` (the rest at their defaults).

    An :class:`Initializer` passes through unchanged (``params`` are then refused), and a
    spec with parentheses (``"orthogonal(gain=2)"``) is handed to :func:`parse`.
    """
    if isinstance(name, Initializer):
        if params:
            raise InitlabError(f"cannot apply parameters {sorted(params)} to the built {name!r}")
        return name
    if not isinstance(name, str):
        raise InitlabError(f"an initializer is a name or an Initializer, got {name!r}")
    if "(" in name:
        if params:
            raise InitlabError(f"give parameters in the spec or as keywords, not both: {name!r}")
        return parse(name)
    scheme = _scheme(name)
    resolved = _resolve(scheme, params)
    try:
        sampler = scheme.build(resolved)
    except InitlabError as err:
        raise InitlabError(f"{scheme.name}: {err}") from err
    formula = scheme.formula_for(resolved)
    return Initializer(
        scheme.name, resolved, origin=scheme.origin, formula=formula, sampler=sampler
    )


def parse(spec: str) -> Initializer:
    """The initializer a spec describes (grammar: :mod:`initlab.initializers.parse`); a
    malformed spec raises :class:`InitlabError`.

    >>> parse("variance_scaling(scale=2, mode=fan_in, distribution=uniform)")
    variance_scaling(scale=2.0, mode='fan_in', distribution='uniform')
    """
    name, args, kwargs = split_spec(spec)
    if args:
        kwargs = bind_positional(spec, name, args, kwargs, list(info(name)["params"]))
    return get(name, **kwargs)


def info(name: str | Initializer) -> dict[str, Any]:
    """What the registry knows about a scheme, as a plain dict.

    Keys: ``name``, ``origin``, ``formula`` (at the defaults), ``params`` (parameter →
    default), ``doc`` (first paragraph of its documentation), and ``pytorch_equivalent``,
    ``keras_equivalent``, ``jax_equivalent`` where the registry records one.
    """
    scheme = _scheme(name.name if isinstance(name, Initializer) else name)
    defaults = scheme.defaults
    out: dict[str, Any] = {
        "name": scheme.name,
        "origin": scheme.origin,
        "formula": scheme.formula_for(defaults),
        "params": defaults,
        "doc": scheme.summary,
    }
    for key in ("pytorch_equivalent", "keras_equivalent", "jax_equivalent"):
        if getattr(scheme, key):
            out[key] = getattr(scheme, key)
    return out


def _scheme(name: str) -> Scheme:
    key = str(name).strip().lower().replace("-", "_")
    if key in ("plan", "doctor"):  # the doctor's per-layer plan is made for one model
        raise InitlabError(
            f"'{name}' is not an initializer: the doctor's per-layer plan for a model is "
            "trained against other inits by `initlab doctor --trials N` (initlab.trials); "
            "`initlab plan --init SCHEME` shows what a scheme and a residual rule set"
        )
    if key not in _REGISTRY:
        raise UnknownNameError("initializer", str(name), _REGISTRY)
    return _REGISTRY[key]


def _check_signature(scheme: Scheme) -> None:
    for param in inspect.signature(scheme.factory).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise InitlabError(f"factory of '{scheme.name}': '{param.name}' must be a keyword")
        if param.default is param.empty or not isinstance(param.default, _LITERALS):
            raise InitlabError(
                f"factory of '{scheme.name}': parameter '{param.name}' needs a default that is "
                f"a bool, int, float, str or None, got {param.default!r}"
            )


def _resolve(scheme: Scheme, params: Mapping[str, Any]) -> dict[str, Any]:
    defaults = scheme.defaults
    resolved = dict(defaults)
    for key, value in params.items():
        if key not in defaults:
            raise InitlabError(_unknown_param(scheme.name, key, list(defaults)))
        resolved[key] = _coerce(scheme.name, key, value, defaults[key])
    return resolved


def _unknown_param(scheme: str, key: str, valid: list[str]) -> str:
    if not valid:
        return f"{scheme}: takes no parameters, got '{key}'"
    hint = closest_name(key, valid)
    suggestion = f"; did you mean '{hint}'?" if hint else ""
    return f"{scheme}: unknown parameter '{key}'{suggestion} (valid: {', '.join(valid)})"


def _coerce(scheme: str, key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` (int → float; integral float → int)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, out = isinstance(value, bool), value
    elif isinstance(default, float):
        ok, out = is_number, float(value) if is_number else value
    elif isinstance(default, int):
        ok = is_number and float(value).is_integer()
        out = int(value) if ok else value
    elif isinstance(default, str):
        ok, out = isinstance(value, str), value
    else:
        ok, out = isinstance(value, _LITERALS), value
    if not ok:
        wanted = type(default).__name__ if default is not None else "bool, int, float, str or None"
        if isinstance(default, (int, float)) and _non_finite(value):  # gain=nan: a word
            wanted = "finite number"
        raise InitlabError(f"{scheme}: parameter '{key}' must be a {wanted}, got {value!r}")
    return out


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is a word that names a non-finite float (``nan``, ``inf``)."""
    try:
        return isinstance(value, str) and not math.isfinite(float(value))
    except ValueError:
        return False


for _scheme_entry in (
    *basic.SCHEMES,
    *variance_scaling.SCHEMES,
    *structured.SCHEMES,
    *torch_names.SCHEMES,
    *data_dependent.SCHEMES,
):
    _REGISTRY[_scheme_entry.name] = _scheme_entry
    _BUILTIN.add(_scheme_entry.name)
