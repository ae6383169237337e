"""Comma-separated lists of specs, as the command line and ``initlab.compare("a,b")`` take
them: ``"orthogonal(gain=1.4),variance_scaling(scale=2, mode=fan_in)"`` is two items.

A light module (no torch), so that ``initlab.cli`` can parse options before torch loads.
"""

from __future__ import annotations

from initlab.errors import InitlabError, option, quoted


def split_list(text: str, flag: str | None = None) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]``; commas inside parentheses do not split, so
    ``"orthogonal(gain=1.4),variance_scaling(scale=2, mode=fan_in)"`` is two items. A
    mistake names ``flag`` (``--inits``), as the user's surface spells it, when given."""
    named = f"{option(flag)}: " if flag else ""
    items, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    if "" in items[:-1] and any(items):  # "a,,b": an item left out? (a trailing comma is fine)
        raise InitlabError(
            f"{named}{quoted(text)} has an empty item between commas: remove it or fill it in"
        )
    items = [i for i in items if i]
    if not items:
        raise InitlabError(f"{named}expected a comma-separated list, got {quoted(text)}")
    return items


def repeated(items: list) -> object | None:
    """The first item ``items`` lists a second time (``["init", "init"]`` → ``"init"``)."""
    return next((item for i, item in enumerate(items) if item in items[:i]), None)


def grouping_columns(columns: object, name: str, present: list[str] | None) -> list[str]:
    """``group_by``/``within`` as a list of column names: one string is one name (``"init"``
    was read as its letters, ``KeyError: 'i'``), a name given twice counts once (stores
    written before specs refused it), and a name ``present`` (the runs' columns; ``None``:
    not checked) lacks is one line naming the columns there are."""
    names = [columns] if isinstance(columns, str) else list(columns or ())
    if not all(isinstance(n, str) for n in names) or (name == "group_by" and not names):
        raise InitlabError(f"{name} takes column names (str), e.g. ['init'], got {columns!r}")
    missing = [n for n in names if present is not None and n not in present]
    if missing:
        shown = ", ".join(c for c in present if c not in ("run_id", "message"))[:300]
        raise InitlabError(f"{name}: {', '.join(missing)} is not a column of the runs ({shown})")
    return list(dict.fromkeys(names))
