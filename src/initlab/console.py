"""Printing for the command line and the sweep display: DataFrames as Rich tables, and
warnings as one ``note:`` line."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table


def print_frame(frame: pd.DataFrame, console: Console, *, title: str | None = None) -> None:
    """Print ``frame`` as a table; floats with 4 significant decimals, NaN and None as ``—``.
    Numbers are never wrapped; text too long for the terminal (an init spec such as
    ``plan+orthogonal(gain=1.41)+fixup``) folds onto more lines instead of squeezing the
    numbers out of sight."""
    table = Table(title=title, header_style="bold")
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        justify = "right" if numeric else "left"
        table.add_column(str(column), justify=justify, no_wrap=numeric, overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:.4g}"
    return str(value)


PACKAGE = str(Path(__file__).resolve().parent)


def warning_line(message, category, filename, lineno) -> str:
    """One line for a warning: initlab's notes (a ``UserWarning`` raised from initlab's own
    code: a fallback, layers a scheme leaves alone) as ``note: ...``; any other warning
    (torch's, your model's) as ``Category: text (file:line)``, without the source line."""
    text = str(message).strip().replace("\n", " ")
    ours = str(Path(filename).resolve()).startswith(PACKAGE) if filename else False
    if category is UserWarning and ours:
        return f"note: {text}"
    return f"{category.__name__}: {text} ({filename}:{lineno})"


def show_note(message, category, filename, lineno, file=None, line=None) -> None:
    """A :func:`warnings.showwarning` printing :func:`warning_line` on stderr."""
    print(warning_line(message, category, filename, lineno), file=file or sys.stderr)
