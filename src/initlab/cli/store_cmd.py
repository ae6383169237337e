"""``initlab store check DIR`` and ``initlab store repair DIR``: a results store's health."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from initlab.cli import app
from initlab.console import stdout_console
from initlab.errors import InitlabError

out = stdout_console()
store_app = typer.Typer(
    help="Check a results store, or salvage the finished runs of a damaged one.",
    no_args_is_help=True,
)
app.add_typer(store_app, name="store")

StoreArg = Annotated[
    Path, typer.Argument(metavar="DB_OR_DIR", help="a study directory or its initlab.db")
]


@store_app.command()
def check(path: StoreArg) -> None:
    """Print ok, or the damage (PRAGMA quick_check) and exit 2."""
    from initlab.store.damage import damaged_message
    from initlab.store.paths import no_store, read_path
    from initlab.store.repair import check_file

    db = read_path(path)
    if not db.exists():
        raise no_store(db)
    with _no_store_in_it():
        problem = check_file(db)
    if problem is not None:
        raise InitlabError(damaged_message(db, problem))
    out.print(f"{db}: ok", soft_wrap=True, highlight=False)


@store_app.command(name="repair")
def repair_cmd(path: StoreArg) -> None:
    """Salvage every readable finished run into a new store; keep the damaged file beside it."""
    from initlab.store.repair import repair

    with _no_store_in_it():
        report = repair(path)
    out.print(report.line(), soft_wrap=True, highlight=False)


@contextlib.contextmanager
def _no_store_in_it() -> Iterator[None]:
    """A file that is no SQLite file at all: the line says there is nothing to check or
    repair (a sweep into it says only that it will not write there)."""
    from initlab.store.repair import NOTHING_TO_REPAIR, NotSQLiteError

    try:
        yield
    except NotSQLiteError as exc:
        raise InitlabError(f"{exc}{NOTHING_TO_REPAIR}") from None
