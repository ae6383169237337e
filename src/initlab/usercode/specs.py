"""The user's own code and files: ``--model`` and ``--data`` specs.

A *user spec* names something initlab imports and runs, or reads:

- ``module:function`` — ``function`` in an importable module (the current directory is
  searched first, as ``python -m`` does);
- ``path/to/file.py:function`` — ``function`` in a Python file, imported from its path;
- ``path/to/file.npz`` / ``.pt`` / ``.pth`` — a data file (``--data`` only).

**Importing a module runs its code**: pass only specs you trust, as with ``python file.py``.

Every run key includes :func:`source_fingerprint` of its model and data specs (a hash of
the source file or data file), so editing the model or replacing the data never silently
resumes runs trained on the old one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from initlab.errors import (
    InitlabError,
    UnknownNameError,
    first_line,
    option,
    permission_denied,
)
from initlab.usercode.inprocess import given_as, is_registered, registered_callable
from initlab.usercode.loaded import check_loaded

DATA_SUFFIXES = (".npz", ".pt", ".pth")
RELATIVE = "relative paths, also a spec file's, are read from the current directory"


def is_user_spec(text: object) -> bool:
    """``True`` for ``module:function``, ``file.py:function`` and data-file specs (and a bare
    ``file.py``, so that :func:`split_spec` can ask for its function)."""
    if not isinstance(text, str):
        return False
    return ":" in text or text.lower().endswith((*DATA_SUFFIXES, ".py"))


def is_data_file(text: str) -> bool:
    """``True`` for ``.npz`` / ``.pt`` / ``.pth`` paths."""
    return text.lower().endswith(DATA_SUFFIXES)


def split_spec(spec: str, flag: str = "--model") -> tuple[str, str]:
    """``"pkg.mod:build"`` → ``("pkg.mod", "build")``; clear error when malformed, naming
    ``flag`` as the user's surface spells it (:func:`initlab.errors.option`)."""
    target, sep, name = spec.rpartition(":")
    if not sep and spec.strip().lower().endswith(".py"):
        raise InitlabError(
            f"{option(flag)} {spec} names a file, not the function in it to call: "
            f"write {spec.strip()}:function (e.g. {spec.strip()}:build)"
        )
    if not sep or not target.strip() or not name.strip():
        raise InitlabError(
            f"{option(flag)} takes module:function or path/to/file.py:function "
            f"(e.g. mymodels:build), got '{spec}'"
        )
    return target.strip(), name.strip()


