"""Reading a spec file's text (TOML, YAML or JSON), and a reader's error on one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from initlab.errors import InitlabError


def read_error(exc: Exception) -> str:
    """A reader's error on one line: PyYAML's ``problem`` at its line and column, with its
    ``context`` (``while parsing a flow sequence``) and where that began; else the text."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return " ".join(str(exc).split())
    context, began = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    at = f" at line {began.line + 1}, column {began.column + 1}" if began is not None else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (
        f" ({context}{at})" if context else ""
    )


def reader(suffix: str) -> Callable[[str], Any]:
    """The function that reads a spec file's text of this suffix into a table."""
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                message = "reading TOML on Python 3.10 needs tomli: pip install tomli"
                raise InitlabError(message) from None
        return tomllib.loads
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InitlabError(
                "reading YAML specs needs PyYAML: pip install pyyaml (or write the spec as TOML)"
            ) from None
        return _yaml_reader(yaml)
    if suffix == ".json":
        return lambda text: json.loads(text, object_pairs_hook=_unique_pairs)
    named = f"unknown spec format '{suffix}'" if suffix else "a spec file needs a suffix"
    raise InitlabError(f"{named}: use .toml, .yaml/.yml or .json")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice (``json`` keeps the last one
    silently, so ``"inits"`` written twice would sweep only the second list)."""
    table: dict[str, Any] = {}
    for key, value in pairs:
        if key in table:
            raise InitlabError(f"key '{key}' is given twice in one table; keep one")
        table[key] = value
    return table


def _yaml_reader(yaml: Any) -> Callable[[str], Any]:
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the
    last silently), naming the key and its second line."""

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may override
                    continue
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    line = key_node.start_mark.line + 1
                    raise InitlabError(
                        f"line {line}: key '{key}' is given twice in one table; keep one"
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return lambda text: yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no objects
