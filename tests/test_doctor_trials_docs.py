"""docs/doctor.md's --trials examples (a user ResNet, the small transformer), in quick form."""

import json
import re
import shlex
from pathlib import Path

import pytest

from initlab.cli import main

ROOT = Path(__file__).parents[1]


def _commands() -> list[str]:
    text = (ROOT / "docs" / "doctor.md").read_text()
    section = text[text.index("## Evidence") :]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [line.removeprefix("$ ").strip() for line in joined.splitlines() if line.strip()]


def test_the_docs_show_the_resnet_and_the_transformer():
    commands = _commands()
    assert len(commands) == 2 and all("--trials" in c and "--out" in c for c in commands)
    assert "my_models.py:resnet" in commands[0]
    assert "my_models.py:tiny_transformer" in commands[1]


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_the_docs_trials_run_in_quick_form(index, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = shlex.split(_commands()[index])[1:]  # drop "initlab"
    # a budget in steps: 90 s bought too few steps on a loaded machine and was refused
    quick = {"--trials": "2", "--budget": "20steps", "--out": str(tmp_path)}
    for i, arg in enumerate(args):
        if arg in quick:
            args[i + 1] = quick[arg]
    assert main(args) == 0
    found = json.loads((tmp_path / "recommendation.json").read_text())
    assert "winner" in found["verdict"] and found["statistics"]["ranking"]
    assert (tmp_path / "init_snippet.py").exists()