@contextlib.contextmanager
def _cwd_on_path(*more: str) -> Iterator[None]:
    """Let ``mymodule:build`` find ``mymodule.py`` in the current directory (and a module
    the user's file imports find its neighbours in ``more`` directories, as when Python
    runs that file as a script)."""
    added = [d for d in dict.fromkeys([os.getcwd(), *more]) if d not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for directory in added:
            if directory in sys.path:
                sys.path.remove(directory)


def _calling_on_path(function: Callable, *directories: str) -> Callable:
    """``function``, called with ``directories`` on ``sys.path``: a factory that imports a
    module beside it when called (``import blocks`` inside ``build``) finds it then too,
    not only while its file is imported. Classes are returned as they are."""
    if not isinstance(function, types.FunctionType):
        return function

    @functools.wraps(function)
    def called(*args, **kwargs):
        with _cwd_on_path(*directories):
            return function(*args, **kwargs)

    return called


def _import_file(path: Path, flag: str):
    """Import ``path`` as a module named after its resolved path and content (with the
    helpers it imports, :func:`source_fingerprint`): imported once per process and version,
    so an edited file, or an edited helper, is imported afresh (as its runs' keys change)."""
    resolved = path.resolve()
    check_readable(resolved, flag, path)
    if resolved.is_dir():
        raise InitlabError(
            f"{option(flag)} {path} is a directory; expected path/to/file.py:function or "
            "module:function"
        )
    if not resolved.is_file():
        where = "" if path.is_absolute() else f" in {Path.cwd()} ({RELATIVE})"
        raise InitlabError(f"{option(flag)}: no such file '{path}'{where}")
    version = f"{resolved}|{python_fingerprint(resolved)}"  # its helpers included
    digest = hashlib.sha256(version.encode()).hexdigest()[:12]
    name = f"initlab_user_{resolved.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    forget_helpers(resolved)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise InitlabError(f"{option(flag)}: cannot import '{path}' (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _cwd_on_path(str(resolved.parent)):
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a script's sys.exit() at import: not silent
            del sys.modules[name]
            raise InitlabError(
                f"{option(flag)}: importing '{path}' failed: {first_line(exc)}"
            ) from None
    return module


def check_readable(path: Path, flag: str, given: object = None) -> None:
    """Refuse ``path`` (given as ``given``, by default itself) in one line when this user
    may not read it or search a directory above it (where ``Path.exists()`` raises
    ``PermissionError``); a missing path passes, for the caller to say so."""
    try:
        if path.is_file():
            with open(path, "rb"):
                pass
    except PermissionError as exc:
        raise permission_denied(flag, path if given is None else given, exc) from None


def _import_module(name: str, flag: str):
    """``name`` imported; a module initlab imported is imported again when its source file
    changed since (as its runs' keys do): ``sys.modules`` would otherwise keep running the
    old code under the new key, in a sweep's worker. A module the user's code imported (a
    notebook's ``import mymodels``) is theirs: one whose functions differ from its file's
    is refused with what to do (:func:`initlab.usercode.loaded.check_loaded`), never reloaded
    under their objects (``isinstance`` against its old classes would fail)."""
    with _cwd_on_path():
        try:
            theirs = name in sys.modules and name not in _IMPORTED
            module = importlib.import_module(name)
            source = getattr(module, "__file__", None)
            digest = python_fingerprint(Path(source)) if source else None
            if digest is None:
                return module
            if theirs:
                check_loaded(module, source)
            elif _IMPORTED.setdefault(name, digest) != digest:
                forget_helpers(Path(source))
                module = importlib.reload(module)
                _IMPORTED[name] = digest
            return module
        except InitlabError:
            raise
        except (Exception, SystemExit) as exc:  # a script's sys.exit() at import: not silent
            raise InitlabError(
                f"{option(flag)}: cannot import module '{name}': {first_line(exc)}"
            ) from None


def forget_helpers(path: Path) -> None:
    """Drop from ``sys.modules`` the user's own modules ``path`` imports
    (:func:`initlab.usercode.imports.local_files`), so that importing it again runs them as
    their files are now: a cached ``helper`` would train the old code under the key of the
    new one."""
    from initlab.usercode.imports import local_files

    files = {str(f) for f in local_files(path)}
    if not files:  # no helper: nothing to look for among the loaded modules
        return
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if source and str(Path(source).resolve()) in files:
            del sys.modules[name]


_IMPORTED: dict[str, str] = {}
"""Module name → the digest of the source initlab imported it from, in this process."""


def file_digest(path: str) -> str | None:
    """sha256 (16 hex digits) of the file at ``path`` (cached until it changes); ``None``
    when it cannot be read."""
    try:
        stat = os.stat(path)
        return _file_digest(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:  # unreadable: its loader says so (check_readable)
        return None


def factory_raised(exc: BaseException, args: Mapping[str, Any]) -> str:
    """``RuntimeError: boom (called with width=64, depth=2)``: what a user's factory raised
    (its first line) and the arguments it was called with (none: nothing added)."""
    called = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return first_line(exc) + (f" (called with {called})" if called else "")


def load_callable(spec: str, flag: str = "--model") -> Callable:
    """The callable named by ``spec`` (``module:function`` or ``file.py:function``).

    Raises :class:`InitlabError` with one line for every way this can fail: malformed spec,
    missing file or module, an import that raises, a missing or non-callable attribute; it
    names ``flag`` (``--model``) as the user's surface spells it (``model`` from Python).
    """
    if is_registered(spec):
        return registered_callable(spec, flag)
    target, func_name = split_spec(spec, flag)
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(Path(target), flag)
    else:
        module = _import_module(target, flag)
    factory = getattr(module, func_name, None)
    source = getattr(module, "__file__", None)
    if factory is None:
        public = [n for n, v in vars(module).items() if not n.startswith("_") and callable(v)]
        raise UnknownNameError(f"function in '{target}' for {option(flag)}", func_name, public)
    if not callable(factory):
        raise InitlabError(
            f"{given_as(flag, spec)}: '{func_name}' is a {type(factory).__name__}, not a function"
        )
    by_path = target.endswith(".py") or os.sep in target or "/" in target
    where = [str(Path(source).resolve().parent)] if source and by_path else []
    return _calling_on_path(factory, os.getcwd(), *where)  # a module's own folder: not added


def source_path(spec: str) -> Path | None:
    """The file behind ``spec``: the data file, the ``.py`` file, or the module's source
    file (found without executing the module); ``None`` when it cannot be located."""
    if is_data_file(spec):
        return Path(spec)
    target, _, _ = spec.rpartition(":")
    if target.endswith(".py") or "/" in target or os.sep in target:
        return Path(target)
    with _cwd_on_path():
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            return None
    origin = getattr(found, "origin", None)
    return Path(origin) if origin and origin not in ("built-in", "frozen") else None


def source_fingerprint(spec: str) -> str:
    """``sha256`` (16 hex digits) of the file behind ``spec`` and, for a Python file, of the
    user's own modules it imports (:func:`initlab.usercode.imports.local_files`: editing a
    helper starts new runs too); ``"missing"`` when there is no file yet (the run will then
    fail with a clear error when it tries to load it)."""
    if is_registered(spec):
        return spec.rpartition(":")[2]  # the hash of the source or of the data
    path = source_path(spec)
    try:
        if path is None or not path.is_file():
            return "missing"
    except OSError:  # a directory above it unreadable: its loader says so (check_readable)
        return "missing"
    return python_fingerprint(path) if path.suffix == ".py" else str(file_digest(str(path)))


def python_fingerprint(path: Path) -> str:
    """:func:`file_digest` of a Python file, combined with those of the user's own modules
    it imports (:func:`initlab.usercode.imports.local_files`); a file without any keeps its own
    digest, as before helpers were followed."""
    from initlab.usercode.imports import local_files

    digest = str(file_digest(str(path)))
    helpers = local_files(path)
    if not helpers:
        return digest
    parts = [digest, *(f"{h.name}:{file_digest(str(h))}" for h in helpers)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """Content hash, cached by (path, mtime, size): a file is read once per change."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
