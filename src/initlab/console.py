"""Printing for the command line and the sweep display: DataFrames as Rich tables, and
warnings as one ``note:`` line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from initlab.global_state import preserved_globals
from initlab.notes import InitlabNote

with preserved_globals():  # importing rich.style draws from `random`: a seeded stream moved
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

if TYPE_CHECKING:
    import pandas as pd


def print_frame(frame: pd.DataFrame, console: Console, *, title: str | None = None) -> None:
    """Print ``frame`` as a table; floats with 4 significant decimals, NaN and None as ``—``.
    The first column (the group's name) is never wrapped when it has at most
    :data:`KEEP_WHOLE` characters; a longer one (an init spec such as
    ``plan+orthogonal(gain=1.41)+fixup,...``) and any other text too long for the terminal
    folds onto more lines instead of squeezing the numbers out of sight."""
    from pandas.api.types import is_numeric_dtype  # pandas (~0.4 s): not on `initlab --help`

    table = Table(title=Text(title) if title is not None else None, header_style="bold")
    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    for i, column in enumerate(frame.columns):
        numeric = is_numeric_dtype(frame[column])
        longest = max((len(row[i]) for row in cells), default=0)
        whole = i == 0 and longest <= KEEP_WHOLE
        justify = "right" if numeric else "left"
        table.add_column(str(column), justify=justify, no_wrap=whole, overflow="fold")
    for row in cells:  # as text: a path's [v2] or a name's :fire: is not markup or emoji
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


KEEP_WHOLE = 32
"""A first-column cell up to this many characters is never wrapped."""


def stdout_console(width: int | None = None) -> Console:
    """The console a command prints its results on: the terminal's width, or
    :data:`PIPE_WIDTH` columns when the output goes to a file or a pipe, so that a saved
    table reads as a wide terminal shows it and names are not split at Rich's default 80
    (no markup, no emoji: :func:`stderr_console`)."""
    width = width or (None if sys.stdout.isatty() else PIPE_WIDTH)
    return Console(width=width, markup=False, emoji=False)


def stderr_console() -> Console:
    """The console a command prints its progress, notes and errors on.

    Neither console reads markup or emoji codes: what they print holds paths, layer names
    and formulas (``exp[v2]/…``, ``br[red]x`` printed ``exp/…`` or red; ``:fire:`` an emoji);
    a style is given with ``style=`` or :class:`rich.text.Text`."""
    return Console(stderr=True, markup=False, emoji=False)


PIPE_WIDTH = 160


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:.4g}"
    return str(value)


def warning_line(message, category, filename, lineno) -> str:
    """One line for a warning: initlab's notes (:class:`initlab.notes.InitlabNote`) as
    ``note: ...``; any other warning (torch's, your model's) as ``Category: text
    (file:line)``, without the source line."""
    text = str(message).strip().replace("\n", " ")
    if issubclass(category, InitlabNote):
        return f"note: {text}"
    return f"{category.__name__}: {text} ({filename}:{lineno})"


class NotePrinter:
    """A :func:`warnings.showwarning` printing :func:`warning_line` on stderr, each distinct
    line once per command (a check before training and the training itself may note the
    same thing)."""

    def __init__(self) -> None:
        self.shown: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = warning_line(message, category, filename, lineno)
        if text not in self.shown:
            self.shown.add(text)
            print(text, file=file or sys.stderr)
