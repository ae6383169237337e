"""The ``initlab`` command line: ``compare``, ``list`` and friends.

Each command lives in its own module and only parses options, calls the Python API and
prints. User mistakes print one ``error:`` line and exit with status 2 — never a traceback.

This module is the console script's target and imports no torch: :func:`main` applies
:mod:`initlab.mkl_dispatch` (unless ``--no-mkl-dispatch``) before any command loads it. The
command modules import torch, pandas, scipy and matplotlib (and initlab's modules that do)
inside their functions, so ``initlab --help``, ``initlab CMD --help`` and a usage mistake
answer without them (tests/test_cli_startup.py).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import pkgutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import typer

from initlab.cli.repeated import repeated_option
from initlab.console import NotePrinter
from initlab.errors import InitlabError, permission_denied, surface
from initlab.notes import forget_shown

app = typer.Typer(
    name="initlab",
    help="initlab — a weight-initialization laboratory for PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
NO_MKL_DISPATCH = "--no-mkl-dispatch"


def version_lines() -> list[str]:
    """initlab, torch and Python versions, and the BLAS kernels matrix products run on."""
    import platform

    import torch

    import initlab.mkl_dispatch as mkl_dispatch
    from initlab._version import __version__

    return [
        f"initlab {__version__}",
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
    no_mkl_dispatch: bool = typer.Option(
        False,
        NO_MKL_DISPATCH,
        help="Leave MKL's kernel choice alone on AMD CPUs (like INITLAB_MKL_DISPATCH=off; "
        "see docs/performance.md). Applied before any command starts.",
    ),
) -> None:
    """initlab — a weight-initialization laboratory for PyTorch."""


def _register_commands(args: list[str] | None = None) -> None:
    """Import the command modules (``initlab/cli/*_cmd.py``): each registers its command(s)
    on ``app``. When ``args`` name a command that has its own ``<name>_cmd.py``, only that
    one is imported. Otherwise (no command, ``--help``, a misspelled name whose suggestions
    need them all) every one is: they import nothing heavy until their command runs."""
    modules = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd"))
    command = next((arg for arg in args or [] if not arg.startswith("-")), None)
    if f"{command}_cmd" in modules:
        modules = [f"{command}_cmd"]
    for name in modules:
        importlib.import_module(f"{__name__}.{name}")
    apps = [app, *(group.typer_instance for group in app.registered_groups)]
    for info in (info for each in apps for info in each.registered_commands):
        if info.callback is not None and not hasattr(info.callback, "_says_interrupted"):
            info.callback = _saying_interrupted(info.callback)


def _saying_interrupted(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` (a command), printing ``interrupted`` on Ctrl-C or SIGTERM before it
    exits 130. Typer turns a KeyboardInterrupt into a bare exit 130 itself, so
    :func:`main` never saw it: a doctor or a scaling check stopped without a word. A
    command that reports its own interruption (a sweep: what is done, how to resume)
    exits 130 through ``typer.Exit`` and is left alone."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    run._says_interrupted = True  # type: ignore[attr-defined]
    return run


def apply_mkl_dispatch(args: list[str]) -> str:
    """Apply :mod:`initlab.mkl_dispatch` for this process and its workers, unless
    ``--no-mkl-dispatch`` is among the options before the command; its status line."""
    import initlab.mkl_dispatch as mkl_dispatch

    root_options = itertools.takewhile(lambda arg: arg.startswith("-"), args)
    if NO_MKL_DISPATCH in root_options:
        return mkl_dispatch.disable(NO_MKL_DISPATCH)
    return mkl_dispatch.enable()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler's stop) as Ctrl-C while the command line runs,
    from its first line: a sweep keeps its finished runs, writes their tables and prints the
    resume command, and a kill while the modules still import prints ``interrupted``,
    instead of dying silently. Only from the main thread, where Python handles signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: list[str]) -> int:
    """The command ``args`` name, run; its exit status. A usage mistake (an option that
    does not parse, an unknown command or option) is one ``error:`` line naming the help to
    read, as every other mistake is, not Click's boxed three. (Typer may vendor its own
    Click: its exceptions are recognized by their class names.)"""
    command = typer.main.get_command(app)
    if twice := repeated_option(command, args):
        print(f"error: {twice}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        code = command.main(args=args, prog_name="initlab", standalone_mode=False)
    except Exception as exc:
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "ClickException" not in kinds and "Abort" not in kinds:
            raise
        if "Abort" in kinds and isinstance(exc.__context__, EOFError):
            print("error: the input ended (EOF) where a command expected more", file=sys.stderr)
            return EXIT_USER_ERROR
        if "Abort" in kinds:
            raise KeyboardInterrupt from None
        ctx = getattr(exc, "ctx", None)
        if "NoArgsIsHelpError" in kinds:  # the help itself, printed as the error was made
            if message := exc.format_message().strip():
                print(message)
            return EXIT_USER_ERROR
        if "UsageError" in kinds:
            where = ctx.command_path if ctx is not None else "initlab"
            if where == "initlab" and args and args[0] in getattr(command, "commands", {}):
                where = f"initlab {args[0]}"  # an option's value missing: Click's ctx is the root
            print(f"error: {exc.format_message()} ({where} --help)", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    return code if isinstance(code, int) else 0


PATH_OPTIONS = ("--out", "--save", "--plot", "--data-dir")
"""Options that name a file or directory: an empty one would be the current directory."""


def empty_path_option(args: list[str]) -> str | None:
    """The first of :data:`PATH_OPTIONS` given an empty or blank value (``--out ""``,
    ``--out=``, ``--out ' '``; an unset shell variable), which Click reads as ``.`` (results
    written into the current directory, over any files of the same names) or as a folder
    named by the blanks, found only after the runs had trained."""
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        given = value if equals else (args[i + 1] if i + 1 < len(args) else None)
        if name in PATH_OPTIONS and given is not None and not given.strip():
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (the console script exits with it). SIGTERM
    reads as Ctrl-C from the first line on, while the modules import too: both print
    ``interrupted`` and exit 130 (:func:`_terminate_as_interrupt`). Messages name options
    as flags (``--workers``) throughout (:func:`initlab.errors.option`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with _terminate_as_interrupt(), surface("cli"):
            return _main(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(args: list[str]) -> int:
    """:func:`main` under its SIGTERM handler. The MKL override comes first: the commands
    import torch."""
    if option := empty_path_option(args):
        print(f"error: {option} is empty (an unset variable?); give a path", file=sys.stderr)
        return EXIT_USER_ERROR
    apply_mkl_dispatch(args)
    _register_commands(args)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = NotePrinter()
            forget_shown()
            return _run(args)
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except InitlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except PermissionError as exc:  # a path no check refused first: one line all the same
        print(f"error: {permission_denied(None, exc.filename or 'a file', exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
