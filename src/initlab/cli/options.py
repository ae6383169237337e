"""Parsing of the comma-separated option values the commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from initlab.errors import InitlabError

# Options shared by several commands (Typer's Annotated style).
Dataset = Annotated[str, typer.Option(help="fashion-mnist, mnist, digits, mnist1d, synthetic")]
Hidden = Annotated[str, typer.Option(help="hidden widths, e.g. 300,100")]
Activation = Annotated[str, typer.Option(help="relu, tanh, sigmoid, ... (see `initlab list`)")]
BatchNorm = Annotated[bool, typer.Option("--batch-norm/--no-batch-norm")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="where to look for dataset files first")
]
Seeds = Annotated[str, typer.Option(help="a count (3) or explicit seeds (0,5,7 or 10-14)")]


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]``; commas inside parentheses do not split, so
    ``"orthogonal(gain=1.4),variance_scaling(scale=2, mode=fan_in)"`` is two items."""
    items, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    items = [i for i in items if i]
    if not items:
        raise InitlabError(f"expected a comma-separated list, got '{text}'")
    return items


def parse_widths(text: str) -> tuple[int, ...]:
    """``"300,100"`` → ``(300, 100)``; ``""`` or ``"none"`` → ``()`` (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        widths = tuple(int(w) for w in split_list(text))
    except ValueError:
        raise InitlabError(f"hidden widths must be integers like 300,100; got '{text}'") from None
    if any(w <= 0 for w in widths):
        raise InitlabError(f"hidden widths must be positive, got '{text}'")
    return widths


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → seeds 0, 1, 2; ``"0,5,7"`` → those seeds; ``"10-14"`` → 10..14."""
    try:
        if "," in text:
            return [int(s) for s in split_list(text)]
        if "-" in text.strip("-"):
            lo, hi = (int(p) for p in text.split("-", 1))
            return list(range(lo, hi + 1))
        count = int(text)
    except ValueError:
        raise InitlabError(
            f"--seeds takes a count (3) or seeds (0,5,7 or 10-14); got '{text}'"
        ) from None
    if count < 1:
        raise InitlabError(f"--seeds must be at least 1, got {count}")
    return list(range(count))


def parse_bias(text: str) -> str | float:
    """``--bias``: a number is a constant; anything else a policy or initializer spec."""
    try:
        return float(text)
    except ValueError:
        return text
