"""docs/scaling.md's worked example (§5) runs as written and says what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "scaling.md"


def worked_example() -> list[str]:
    section = DOC.read_text().split("## 5. Worked example", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_worked_example_has_its_code_blocks():
    blocks = worked_example()
    assert len(blocks) == 2 and "def build(" in blocks[0]


@pytest.mark.slow
def test_the_worked_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "scaling_docs"}
    for block in worked_example():
        exec(compile(block, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "`5` update |ΔW·x| grows as width^" in printed
    assert "updates too large for this width under SP with Adam" in printed
    assert (tmp_path / "results" / "scaling-mup" / "coords.csv").exists()
