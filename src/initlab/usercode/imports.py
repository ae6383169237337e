"""The user's own modules a model or data file imports, found without running it.

A run's key hashes the file behind ``--model file.py:build`` (:mod:`initlab.usercode.specs`); a
helper it imports (``from layers import Block``) decides the model as much. :func:`local_files`
reads the file's ``import`` statements with :mod:`ast` (nothing is executed), resolves each
top-level module name with :func:`importlib.util.find_spec` from the file's folder and the
current directory, and keeps those whose file lies outside the Python installation (not
torch, numpy, the standard library, or any installed distribution's package, even one
installed in place with ``pip install -e``), then does the same for each of them. A dotted
``import blocks.attention`` resolves the package ``blocks`` and then the submodule's file in
its folder, as Python would, without importing the package. Imports made at run time
(``importlib.import_module(name)``) are not seen.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from initlab.usercode.fingerprint import is_installed

MAX_FILES = 64
"""The most helper files followed from one user file (a vendored library stops here)."""
# Relative imports (``from . import layers`` in a package spec ``pkg.mod:build``) and
# namespace packages (a folder without ``__init__.py``) are not followed.


def local_files(path: Path) -> list[Path]:
    """The user's module files ``path`` imports, directly or through each other (module
    docstring), package ``__init__`` files on the way included, sorted; ``path`` itself is
    not among them."""
    start = path.resolve()
    found: set[Path] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        try:
            stat, places = current.stat(), (current.parent, Path.cwd())
            seen = tuple(f"{d}|{d.stat().st_mtime_ns}" for d in places)  # a file added
        except OSError:  # deleted meanwhile: its runs say so when they load it
            continue
        for name in _imported_names(str(current), stat.st_mtime_ns, stat.st_size):
            for target in _resolve(name, *seen):
                if target != start and target not in found and len(found) < MAX_FILES:
                    found.add(target)
                    todo.append(target)
    return sorted(found)


@lru_cache(maxsize=256)
def _imported_names(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The absolute module names the file's import statements name (relative ones skipped:
    a file named on the command line is no package member); cached by (path, mtime, size)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return ()
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return tuple(dict.fromkeys(names))


@lru_cache(maxsize=1024)
def _resolve(name: str, folder: str, cwd: str) -> tuple[Path, ...]:
    """The files of module ``name`` when it is the user's own (outside the installation),
    found from ``folder`` and ``cwd`` (each ``path|mtime``: a file added to or removed from
    either folder since is looked up again): a package's ``__init__.py`` and the
    submodule's file along a dotted name; empty otherwise."""
    folder, cwd = folder.rpartition("|")[0], cwd.rpartition("|")[0]
    head, *rest = name.split(".")
    if head in sys.builtin_module_names or head in sys.stdlib_module_names or head in _packaged():
        return ()
    origin = getattr(_find(head, folder, cwd), "origin", None)
    if not origin or origin in ("built-in", "frozen") or is_installed(origin):
        return ()
    files = [Path(origin)]
    for part in rest:  # a submodule's file, or a name inside the module (no file)
        if files[-1].name != "__init__.py":
            break
        base = files[-1].parent
        found = [c for c in (base / f"{part}.py", base / part / "__init__.py") if c.is_file()]
        if not found:
            break
        files.append(found[0])
    return tuple(f.resolve() for f in files if f.is_file())


def _find(name: str, folder: str, cwd: str):
    """:func:`importlib.util.find_spec` of a top-level ``name`` with ``folder`` and ``cwd``
    first on the path (finding a top-level module executes nothing)."""
    added = [d for d in (folder, cwd) if d not in sys.path]
    sys.path[:0] = added
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    finally:
        for directory in added:
            if directory in sys.path:
                sys.path.remove(directory)


@lru_cache(maxsize=1)
def _packaged() -> frozenset[str]:
    """Top-level names that an installed distribution provides (torch, initlab itself, a
    package of the user's installed with ``pip install -e``): libraries, by name, wherever
    their files lie; never followed, never imported again."""
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions())
