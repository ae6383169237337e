"""Command lines built from a base and overrides, as the tests write them.

``initlab`` refuses an option given twice (``--epochs 1 … --epochs 5``), so a test that
adds ``--epochs 5`` to a base with ``--epochs 1`` merges them: :func:`merged`.
"""

from __future__ import annotations

REPEATABLE = ("--model-arg",)
"""Options that collect every value given (never merged)."""


def merged(*parts: list[str]) -> list[str]:
    """``parts`` concatenated, where an option given again replaces its earlier value in
    place (``["--epochs", "1", "--seeds", "2"]`` + ``["--epochs", "5"]`` → ``--epochs 5
    --seeds 2``). A token after ``--x`` that does not start with ``--`` is its value;
    tokens before the first option (the command, a spec path) are kept as they are."""
    tokens = [t for part in parts for t in part]
    head: list[str] = []
    options: dict[str, list[str]] = {}
    repeated: list[list[str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            head.append(token)
            i += 1
            continue
        name = token.partition("=")[0]
        takes = "=" not in token and i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
        item = tokens[i : i + 1 + takes]
        if name in REPEATABLE:
            repeated.append(item)
        else:
            options[name] = item
        i += 1 + takes
    return [
        *head,
        *(t for item in options.values() for t in item),
        *(t for r in repeated for t in r),
    ]
