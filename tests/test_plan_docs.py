"""docs/residual.md: each `initlab plan` example still prints what the page shows."""

import re
import shlex
from pathlib import Path

import pytest

from initlab.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "residual.md"


def _examples() -> list[tuple[list[str], str]]:
    """(command arguments, printed output) of every ```$ initlab plan ...``` block."""
    found = []
    for block in re.findall(r"```\n\$ (initlab plan .*?)```", DOC.read_text(), flags=re.S):
        lines = block.splitlines()
        command = lines[0]
        while command.endswith("\\"):
            lines.pop(0)
            command = command[:-1] + lines[0]
        found.append((shlex.split(command)[1:], "\n".join(lines[1:])))
    return found


def _rows(text: str) -> list[tuple[str, str, str]]:
    """(parameter, shape, role) of every table row that names a parameter."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 6 and cells[0] and cells[0] != "parameter":
            rows.append((cells[0], cells[1], cells[2]))
    return rows


@pytest.mark.slow
def test_the_docs_plans_match_what_initlab_prints(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    examples = _examples()
    assert len(examples) == 2
    for args, shown in examples:
        assert main(args) == 0
        printed = capsys.readouterr().out
        assert _rows(printed) == _rows(shown) and _rows(shown)
        summary = [line for line in shown.splitlines() if line.startswith("residual structure")]
        assert summary and summary[0] in printed
