"""A run that raises is stored ``failed`` with the error named once:
``RuntimeError: boom at step 3``, never ``RuntimeError: RuntimeError: ...``; the command
prints each group's first error under its table and exits 1 when every run failed."""

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
    assert main(args) == 1  # no run finished: an error, though the tables are written
    printed = capsys.readouterr()
    assert "  he_normal, orthogonal: RuntimeError: boom at step 3" in printed.out
    assert "run the same command again to retry them" in printed.out
    assert "run the sweep again" not in printed.out
    assert "error: every one of the 2 runs failed" in printed.err
    assert (tmp_path / "out" / "summary.csv").exists()
    with open_store(tmp_path / "out") as store:
        runs = store.runs()
    assert set(runs["status"]) == {"failed"}
    assert set(runs["message"]) == {"RuntimeError: boom at step 3"}


def test_compare_names_the_error_of_a_model_whose_forward_raises(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boom.py").write_text(MODEL)
    args = ["compare", "--data", "digits", "--model", "boom.py:build", "--inits", "default"]
    args += ["--seeds", "1", "--epochs", "1", "--track", "off", "--out", "out"]
    assert main(args) == 1
    printed = capsys.readouterr()
    assert "  default: RuntimeError: boom at step 3" in printed.out
    assert "sweep again" not in printed.out and "same command again" in printed.out


def test_a_sweep_report_prints_its_counts_not_every_planned_config():
    from initlab.sweep.runner import SweepReport

    report = SweepReport("abc", total=27, already_done=0)
    report.planned = {f'{{"seed": {i}, "pad": "{"x" * 200}"}}': f"k{i}" for i in range(27)}
    assert "total=27" in repr(report) and len(repr(report)) < 300
