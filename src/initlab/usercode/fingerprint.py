"""What a callable or an array depends on, as a short hash: the identity of a run's model
factory or data function when it was handed over as a Python object (a notebook function, a
lambda, a closure, a ``functools.partial``) rather than named by a file.

:func:`callable_digest` hashes

- the callable's source (:func:`inspect.getsource`; its bytecode when there is no source);
- the values it reads from outside: its closure cells and the globals its code names
  (nested functions and lambdas included), each by :func:`_describe`: plain values by
  ``repr``, tensors and arrays by their bytes, functions and classes defined in a notebook
  or script recursively by their own source and captured values, those of a file outside
  the Python installation by the file's hash, installed ones (torch, numpy) by name;
- for a ``functools.partial``, the wrapped callable and the bound arguments.

So ``lambda: mlp(width)`` gives different digests for ``width = 2`` and ``width = 64``, and
editing a notebook class that a factory builds, or that is passed itself (``model=Net``),
or a helper its methods call, starts new runs. A captured object whose
``repr`` shows only its address (``<Foo object at 0x…>``) cannot be told apart from one
call to the next: it is hashed by its type, and :func:`callable_digest` says so with a note.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import inspect
import marshal
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

from initlab.errors import InitlabError
from initlab.usercode.loaded import check_loaded, code_shape

PLAIN = (type(None), bool, int, float, complex, str, bytes)


def callable_digest(fn: Callable) -> str:
    """sha256 (16 hex digits) of everything ``fn`` depends on (module docstring)."""
    opaque: list[str] = []
    text = _callable_text(fn, seen={}, opaque=opaque)
    if opaque:
        from initlab.notes import note

        name = getattr(fn, "__name__", type(fn).__name__)
        note(
            f"{name} uses {', '.join(opaque[:3])}, whose value initlab cannot tell apart "
            "from one call to the next (its repr shows only an address): runs with a changed "
            "one would resume the stored ones; pass such settings as model_args instead"
        )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def arrays_digest(arrays: tuple) -> str:
    """sha256 (16 hex digits) of the dtype, shape and bytes of each array/tensor: the same
    numbers as a tensor or as a numpy array are the same data (one store resumes both)."""
    import numpy as np
    import torch

    digest = hashlib.sha256()
    for item in arrays:
        if isinstance(item, torch.Tensor):
            flat = item.detach().cpu().contiguous().reshape(-1)
            raw = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
        else:
            raw = np.ascontiguousarray(np.asarray(item))
        # as a tensor's were hashed before arrays were told apart from nothing: tensor data
        # keeps its run keys, and the same numbers as an array get them too
        dtype = str(getattr(item, "dtype", "")).removeprefix("torch.")
        digest.update(f"Tensor|torch.{dtype}|".encode())
        digest.update(f"{tuple(getattr(item, 'shape', ()))}|".encode())
        if raw.size:  # an empty split has no bytes (memoryview cannot cast its [0, 8] shape)
            digest.update(memoryview(raw).cast("B"))
    return digest.hexdigest()[:16]


def _callable_text(fn: object, seen: dict[int, object], opaque: list[str]) -> str:
    if isinstance(fn, functools.partial):
        bound = _describe((fn.args, fn.keywords), "partial arguments", seen, opaque)
        return f"partial({_callable_text(fn.func, seen, opaque)}, {bound})"
    if isinstance(fn, types.MethodType):
        owner = _describe(fn.__self__, "its object", seen, opaque)
        return f"method({_callable_text(fn.__func__, seen, opaque)}, {owner})"
    if isinstance(fn, type):  # a class passed itself: as when a lambda builds it
        return _definition(fn, seen, opaque)
    code = getattr(fn, "__code__", None)
    source = _source(fn)
    if source is None and code is None:
        if callable(fn) and not isinstance(fn, (type, types.BuiltinFunctionType)):
            kind = _definition(type(fn), seen, opaque)
            return f"{kind} {_object(fn, type(fn).__name__, opaque)}"
        raise InitlabError(
            f"cannot fingerprint {fn!r}: no source and no code object; define it in a file "
            "and pass 'file.py:function'"
        )
    parts = [source if source is not None else marshal.dumps(code).hex()]
    if source is not None and code is not None and source.count("lambda") > 1:
        parts.append(f"code {code_shape(code)}")  # one line, several lambdas: which one
    for name, value in _outside_values(fn):
        parts.append(f"{name}={_describe(value, name, seen, opaque)}")
    return "\n".join(parts)


def _source(obj: object) -> str | None:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return None


def _outside_values(fn: object) -> Iterator[tuple[str, object]]:
    """``(name, value)`` of ``fn``'s default arguments (``lambda w=w: mlp(w)``, a loop's
    idiom), its closure cells, then the globals its code names."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    for name in ("__defaults__", "__kwdefaults__"):
        if getattr(fn, name, None):  # absent: the keys of functions without any stay
            yield name.strip("_"), getattr(fn, name)
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            yield name, cell.cell_contents
        except ValueError:  # a cell not filled yet
            yield name, None
    namespace = getattr(fn, "__globals__", {})
    for name in sorted(_names(code)):
        if name in namespace:
            yield name, namespace[name]


