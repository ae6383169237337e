"""docs/your-model.md, executed: every ``$ initlab ...`` line of its console blocks and every
Python block (except the one marked ``(excerpt, not run)``) runs as written, from a
directory that has the repository's ``examples/``, with the page's ``# name.toml`` blocks
written there first. The commands must exit 0 and no run of any store they wrote may fail.

The page is parsed by the fast tests; running it is ``make test-slow`` (about a minute on a
quiet 2-core machine, 8-10 minutes when other jobs compete for its cores).
"""

from __future__ import annotations

import re
import shlex
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-model.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NOT_RUN = "(excerpt, not run)"


def blocks(kind: str) -> list[str]:
    """The page's fenced blocks of ``kind`` (``console``, ``python``, ``toml``), in order."""
    return [body for lang, body in FENCE.findall(PAGE.read_text()) if lang == kind]


def commands(console: str) -> list[str]:
    """The ``$ `` lines of a console block, with ``\\``-continued lines joined."""
    found: list[str] = []
    current: str | None = None
    for line in console.splitlines():
        if current is None and not line.startswith("$ "):
            continue  # the command's output
        part = line[2:] if current is None else line
        current = part.strip() if current is None else f"{current} {part.strip()}"
        if current.endswith("\\"):
            current = current[:-1].rstrip()
        else:
            found.append(current)
            current = None
    return found


def page_commands() -> list[list[str]]:
    return [shlex.split(c) for block in blocks("console") for c in commands(block)]


def page_python() -> list[str]:
    return [code for code in blocks("python") if NOT_RUN not in code.splitlines()[0]]


def page_files() -> dict[str, str]:
    """``# name.toml`` blocks: the file name and its content."""
    files = {}
    for body in blocks("toml"):
        first = body.splitlines()[0]
        if first.startswith("# ") and first.endswith(".toml"):
            files[first[2:]] = body
    return files


def test_the_page_is_parsed_into_what_it_shows():
    shown = "$ initlab a \\\n    --b 1\noutput\n$ initlab c\n"
    assert commands(shown) == ["initlab a --b 1", "initlab c"]
    argvs = page_commands()
    assert len(argvs) == 10 and all(argv[0] == "initlab" for argv in argvs)
    assert [argv[1] for argv in argvs] == ["compare"] * 5 + [
        "diagnose",
        "diagnose",
        "sweep",
        "diagnose",
        "doctor",
    ]
    assert len(page_python()) == 4 and len(blocks("python")) == 5
    files = page_files()
    assert list(files) == ["resnet-width.toml"]
    assert any("resnet-width.toml" in argv for argv in argvs)  # the spec the page writes
    for argv in argvs:  # every example file named exists
        for arg in argv:
            if arg.startswith("examples/"):
                assert (ROOT / arg.partition(":")[0]).is_file(), arg


def run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    shown = " ".join(argv[2:] if argv[1] == "-m" else argv[1:])
    assert done.returncode == 0, f"{shown}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.mark.slow  # 5 compares, a sweep, 3 diagnoses, doctor and 4 Python blocks
def test_every_command_and_python_block_of_the_page_runs(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for name, text in page_files().items():
        (tmp_path / name).write_text(text)
    for argv in page_commands():
        run([sys.executable, "-m", "initlab", *argv[1:]], tmp_path)
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(page_python()))
    printed = run([sys.executable, str(script)], tmp_path)
    assert "he_normal" in printed  # print(results) showed the comparison
    stores = sorted((tmp_path / "results").glob("*/initlab.db"))
    assert [s.parent.name for s in stores] == [
        "lstm",
        "lstm-torch-bias",
        "regression",
        "resnet",
        "resnet-width",
        "transformer",
    ]
    for store in stores:
        with closing(sqlite3.connect(store)) as conn:
            statuses = dict(conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        assert statuses and "failed" not in statuses, (store, statuses)
