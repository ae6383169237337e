"""Printing DataFrames as Rich tables: shared by the command line and the sweep display."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table


def print_frame(frame: pd.DataFrame, console: Console, *, title: str | None = None) -> None:
    """Print ``frame`` as a table; floats with 4 significant decimals, NaN as ``—``."""
    table = Table(title=title, header_style="bold")
    for i, column in enumerate(frame.columns):
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        justify = "right" if numeric else "left"
        table.add_column(str(column), justify=justify, no_wrap=i == 0)
    for _, row in frame.iterrows():
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:.4g}"
    return str(value)
