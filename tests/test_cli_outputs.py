"""Output paths are checked before any work, and a file of another kind is never
overwritten (``plan --out store/initlab.db`` replaced a results store with JSON)."""

from pathlib import Path

import pytest

from initlab.cli import main

DATA = b"a user's dataset: not ours to overwrite"


@pytest.fixture
def victim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n\n\ndef build():\n    return nn.Sequential(nn.Flatten(), "
        "nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))\n"
    )
    path = tmp_path / "data.npz"
    path.write_bytes(DATA)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--model", "nets.py:build", "--out", "data.npz"], "--out writes .json files"),
        (["doctor", "--data", "digits", "--depth", "2", "--save", "data.npz"], "--save writes"),
        (["theory", "--plot", "data.npz"], "--plot writes .png, .pdf, .svg"),
        (["theory", "--plot", "phase.txt"], "--plot writes .png, .pdf, .svg"),
        (["diagnose", "--data", "digits", "--out", "data.npz"], "a file is there"),
        (["scaling", "--widths", "8,16", "--out", "data.npz"], "a file is there"),
        (["report", "nowhere", "--out", "data.npz"], "a file is there"),
        (["theory", "--plot", "data.npz/phase.png"], "data.npz is a file, not a directory"),
        (
            ["compare", "--model", "nets.py:build", "--data", "digits", "--out", "data.npz/x"],
            "data.npz is a file, not a directory",
        ),
        (
            ["doctor", "--data", "digits", "--trials", "2", "--out", "data.npz"],
            "a file is there",
        ),
    ],
)
def test_a_bad_output_path_is_one_line_before_any_work(victim, capsys, args, message):
    assert main(args) == 2
    said = capsys.readouterr()
    assert said.out == "" and message in said.err and len(said.err.strip().splitlines()) == 1
    assert victim.read_bytes() == DATA


def test_compare_checks_out_before_it_loads_data_or_builds_a_model(victim, monkeypatch):
    import initlab.cli.runs

    def no_work(*args, **kwargs):
        raise AssertionError("the data was loaded and the model built before --out was checked")

    monkeypatch.setattr(initlab.cli.runs, "preflight_configs", no_work)
    assert main(["compare", "--model", "nets.py:build", "--out", "data.npz/x"]) == 2


def test_new_files_of_any_name_are_written_and_plots_in_any_matplotlib_format(victim, capsys):
    """The suffix rule refused `--save w.bin`, `--save w` and `--plot phase.jpg`, which
    worked before: only an existing file of another kind is protected."""
    assert main(["theory", "--plot", "phase.jpg"]) == 0
    assert (victim.parent / "phase.jpg").stat().st_size > 0
    assert main(["doctor", "--data", "digits", "--depth", "2", "--save", "w.bin"]) == 0
    assert (victim.parent / "w.bin").stat().st_size > 0


def test_a_directory_where_a_file_goes_is_refused(victim, capsys):
    victim.parent.joinpath("weights").mkdir()
    assert main(["doctor", "--data", "digits", "--depth", "2", "--save", "weights"]) == 2
    assert "a directory is there; --save takes a file name" in capsys.readouterr().err


def test_plan_on_a_built_in_model_says_why_and_refuses_a_negative_seed(capsys):
    assert main(["plan", "--model", "cnn"]) == 2
    assert "--model cnn is built in: for its layers, initlab diagnose" in capsys.readouterr().err
    assert main(["plan", "--model", "initlab.models.resnet:resnet", "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "args",
    [
        ["diagnose", "--data", "digits", "--depth", "2", "--out", "/proc/initlab-x"],
        ["doctor", "--data", "digits", "--depth", "2", "--save", "/proc/initlab-x.pt"],
        ["plan", "--model", "nets.py:build", "--out", "/proc/initlab-x.json"],
        ["scaling", "--widths", "8,16,32", "--out", "/proc/initlab-x"],
        ["report", "nowhere", "--out", "/proc/initlab-x"],
    ],
)
def test_a_place_where_nothing_can_be_created_is_refused_before_any_work(victim, capsys, args):
    """os.access says yes to root everywhere: /proc took the work, then a traceback."""
    assert main(args) == 2
    said = capsys.readouterr()
    assert said.out == "" and "nothing can be created in /proc: " in said.err
    assert len(said.err.strip().splitlines()) == 1