def _names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it load (``LOAD_GLOBAL``,
    ``LOAD_NAME``; not attribute names: ``m.weight.data`` does not read a global ``data``)."""
    names = {
        str(ins.argval)
        for ins in dis.get_instructions(code)
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    }
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _describe(value: object, name: str, seen: dict[int, object], opaque: list[str]) -> str:
    """A text that changes when ``value`` does (module docstring); a value that cannot be
    read (a meta or sparse tensor, a lazy module) is opaque: named by type, and noted."""
    if isinstance(value, PLAIN):
        return repr(value)
    if id(value) in seen:  # a container or definition met before: no endless recursion
        return f"<{type(value).__name__} seen>"
    try:
        return _describe_new(value, name, seen, opaque)
    except InitlabError:  # a module edited since it was imported: said, not hidden
        raise
    except Exception:  # whatever a user object's repr, state_dict or bytes raise
        opaque.append(f"{name} (a {type(value).__name__})")
        return type(value).__qualname__


def _describe_new(value: object, name: str, seen: dict[int, object], opaque: list[str]) -> str:
    if isinstance(value, (tuple, list, set, frozenset, dict)):
        seen[id(value)] = value  # kept alive: its id is not reused
        if isinstance(value, dict):
            pairs = [(_describe(k, name, seen, opaque), v) for k, v in value.items()]
            return (
                "{" + ", ".join(f"{k}: {_describe(v, name, seen, opaque)}" for k, v in pairs) + "}"
            )
        items = [_describe(v, name, seen, opaque) for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort()
        return f"{type(value).__name__}[{', '.join(items)}]"
    if _is_array(value):
        if str(getattr(value, "dtype", "")) == "object":  # pointers: differ in every process
            opaque.append(f"{name} (an object array)")
            return "object array"
        return f"array {arrays_digest((value,))}"
    if hasattr(value, "item") and hasattr(value, "dtype") and not hasattr(value, "shape"):
        return repr(value.item())  # a numpy scalar
    if isinstance(value, types.ModuleType):
        return _module(value)
    if isinstance(value, functools.partial):
        return _callable_text(value, seen, opaque)
    if isinstance(value, (type, types.FunctionType)):
        return _definition(value, seen, opaque)
    if isinstance(value, types.BuiltinFunctionType):  # torch.relu: its repr shows an address
        return f"builtin {value.__module__}.{value.__qualname__}"
    return _object(value, name, opaque)


def _module(module: types.ModuleType) -> str:
    """A module by name when installed (torch, numpy); the user's own by its file's hash, so
    ``lambda: mymodels.mlp()`` changes with ``mymodels.py``."""
    path = getattr(module, "__file__", None)
    if not path or is_installed(path):
        return f"module {module.__name__}"
    from initlab.usercode.specs import file_digest

    check_loaded(module, path)
    return f"module {module.__name__} from file {file_digest(path)}"


def _is_array(value: object) -> bool:
    module = type(value).__module__
    return module.startswith(("torch", "numpy")) and hasattr(value, "shape")


def _definition(value: object, seen: dict[int, object], opaque: list[str]) -> str:
    """A function or class: by name when installed, else by its file's or its own source;
    a class also by what its methods, properties and attributes read (:func:`_class_text`)."""
    label = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    if id(value) in seen:
        return label
    seen[id(value)] = value  # kept alive: its id is not reused
    module = sys.modules.get(getattr(value, "__module__", "") or "")
    main = getattr(value, "__module__", None) == "__main__"
    path = None if main else getattr(module, "__file__", None)
    if path and is_installed(path):
        return label
    if path:
        from initlab.usercode.specs import file_digest

        check_loaded(module, path)
        return f"{label} from file {file_digest(path)}"
    if isinstance(value, type):
        return f"{label} {_source(value) or ''} {_class_text(value, seen, opaque)}"
    return f"{label} {_callable_text(value, seen, opaque)}"


def _class_text(cls: type, seen: dict[int, object], opaque: list[str]) -> str:
    """A notebook class by its own attributes (functions with what they read, properties,
    static and class methods, values) and its bases that are not installed."""
    parts = [_definition(base, seen, opaque) for base in cls.__bases__ if base is not object]
    for key, attr in vars(cls).items():
        if key.startswith("__") and key not in ("__init__", "__call__"):
            continue
        if isinstance(attr, property):
            attr = attr.fget  # a setter is not read when the model is built
        elif isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, types.FunctionType):
            parts.append(f"{key}: {_callable_text(attr, seen, opaque)}")
        else:
            parts.append(f"{key}: {_describe(attr, key, seen, opaque)}")
    return "\n".join(parts)


def is_installed(path: str) -> bool:
    """Whether ``path`` lies in the Python installation (stdlib, site-packages)."""
    resolved = Path(path).resolve()
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(root in resolved.parents for root in roots) or "site-packages" in resolved.parts


def _object(value: object, name: str, opaque: list[str]) -> str:
    """An instance: an ``nn.Module`` by its repr and weights; others by a repr that does not
    show an address, else by type (and ``name`` goes to ``opaque``)."""
    state = getattr(value, "state_dict", None)
    if callable(state) and hasattr(value, "parameters"):
        tensors = tuple(state().values())
        return f"{value!r} weights {arrays_digest(tensors)}"
    text = repr(value)
    if " at 0x" in text:
        opaque.append(f"{name} (a {type(value).__name__})")
        return type(value).__qualname__
    return text
