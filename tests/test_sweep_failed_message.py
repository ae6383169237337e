"""A run that raises is stored ``failed`` with the error named once:
``RuntimeError: boom at step 3``, never ``RuntimeError: RuntimeError: ...``."""

import pytest

from initlab.cli import main
from initlab.store import open_store

MODEL = """
import torch.nn as nn


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.steps = 0

    def forward(self, x):
        self.steps += 1
        if self.training and self.steps == 3:
            raise RuntimeError("boom at step 3")
        return self.lin(x.flatten(1))


def build():
    return Boom()
"""
SPEC = """
name = "boom"
[fixed]
dataset = "digits"
model = "boom.py:build"
epochs = 1
[sweep]
init = ["he_normal", "orthogonal"]
"""


@pytest.mark.parametrize("engine", ["single", "batched"])
def test_a_failing_run_names_its_error_once(tmp_path, monkeypatch, capsys, engine):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boom.py").write_text(MODEL)
    (tmp_path / "boom.toml").write_text(SPEC)
    args = ["sweep", "boom.toml", "--out", "out", "--workers", "1", "--engine", engine]
    assert main(args) == 0
    capsys.readouterr()
    with open_store(tmp_path / "out") as store:
        runs = store.runs()
    assert set(runs["status"]) == {"failed"}
    assert set(runs["message"]) == {"RuntimeError: boom at step 3"}
