"""The command line starts light: ``initlab --help``, ``initlab CMD --help`` and a usage
mistake answer without importing torch, pandas, scipy or matplotlib (the command modules
import them inside their functions), and SIGTERM reads as Ctrl-C from :func:`main`'s first
line, while the modules still import, not only once a command runs.

Each check runs in a fresh Python (this process has torch imported by conftest.py); nothing
here measures time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import typer

import initlab.cli as cli

HEAVY = ("torch", "pandas", "scipy", "matplotlib")
"""What no help and no usage mistake may import (seconds of start-up between them)."""
MARK = "@@startup@@"


def python(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh Python running ``code``: its exit status, stdout and stderr."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def command_lines() -> list[list[str]]:
    """Every command and subcommand (``store check``) the app has once all its command
    modules (``initlab/cli/*_cmd.py``) are registered."""
    cli._register_commands()
    found = []
    for name, command in typer.main.get_command(cli.app).commands.items():
        found.append([name])
        found += [[name, sub] for sub in getattr(command, "commands", {})]
    return sorted(found)


def test_every_command_is_found():
    names = {line[0] for line in command_lines()}
    assert {"compare", "diagnose", "doctor", "list", "store", "sweep", "theory"} <= names
    assert ["store", "check"] in command_lines()


def test_no_help_imports_torch_pandas_scipy_or_matplotlib():
    # each command's help in turn, then the root's (which imports every command module):
    # the heavy modules present after each, so the first to import one is the one named
    lines = [*([*line, "--help"] for line in command_lines()), ["--help"]]
    done = python(
        "import contextlib, io, json, sys\n"
        "from initlab.cli import main\n"
        "seen = {}\n"
        f"for args in {lines!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "        code = main(args)\n"
        f"    heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    seen[' '.join(args)] = [code, 'Usage:' in shown.getvalue(), heavy]\n"
        f"print({MARK!r} + json.dumps(seen))\n"
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.rpartition(MARK)[2])
    assert len(seen) == len(lines)
    for line, (code, usage, heavy) in seen.items():
        assert (code, usage) == (0, True), f"initlab {line}: exit {code}, help shown: {usage}"
        assert heavy == [], f"initlab {line} imported {heavy}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--no-such-option"], "error: No such option: --no-such-option"),
        (["compare", "--epochs", "five"], "error: Invalid value for '--epochs'"),
        (["sweep"], "error: Missing argument 'SPEC'."),
        (["compair"], "error: No such command 'compair'. Did you mean 'compare'?"),
    ],
)
def test_a_usage_mistake_is_one_line_before_any_heavy_import(args, message):
    done = python(
        "import sys\n"
        "from initlab.cli import main\n"
        f"code = main({args!r})\n"
        f"print({MARK!r}, [m for m in {HEAVY!r} if m in sys.modules])\n"
        "sys.exit(code)\n"
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr
    assert done.stdout.strip() == f"{MARK} []"


def test_sigterm_while_the_command_modules_import_reads_as_ctrl_c():
    # SIGTERM sent to itself as `initlab compare --help` starts importing compare_cmd: the
    # signal is delivered before os.kill returns, so without a handler by then the process
    # dies of it (exit -15) and never prints `interrupted`
    done = python(
        "import os, signal, sys\n"
        "class KillOnImport:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'initlab.cli.compare_cmd':\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "        return None\n"
        "from initlab.cli import main\n"
        "sys.meta_path.insert(0, KillOnImport())\n"
        "sys.exit(main(['compare', '--help']))\n"
    )
    assert done.returncode == cli.EXIT_INTERRUPTED, done.stderr
    assert done.stderr == "\ninterrupted\n"
    assert "Usage" not in done.stdout


def test_main_installs_the_sigterm_handler_and_puts_the_old_one_back(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    during = []

    def record(args: list[str]) -> int:
        during.append(signal.getsignal(signal.SIGTERM))
        return 0

    monkeypatch.setattr(cli, "_main", record)
    assert cli.main([]) == 0
    assert during[0] is not before and callable(during[0])
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_in_a_command_that_is_not_a_sweep_says_interrupted(monkeypatch, capsys):
    """Typer turned the KeyboardInterrupt into a bare exit 130: a doctor or a diagnose
    stopped by Ctrl-C or SIGTERM said nothing."""
    from initlab.probe import batch

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "prepare_probe", stop)
    assert cli.main(["diagnose", "--data", "digits"]) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"
