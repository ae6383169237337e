"""One reading of a device name (:func:`initlab.train.device.parse_device`): every command
with ``--device`` and the library say the same line for a name that is no device, listing
the valid ones and naming the one meant."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from initlab.cli import main
from initlab.errors import InitlabError
from initlab.scaling import coord_check
from initlab.train.device import parse_device, resolve_device

GPU = "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'; did you mean 'cuda'?"

SPEC = """name = "tiny"
[fixed]
dataset = "digits"
hidden = [8]
epochs = 1
"""

COMMANDS = [
    ["compare", "--inits", "zeros", "--epochs", "1"],
    ["diagnose", "--data", "digits"],
    ["doctor", "--data", "digits"],
    ["study", "glorot2010", "--scale", "tiny"],
    ["sweep", "spec.toml"],
    ["scaling", "--widths", "8,16,32", "--seeds", "1", "--steps", "1"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_says_the_same_line_for_an_unknown_device(
    command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text(SPEC)
    assert main([*command, "--device", "gpu", "--out", "out"]) == 2
    assert capsys.readouterr().err == f"error: {GPU}\n"
    assert not (tmp_path / "out").exists()


def test_the_library_says_it_too():
    for call in (lambda: resolve_device("gpu"), lambda: coord_check(device="gpu")):
        with pytest.raises(InitlabError) as info:
            call()
        assert str(info.value) == GPU


def test_names_are_read_without_case_or_spaces_and_a_hint_only_when_one_is_close():
    assert parse_device(" CUDA:1 ") == "cuda:1" and parse_device("Cpu") == "cpu"
    assert parse_device(torch.device("cpu")) == "cpu" and resolve_device("CPU").type == "cpu"
    with pytest.raises(InitlabError, match=r"got 'cud'; did you mean 'cuda'\?$"):
        parse_device("cud")
    with pytest.raises(InitlabError) as info:
        parse_device("banana")
    assert str(info.value) == "device must be auto, cpu, cuda, cuda:N or mps, got 'banana'"
    for given, meant in (("gpu:1", "cuda:1"), ("GPU0", "cuda:0"), ("cuda1", "cuda:1")):
        with pytest.raises(InitlabError, match=f"did you mean '{meant}'"):  # not 'cpu'
            parse_device(given)


def test_a_device_given_in_capitals_runs(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--device", "CPU", "--inits", "zeros", "--seeds", "1", "--epochs", "1"]
    assert main([*args, "--hidden", "8", "--limit-train", "200", "--out", "o"]) == 0
    assert (tmp_path / "o" / "summary.csv").exists()
