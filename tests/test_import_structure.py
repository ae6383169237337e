"""The package's import graph: no cycles, and no module importing the package root.

Edges are read with :mod:`ast` from the source, never by importing it. ``import a.b.c`` and
``from a.b import c`` run ``a/__init__`` and ``a/b/__init__`` first, so an import also
reaches every package above its target (except those above the importer itself, which are
already running). Cycles count module-level imports only: a function's import runs when it
is called, after every module has loaded, and ``if TYPE_CHECKING:`` imports never run.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "initlab"
Graph = dict[str, set[str]]


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name → source file, for every module of the package."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(tree: ast.Module, top_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module: those that run when it loads, or all of them."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif not (top_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []))

    visit(tree.body)
    return out


def targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known) -> list[str]:
    """The modules one import statement names (a submodule where ``from`` names one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        here = here[: len(here) - node.level + 1]
        base = ".".join([*here, *([node.module] if node.module else [])])
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def import_graph(src: Path = SRC, top_level: bool = True) -> Graph:
    """Module → the package's modules it runs by importing (its targets and their parents)."""
    known = modules(src)
    graph: Graph = {name: set() for name in known}
    for name, path in known.items():
        for node in imports(ast.parse(path.read_text()), top_level):
            for target in targets(name, path, node, known):
                parts = target.split(".")
                for k in range(1, len(parts) + 1):
                    reached = ".".join(parts[:k])
                    if reached in known and reached != name and not name.startswith(f"{reached}."):
                        graph[name].add(reached)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Import cycles, one per call of :mod:`graphlib` (each is cut and the search repeated)."""
    graph = {k: set(v) for k, v in graph.items()}
    found = []
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
            return found
        except graphlib.CycleError as err:
            cycle = err.args[1]  # [a, ..., z, a]: each is imported by the next
            found.append(cycle)
            graph[cycle[-1]].discard(cycle[-2])


def root_imports(src: Path = SRC) -> list[str]:
    """``module:line: statement`` for each ``import initlab`` / ``from initlab import X``."""
    found = []
    for name, path in modules(src).items():
        for node in imports(ast.parse(path.read_text()), top_level=False):
            if name != PACKAGE and (
                (isinstance(node, ast.Import) and any(a.name == PACKAGE for a in node.names))
                or (isinstance(node, ast.ImportFrom) and not node.level and node.module == PACKAGE)
            ):
                found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_graph_sees_imports_and_the_packages_they_run():
    graph = import_graph()
    assert "initlab.probe.metrics" in graph["initlab.probe.diagnosis"]
    assert "initlab.train" in graph["initlab.sweep.python_api"]  # runs train/__init__ (.result)
    assert "initlab.probe" not in graph["initlab.probe.diagnosis"]  # its own package
    everything = import_graph(top_level=False)
    assert all(graph[name] <= everything[name] for name in graph)


def test_planted_cycles_are_found_and_deferred_imports_are_not_cycles(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    for path, text in {
        "__init__.py": "",
        "a.py": "import json\n",
        "sub/__init__.py": "from initlab import a\n",
        "sub/c.py": "X = 1\n",
    }.items():
        (package / path).write_text(text)
    assert cycles(import_graph(tmp_path)) == []
    (package / "a.py").write_text("from initlab.sub.c import X\n")  # runs sub/__init__ first
    assert [set(c) for c in cycles(import_graph(tmp_path))] == [{"initlab.a", "initlab.sub"}]
    (package / "a.py").write_text("def f():\n    from initlab.sub.c import X\n")
    assert cycles(import_graph(tmp_path)) == []
    assert cycles(import_graph(tmp_path, top_level=False)) != []
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import initlab.sub\n"
    )
    assert cycles(import_graph(tmp_path)) == []
    assert root_imports(tmp_path) == ["initlab.sub:1: from initlab import a"]


def reaches(graph: Graph, start: str, goal: str) -> bool:
    """Whether importing ``start`` can end up importing ``goal``."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            if nxt == goal:
                return True
            seen.add(nxt)
            todo.append(nxt)
    return False


def test_the_cycles_of_issue_13_stay_broken_even_through_deferred_imports():
    everything = import_graph(top_level=False)
    for a, b in [
        ("initlab.initializers.parse", "initlab.initializers.registry"),
        ("initlab.probe.diagnosis", "initlab.probe.plots"),
        ("initlab.results", "initlab.report"),
    ]:
        assert reaches(everything, b, a) or reaches(everything, a, b), (a, b)  # still related
        assert not (reaches(everything, a, b) and reaches(everything, b, a)), (a, b)


def test_the_package_has_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles (module level):\n" + "\n".join(
        " imports ".join(c[::-1]) for c in found
    )


ROOT_IMPORTS_TO_FIX: set[str] = set()
"""Imports of the package root still to replace (issue #13): this list may only shrink."""


def test_modules_import_their_neighbours_not_the_package_root():
    found = {line.split(":")[0] + ":" + line.split(":", 2)[2] for line in root_imports()}
    new = sorted(found - ROOT_IMPORTS_TO_FIX)
    assert new == [], "import the neighbour module, not the package root:\n" + "\n".join(new)
    fixed = sorted(ROOT_IMPORTS_TO_FIX - found)
    assert fixed == [], "fixed: remove from ROOT_IMPORTS_TO_FIX:\n" + "\n".join(fixed)


def test_only_the_command_line_imports_the_command_line():
    everything = import_graph(top_level=False)
    outside = {
        name
        for name, reached in everything.items()
        if "initlab.cli" in reached
        and not name.startswith("initlab.cli")
        and name != "initlab.__main__"
    }
    assert outside == set(), f"import initlab.cli only from the command line: {sorted(outside)}"
