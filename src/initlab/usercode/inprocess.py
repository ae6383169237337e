"""Callables and data registered in this Python process (the Python API's ``model=`` and
``data=`` when they are not spec strings).

A function defined at the top of an importable module becomes ``module:function``; any other
callable (a notebook function, a lambda, a ``functools.partial``) and tuples of arrays become
``callable:name:hash`` specs, usable only in the process that registered them, ``hash``
covering their source and captured values (or the arrays' bytes), so that editing them starts
new runs. Also how messages name such specs (:func:`shown_spec`, :func:`given_as`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from initlab.errors import InitlabError, option
from initlab.usercode.fingerprint import arrays_digest, callable_digest

REGISTERED = "callable:"
"""Prefix of the specs of callables and data registered in this process: ``callable:name:hash``."""
_REGISTRY: dict[str, Callable] = {}


def shown_spec(spec: str) -> str:
    """``spec`` as a message names it: a registered function by its name, arrays as arrays
    (not ``callable:data:9f3a…``)."""
    if is_array_data(spec):
        return "(the arrays passed in Python)"
    if is_registered(spec):
        return f"{spec.split(':')[1]} (defined in this Python session)"
    return spec


def given_as(flag: str, spec: str) -> str:
    """How a message names what the user gave: ``--model m.py:build`` on the command line,
    ``model='m.py:build'`` from Python, ``model build (defined in this Python session)`` or
    ``data (the arrays passed in Python)`` for what a Python call passed, which had no spec."""
    name = flag.lstrip("-")
    if is_array_data(spec) or is_registered(spec):
        return f"{name} {shown_spec(spec)}"
    return option(f"{flag} {spec}", f"{name}={spec!r}")


def is_registered(spec: object) -> bool:
    """``True`` for a ``callable:name:hash`` spec (usable only in the process that made it)."""
    return isinstance(spec, str) and spec.startswith(REGISTERED)


def model_spec(model: str | Callable) -> str:
    """The spec of ``model``: a spec string as it is; a function defined at the top of an
    importable module as ``module:function`` (or ``file.py:function`` for one imported from
    a path); any other callable (defined in ``__main__`` or a notebook, a lambda, a class
    method, a closure, a ``functools.partial``) registered in this process as
    ``callable:name:hash``, ``hash`` being :func:`initlab.usercode.fingerprint.callable_digest`: its
    source and the values it captures or reads from globals (notebook helpers and classes
    recursively), so editing it or changing a captured width starts new runs.
    """
    if isinstance(model, str):
        return model
    refuse_built(model)
    if not callable(model):
        raise InitlabError(f"model must be a spec string or a callable, got {model!r}")
    return _importable_spec(model) or _register(model, callable_digest(model))


def refuse_built(
    model: object,
    keyword: str = "model",
    why: str = "each run builds and initializes its own copy",
    example: str = "lambda: MyNet()",
) -> None:
    """Raise :class:`InitlabError` (one line) when ``model`` is a built ``nn.Module`` where
    a factory is taken (``keyword``): ``why`` it needs one, and how to pass it (``build``, or
    ``example``)."""
    torch_nn = sys.modules.get("torch.nn")  # a built model means torch is imported already
    if torch_nn is not None and isinstance(model, torch_nn.Module):
        raise InitlabError(
            f"{keyword}= takes a factory, not a built {type(model).__name__}: {why}, so pass "
            f"the function that builds it ({keyword}=build, or {keyword}={example})"
        )


def _data_hint(data: object) -> str:
    """What to pass instead of ``data``, for the two near misses: initlab's own
    :class:`~initlab.data.Dataset` (its name, or its four tensors) and one ``(x, y)`` pair
    of tensors (a single split)."""
    from initlab.data import Dataset

    if isinstance(data, Dataset):
        return (
            f"; pass its name (data={data.name!r}) or its splits (data=(ds.x_train, "
            "ds.y_train, ds.x_test, ds.y_test))"
        )
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return "; an (x, y) pair is one split: give the test split too, (x, y, x_test, y_test)"
    return ""


def data_spec(data: object) -> str:
    """The spec of ``data``: a spec string as it is; a function like :func:`model_spec`; a
    tuple ``(x_train, y_train, x_test, y_test)`` of tensors/arrays, or ``(train_dataset,
    test_dataset)`` of map-style Datasets (collated into those four tensors once), registered
    in this process as ``callable:data:hash``, ``hash`` being sha256 of their dtypes, shapes
    and bytes. A path (``os.PathLike``: ``pathlib.Path("x.npz")``) is its string. A torch
    ``DataLoader`` is one line: pass ``loader.dataset``."""
    if isinstance(data, os.PathLike):
        data = os.fsdecode(data)
    if isinstance(data, str):
        return data
    from initlab.data.loaders import refuse_loaders
    from initlab.data.user import stack

    refuse_loaders(data)
    if callable(data):
        return model_spec(data)
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and not any(hasattr(part, "__array__") for part in data)  # tensors/arrays: 4 of them
    ):
        (x_train, y_train), (x_test, y_test) = (
            stack(part, which, "data") for part, which in zip(data, ("train", "test"), strict=True)
        )
        data = (x_train, y_train, x_test, y_test)
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise InitlabError(
            "data must be a spec string or path, a function, a tuple (x_train, y_train, x_test, "
            f"y_test) or (train_dataset, test_dataset); got a {type(data).__name__}"
            + (f" of {len(data)} items" if isinstance(data, (tuple, list)) else "")
            + _data_hint(data)
        )
    arrays = tuple(data)
    spec = _register(lambda: arrays, arrays_digest(arrays), name="data")
    _ARRAYS.pop(spec, None)  # the newest last
    _ARRAYS[spec] = None
    _RELEASED.discard(spec)
    while len(_ARRAYS) > ARRAYS_KEPT:  # a notebook loop over datasets kept every one alive
        _release(next(iter(_ARRAYS)))
    return spec


def is_array_data(spec: object) -> bool:
    """Whether ``spec`` was registered from tensors/arrays (not from a function)."""
    return spec in _ARRAYS


def _importable_spec(fn: Callable) -> str | None:
    """``module:function`` when a fresh process can import ``fn`` by that name, else None."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    name = getattr(fn, "__qualname__", "")
    if module is None or module.__name__ == "__main__" or not name.isidentifier():
        return None
    if getattr(module, name, None) is not fn:
        return None
    path = getattr(module, "__file__", None)
    if module.__name__.startswith("initlab_user_") and path:  # imported from a path by us
        return f"{path}:{name}"
    return f"{module.__name__}:{name}"


