"""``initlab list``: what initlab knows — initializers, activations, datasets, optimizers."""

from __future__ import annotations

import typer
from rich.table import Table

from initlab.cli import app
from initlab.config import OPTIMIZERS
from initlab.console import stdout_console
from initlab.errors import UnknownNameError

SECTIONS = ("initializers", "activations", "datasets", "optimizers")
out = stdout_console()


@app.command("list")
def list_command(
    what: str = typer.Argument("all", help="all, initializers, activations, datasets, optimizers"),
) -> None:
    """Show the initializers (formula, origin), activations (gain), datasets, optimizers."""
    if what != "all" and what not in SECTIONS:
        raise UnknownNameError("section", what, (*SECTIONS, "all"))
    for section in SECTIONS:
        if what in ("all", section):
            out.print(_TABLES[section]())


def _initializer_table() -> Table:
    import initlab.initializers as initializers

    table = Table(title="initializers", header_style="bold")
    for column in ("name", "origin", "formula", "parameters"):
        table.add_column(column, overflow="fold")
    for name in initializers.names():
        meta = initializers.info(name)
        params = ", ".join(f"{k}={v!r}" for k, v in meta.get("params", {}).items())
        cells = (name, meta.get("origin", ""), meta.get("formula", ""), params)
        table.add_row(*(str(c) for c in cells))  # formulas hold [..]: the console reads no markup
    return table


def _activation_table() -> Table:
    import initlab.activations as activations
    from initlab.theory.gains import gain_table

    title = "activations (gain = 1/sqrt(E[phi(z)²]) over z ~ N(0, 1), where PyTorch has none)"
    table = Table(title=title)
    for column in ("name", "phi", "gain", "PyTorch gain", "numeric gain"):
        table.add_column(column, overflow="fold")
    for row in gain_table():
        act = activations.get(row["activation"])
        torch_gain = row["pytorch"]
        table.add_row(
            act.name,
            act.description,
            f"{row['auto']:.4f}",
            "—" if torch_gain is None else f"{torch_gain:.4f}",
            f"{row['numeric']:.4f}",
        )
    return table


def _dataset_table() -> Table:
    import initlab.data as data

    table = Table(title="datasets", header_style="bold")
    for column in ("name", "description", "availability"):
        table.add_column(column, overflow="fold")
    for name in data.names():
        description = str(data.info(name).get("description", ""))
        table.add_row(name, description, data.availability(name))
    return table


def _optimizer_table() -> Table:
    from initlab.train.optimizers import DESCRIPTIONS

    table = Table(title="optimizers", header_style="bold")
    table.add_column("name")
    table.add_column("update")
    for name in OPTIMIZERS:
        table.add_row(name, DESCRIPTIONS[name])
    return table


_TABLES = {
    "initializers": _initializer_table,
    "activations": _activation_table,
    "datasets": _dataset_table,
    "optimizers": _optimizer_table,
}
