"""The ``initlab`` command line: ``compare``, ``list`` and friends.

Each command lives in its own module and only parses options, calls the Python API and
prints. User mistakes print one ``error:`` line and exit with status 2 — never a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from initlab.errors import InitlabError

app = typer.Typer(
    name="initlab",
    help="initlab — a weight-initialization laboratory for PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def version_lines() -> list[str]:
    """initlab, torch and Python versions, and the BLAS kernels matrix products run on."""
    import platform

    import torch

    import initlab
    from initlab import mkl_dispatch

    return [
        f"initlab {initlab.__version__}",
        f"torch {torch.__version__}, Python {platform.python_version()}",
        f"BLAS: {mkl_dispatch.blas_description()} (override: {mkl_dispatch.status()})",
    ]


def _print_version(value: bool) -> None:
    if value:
        print("\n".join(version_lines()))
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Show versions and exit."
    ),
) -> None:
    """initlab — a weight-initialization laboratory for PyTorch."""


def _register_commands() -> None:
    """Import every ``initlab/cli/*_cmd.py``: each registers its command(s) on ``app``."""
    for module in pkgutil.iter_modules(__path__):
        if module.name.endswith("_cmd"):
            importlib.import_module(f"{__name__}.{module.name}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (the console script exits with it)."""
    _register_commands()
    try:
        app(args=argv, prog_name="initlab")  # standalone mode: always ends in SystemExit
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InitlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
