"""Whether a module still runs the code its file holds.

A factory handed over as a Python object (``lambda: mymodels.mlp(64)``) is fingerprinted by
the file of each module it reads (:mod:`initlab.usercode.fingerprint`). Edit ``mymodels.py`` in a
notebook without reloading it, and the file's new hash names runs that would train the old
code still loaded; after a reload, those runs would be resumed as finished. So
:func:`check_loaded` compiles the file as it is now and refuses, in one line, a module in
which a function (or a method of its classes) differs from the one the file defines, by
bytecode, names or constants (not line numbers: moving code does not count). Only modules
Python's own source loader loaded are compared: an import hook (pytest's assertion
rewriting) loads other code from an unchanged file.
"""

from __future__ import annotations

import functools
import importlib.machinery
import os
import types
from pathlib import Path

from initlab.errors import InitlabError


def code_shape(code: types.CodeType) -> str:
    """What a code object computes, without where it is: its bytecode, the names it reads
    and its constants (nested code objects by their own shape)."""
    consts = [_constant(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names}|[{', '.join(consts)}]"


def _constant(value: object) -> str:
    """A code constant as text that is the same in every process: a set literal's frozenset
    by its sorted elements (its repr's order follows string hashing, which changes between
    processes), nested code by its shape."""
    if isinstance(value, types.CodeType):
        return code_shape(value)
    if isinstance(value, frozenset):
        return "frozenset({" + ", ".join(sorted(_constant(v) for v in value)) + "})"
    if isinstance(value, tuple):
        return "(" + ", ".join(_constant(v) for v in value) + ")"
    return repr(value)


def check_loaded(module: types.ModuleType, path: str) -> None:
    """Raise :class:`InitlabError` when a function or method of ``module`` differs from what
    its file ``path`` defines now; nothing when they agree or the file cannot be compiled
    (the run's own checks say what is wrong with it then)."""
    if not _plain_source(module) or module.__name__.split(".")[0] == "initlab":
        return
    try:
        stat = os.stat(path)
    except OSError:
        return
    for name, shape in _on_disk(path, stat.st_mtime_ns, stat.st_size):
        loaded = _loaded_code(module, name)
        if loaded is not None and code_shape(loaded) != shape:
            label = module.__name__
            raise InitlabError(
                f"{path} changed since this process imported it ({name.replace(':', '.')} "
                f"differs): the run would train the old code under the new file's key; "
                f"reload it (importlib.reload({label}), or restart the kernel) and call again"
            )


@functools.lru_cache(maxsize=64)
def _on_disk(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    """``(name, code_shape)`` of what ``path`` defines (:func:`_defined`), compiled once per
    version of the file (a factory's fingerprint checks its module once per function it
    reads); ``()`` when it cannot be compiled."""
    try:
        compiled = compile(Path(path).read_bytes(), path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ()
    return tuple((name, code_shape(code)) for name, code in _defined(compiled))


def _plain_source(module: types.ModuleType) -> bool:
    """Whether ``module`` was loaded from its source file by Python's own loader, so that its
    code is what compiling that file gives (an import hook, pytest's assertion rewriting say,
    loads other code from an unchanged file)."""
    return type(getattr(module, "__loader__", None)) is importlib.machinery.SourceFileLoader


def _defined(module_code: types.CodeType) -> list[tuple[str, types.CodeType]]:
    """``(name, code)`` of the functions a module's code defines at its top level, and
    ``(Class:method, code)`` of its classes' methods; a name defined twice (a property's
    getter and setter, ``typing.overload`` stubs, ``if …: def f … else: def f``) is left out:
    which of them the module holds cannot be told from the file."""
    found = []
    for const in module_code.co_consts:
        if not isinstance(const, types.CodeType):
            continue
        found.append((const.co_name, const))
        for inner in const.co_consts:  # a class body's methods
            if isinstance(inner, types.CodeType):
                found.append((f"{const.co_name}:{inner.co_name}", inner))
    names = [name for name, _ in found]
    return [(name, code) for name, code in found if names.count(name) == 1]


def _loaded_code(module: types.ModuleType, name: str) -> types.CodeType | None:
    """The code of the loaded function or method ``name`` (``Class:method``) when it is the
    one ``module``'s file defined by that name (not a decorator's wrapper); else ``None``."""
    owner, _, method = name.partition(":")
    value = vars(module).get(owner)
    if method:
        if not isinstance(value, type) or value.__module__ != module.__name__:
            return None
        value = vars(value).get(method)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
    code = getattr(value, "__code__", None)
    file = getattr(module, "__file__", None)
    if not isinstance(code, types.CodeType) or code.co_name != (method or owner):
        return None
    return code if file and Path(code.co_filename).resolve() == Path(file).resolve() else None