_ARRAYS: dict[str, None] = {}
"""Specs :func:`data_spec` registered from a tuple of tensors/arrays, oldest first."""
ARRAYS_KEPT = 4
"""How many data registrations from arrays a process keeps (each holds its arrays, and a
slice holds its whole base array): a notebook calling compare in a loop over datasets grew
by 25 MB a call. An older one is released, and passing its arrays again registers it anew."""


_RELEASED: set[str] = set()
"""Array specs released since they were registered (a later use names why it fails)."""


def forget_arrays() -> None:
    """Release every data registration made from arrays in this process
    (:func:`initlab.data.clear_cache` calls it)."""
    for spec in list(_ARRAYS):
        _release(spec)


def _release(spec: str) -> None:
    _REGISTRY.pop(spec, None)
    _ARRAYS.pop(spec, None)
    _RELEASED.add(spec)


def _register(fn: Callable, digest: str, name: str | None = None) -> str:
    label = name or _label(fn)
    label = label if label.isidentifier() else "callable"
    spec = f"{REGISTERED}{label}:{digest}"
    _REGISTRY[spec] = fn
    return spec


def _label(fn: Callable) -> str:
    """What messages call a registered ``fn``: its name; ``lambda`` for a lambda, the
    wrapped function's name for a ``functools.partial``, the class's for an instance."""
    name = getattr(fn, "__name__", "")
    if name == "<lambda>":
        return "lambda"
    if isinstance(fn, functools.partial):
        return _label(fn.func)
    return name or type(fn).__name__


def registered_callable(spec: str, flag: str) -> Callable:
    if spec in _RELEASED:
        raise InitlabError(
            f"{option(flag)}: the arrays registered as {spec.split(':')[2][:8]}… were released "
            f"(a process keeps the last {ARRAYS_KEPT}, and initlab.data.clear_cache() drops "
            "them): pass the arrays again"
        )
    if spec not in _REGISTRY:
        raise InitlabError(
            f"{option(flag)} {spec.split(':')[1]} was registered in another process: such "
            "callables and data run only in the process that made them (use workers=1, or "
            "pass 'module:function')"
        )
    return _REGISTRY[spec]
