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
        return yaml.safe_load
    if suffix == ".json":
        return json.loads
    named = f"unknown spec format '{suffix}'" if suffix else "a spec file needs a suffix"
    raise InitlabError(f"{named}: use .toml, .yaml/.yml or .json")
