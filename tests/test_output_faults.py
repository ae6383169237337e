"""Output files found in the way only after the work, and sets of files mixed across runs
(fault injection): each command checks the files it writes before any work (one line, exit
2), writes them all or nothing, and says in one line why a write failed after the work,
with its result already printed; a set of an earlier run is replaced whole."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import initlab
from initlab.cli import main
from initlab.doctor import evidence as evidence_module
from initlab.doctor import trials as trial_module
from initlab.doctor.evidence import Evidence, write_outputs
from initlab.errors import InitlabError

EVIDENCE_FILES = ("recommendation.json", "trials.csv", "curves.png", "init_snippet.py")

DOCTOR = ["doctor", "--data", "digits", "--depth", "2", "--width", "8", "--trials", "1"]
DIAGNOSE = ["diagnose", "--data", "digits", "--depth", "1", "--width", "8", "--batch", "64"]
SCALING = ["scaling", "--widths", "8,16,32", "--steps", "1", "--seeds", "1"]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's trials fail the test if anything trains."""

    def trains(*args, **kwargs):
        raise AssertionError("trained before refusing the output path")

    monkeypatch.setattr(trial_module, "train_configs", trains)


def read_only(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """``os.access`` says ``path`` cannot be written (root ignores permission bits, so the
    tests do not chmod)."""
    real = os.access

    def access(target, mode, *args, **kwargs):
        if Path(target) == path and mode & os.W_OK:
            return False
        return real(target, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# the doctor --------------------------------------------------------------------------


def test_doctor_refuses_a_read_only_recommendation_before_training(
    tmp_path, capsys, monkeypatch, no_training
):
    kept = tmp_path / "out" / "recommendation.json"
    kept.parent.mkdir()
    kept.write_text("{}")
    read_only(monkeypatch, kept)
    assert main([*DOCTOR, "--out", str(tmp_path / "out")]) == 2
    assert "recommendation.json is read-only" in one_error_line(capsys.readouterr().err)
    assert kept.read_text() == "{}"


def test_python_trials_refuse_an_out_under_a_file_before_training(tmp_path, no_training):
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(InitlabError, match="afile is a file, not a directory"):
        initlab.trials(data="digits", trials=1, budget=3, out=tmp_path / "afile" / "sub")


@pytest.mark.parametrize("command", [SCALING, ["compare", "--data", "digits", "--epochs", "1"]])
def test_an_out_through_a_missing_directory_and_up_is_checked_where_it_leads(
    tmp_path, monkeypatch, capsys, command
):
    """``new/../blocked/x``: ``new`` does not exist yet, so the path as given passed every
    check; scaling measured every model and failed at the write, and both commands left
    ``new`` behind. It is checked where it leads: refused before any work, nothing made."""
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("not a directory")
    Path("locked").mkdir()
    read_only(monkeypatch, Path(os.path.realpath(tmp_path / "locked")))
    Path("held", "summary.csv").mkdir(parents=True)  # a folder where compare writes a file
    Path("held", "coords.csv").mkdir()
    for out, said in (
        ("new/../afile", "a file is there"),
        ("new/../locked/x", "not writable"),
        ("new/../held", "is a directory where this command writes"),
    ):
        assert main([*command, "--out", out]) == 2
        assert said in one_error_line(capsys.readouterr().err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "held", "locked"]


def test_python_trials_refuse_an_out_in_a_read_only_directory_before_training(
    tmp_path, monkeypatch, no_training
):
    read_only(monkeypatch, tmp_path)
    with pytest.raises(InitlabError, match="is not writable"):
        initlab.trials(data="digits", trials=1, budget=3, out=tmp_path / "evidence")


def test_python_trials_refuse_a_directory_where_trials_csv_goes_before_training(
    tmp_path, no_training
):
    (tmp_path / "evidence" / "trials.csv").mkdir(parents=True)
    with pytest.raises(InitlabError, match=r"trials\.csv is a directory"):
        initlab.trials(data="digits", trials=1, budget=3, out=tmp_path / "evidence")


def synthetic_evidence(tag: str, *, curves: bool = True) -> tuple[Evidence, object, str]:
    """A small :class:`Evidence` whose files all say ``tag``; ``curves=False``: every run
    failed before an epoch (no curve to draw)."""
    names = ["default", "plan"]
    candidates = [SimpleNamespace(name=n, settings={}, why=tag, schemes={}) for n in names]
    design = trial_module.Design.square(1)
    schedule = trial_module.Schedule(
        epochs=1, steps_per_epoch=2, limit_train=None, seconds_per_step=0.1, fixed_seconds=0.0
    )
    record = {"epoch": 1, "train_loss": 0.4, "val_loss": 0.5}
    config = SimpleNamespace(seed=0, data_seed=0)
    results = [SimpleNamespace(epochs=[record] if curves else [], config=config) for _ in names]
    table = pd.DataFrame({"candidate": names, "status": ["ok", "ok"], "final": [0.5, 0.4]})
    verdict = {"winner": None, "reference": "default", "message": tag}
    evidence = Evidence(
        candidates, design, schedule, results, table, table, table[:0], table[:0], verdict
    )
    return evidence, SimpleNamespace(entries=[]), f"# {tag}\n"


def test_an_interrupt_while_the_evidence_is_written_leaves_the_earlier_set_whole(
    tmp_path, monkeypatch
):
    """Ctrl-C while curves.png was drawn left a new recommendation.json and trials.csv
    beside the earlier run's curves.png and init_snippet.py."""
    import initlab.curves

    write_outputs(*synthetic_evidence("old run"), tmp_path)
    before = contents(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(initlab.curves, "plot_curves", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(*synthetic_evidence("new run"), tmp_path)
    assert contents(tmp_path) == before  # no temporary file left either


def test_a_write_failing_on_the_third_file_leaves_the_earlier_set_whole(tmp_path, monkeypatch):
    import initlab.curves

    write_outputs(*synthetic_evidence("old run"), tmp_path)
    before = contents(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(initlab.curves, "plot_curves", full)
    with pytest.raises(OSError, match=r"curves\.png"):
        write_outputs(*synthetic_evidence("new run"), tmp_path)
    assert contents(tmp_path) == before


def test_evidence_without_curves_removes_the_earlier_sets_plot(tmp_path):
    """Every run failed: no curves.png was drawn, and the earlier run's stayed beside the
    new evidence, looking like its plot."""
    write_outputs(*synthetic_evidence("old run"), tmp_path)
    paths = write_outputs(*synthetic_evidence("new run", curves=False), tmp_path)
    assert sorted(p.name for p in paths) == ["init_snippet.py", "recommendation.json", "trials.csv"]
    assert sorted(contents(tmp_path)) == ["init_snippet.py", "recommendation.json", "trials.csv"]
    assert json.loads((tmp_path / "recommendation.json").read_text())["verdict"]["message"] == (
        "new run"
    )


def test_trials_saved_as_training_ends_replace_the_earlier_set(tmp_path):
    """gather saves trials.csv before the statistics: the earlier run's recommendation,
    plot and snippet (of other runs) go with the trials they described."""
    write_outputs(*synthetic_evidence("old run"), tmp_path)
    evidence_module._save_trials(pd.DataFrame({"candidate": ["new"]}), tmp_path)
    assert sorted(contents(tmp_path)) == ["trials.csv"]
    assert "new" in (tmp_path / "trials.csv").read_text()


def test_doctor_says_in_one_line_why_the_evidence_could_not_be_written(
    tmp_path, capsys, monkeypatch
):
    """A read-only recommendation.json (or a full disk) after training: a PermissionError
    traceback, the verdict printed but the evidence lost."""
    import initlab.curves

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(initlab.curves, "plot_curves", full)
    out = tmp_path / "out"
    assert main([*DOCTOR, "--budget", "2s", "--out", str(out)]) == 2
    said = capsys.readouterr()
    line = one_error_line(said.err)
    assert f"cannot write {out / 'curves.png'}: no space left on device" in line
    assert "the runs are in" in line and "keep" in said.out  # the verdict, printed before
    assert sorted(contents(out)) == ["trials.csv"]  # saved as training ended


def test_an_earlier_trials_csv_is_not_named_as_this_runs(tmp_path, capsys, monkeypatch):
    """When this run's trials.csv could not be saved either, the line pointed at the
    earlier run's trials.csv left in --out as if it held these runs."""
    import initlab.curves
    from initlab.doctor import evidence

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(initlab.curves, "plot_curves", full)
    monkeypatch.setattr(evidence, "_save_trials", lambda curves, out: None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "trials.csv").write_text("an earlier run's\n")
    assert main([*DOCTOR, "--budget", "2s", "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "the runs are in" not in line and line.endswith("the verdict is above")


# the scaling check ------------------------------------------------------------------


@pytest.fixture(scope="module")
def checked():
    from initlab.scaling.check import coord_check

    return coord_check("mlp", widths=(8, 16, 32), steps=1, seeds=1, data="digits")


@pytest.fixture
def no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import initlab.scaling.check

    def measures(*args, **kwargs):
        raise AssertionError("measured before refusing the output path")

    monkeypatch.setattr(initlab.scaling.check, "coord_check", measures)


def test_scaling_refuses_a_read_only_verdicts_file_before_measuring(
    tmp_path, capsys, monkeypatch, no_check
):
    (tmp_path / "verdicts.json").write_text("{}")
    read_only(monkeypatch, tmp_path / "verdicts.json")
    assert main([*SCALING, "--out", str(tmp_path)]) == 2
    assert "verdicts.json is read-only" in one_error_line(capsys.readouterr().err)


def test_scaling_prints_its_verdict_then_says_in_one_line_why_it_could_not_write(
    tmp_path, capsys, monkeypatch, checked
):
    import initlab.scaling.check
    import initlab.scaling.plots

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(initlab.scaling.check, "coord_check", lambda *a, **k: checked)
    monkeypatch.setattr(initlab.scaling.plots, "plot_coords", full)
    assert main([*SCALING, "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr()
    line = one_error_line(said.err.split("measuring")[-1])
    assert f"cannot write {tmp_path / 'out' / 'coords.png'}: no space left on device" in line
    assert "parameter kinds" in said.out  # the verdict was printed first
    assert not (tmp_path / "out").exists() or contents(tmp_path / "out") == {}


def test_scaling_files_are_written_all_or_nothing(tmp_path, monkeypatch, checked):
    import initlab.scaling.plots

    (tmp_path / "coords.csv").write_text("an earlier check")
    (tmp_path / "verdicts.json").write_text("{}")
    (tmp_path / "coords.png").write_bytes(b"an earlier plot")
    before = contents(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(initlab.scaling.plots, "plot_coords", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checked.write(tmp_path)
    assert contents(tmp_path) == before
    monkeypatch.undo()
    assert set(checked.write(tmp_path)) == {"coords.csv", "verdicts.json", "coords.png"}
    assert all(contents(tmp_path)[name] != before[name] for name in before)


def test_scaling_result_write_refuses_a_directory_in_the_way(tmp_path, checked):
    (tmp_path / "coords.png").mkdir()
    with pytest.raises(InitlabError, match=r"coords\.png is a directory"):
        checked.write(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["coords.png"]


# diagnose ---------------------------------------------------------------------------


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    import initlab.probe.batch

    def probes(*args, **kwargs):
        raise AssertionError("probed before refusing the output path")

    monkeypatch.setattr(initlab.probe.batch, "prepare_probe", probes)


def test_diagnose_says_in_one_line_why_it_could_not_write(tmp_path, capsys, monkeypatch):
    import initlab.probe.plots

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "layers.csv").write_text("an earlier diagnosis")
    monkeypatch.setattr(initlab.probe.plots, "plot_profiles", full)
    assert main([*DIAGNOSE, "--out", str(tmp_path)]) == 2
    said = capsys.readouterr()
    line = one_error_line(said.err)
    assert f"cannot write {tmp_path / 'profiles.png'}: no space left on device" in line
    assert "per-layer statistics" in said.out
    assert contents(tmp_path) == {"layers.csv": b"an earlier diagnosis"}


def test_diagnose_replaces_the_histograms_of_an_earlier_set(tmp_path, capsys):
    assert main([*DIAGNOSE, "--init", "he_normal,lecun_normal", "--out", str(tmp_path)]) == 0
    assert main([*DIAGNOSE, "--init", "glorot_normal", "--out", str(tmp_path)]) == 0
    assert sorted(contents(tmp_path)) == [
        "findings.json", "histograms_glorot_normal.png", "layers.csv", "profiles.png"
    ]  # fmt: skip


# theory ------------------------------------------------------------------------------


def test_theory_refuses_a_read_only_plot_before_any_work(tmp_path, capsys, monkeypatch):
    plot = tmp_path / "phase.png"
    plot.write_bytes(b"an earlier plot")
    read_only(monkeypatch, plot)
    assert main(["theory", "--plot", str(plot)]) == 2
    said = capsys.readouterr()
    assert "phase.png is read-only" in one_error_line(said.err) and said.out == ""
    assert plot.read_bytes() == b"an earlier plot"


def test_theory_says_in_one_line_why_its_plot_could_not_be_written(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    plot = tmp_path / "phase.png"
    plot.write_bytes(b"an earlier plot")
    monkeypatch.setattr(Figure, "savefig", full)
    assert main(["theory", "--plot", str(plot)]) == 2
    said = capsys.readouterr()
    assert f"cannot write {plot}: no space left on device" in one_error_line(said.err)
    assert "mean-field predictions" in said.out
    assert contents(tmp_path) == {"phase.png": b"an earlier plot"}


# every command ------------------------------------------------------------------------

IN_THE_WAY = [
    *((DOCTOR, "no_training", name) for name in EVIDENCE_FILES),
    *((SCALING, "no_check", name) for name in ("coords.csv", "verdicts.json", "coords.png")),
    *((DIAGNOSE, "no_probe", name)
      for name in ("layers.csv", "findings.json", "profiles.png", "histograms_he_normal.png")),
]  # fmt: skip
"""Each command, the fixture that fails the test if its work starts, and a file it writes."""


@pytest.mark.parametrize(("command", "guard", "name"), IN_THE_WAY, ids=lambda v: str(v)[:20])
def test_a_directory_where_an_output_file_goes_is_refused_before_any_work(
    tmp_path, capsys, request, command, guard, name
):
    request.getfixturevalue(guard)
    (tmp_path / "out" / name).mkdir(parents=True)
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr()
    line = one_error_line(said.err)
    assert f"{tmp_path / 'out' / name} is a directory" in line and "--out" in line
    assert said.out == ""


def test_a_serializers_own_word_for_a_full_disk_is_an_oserror(tmp_path):
    """torch.save's RuntimeError and safetensors' SafetensorError for a full disk escaped
    as tracebacks (doctor --save) or failed every run (checkpoints)."""
    from initlab.atomic_files import write_file

    class SafetensorError(Exception):
        pass

    def torch_full(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9 vs 4")

    def safetensors_full(path: Path) -> None:
        raise SafetensorError("Error while serializing: IoError(Os { code: 28 })")

    for writer in (torch_full, safetensors_full):
        with pytest.raises(OSError, match="the write failed") as info:
            write_file(tmp_path / "w.pt", writer)
        assert info.value.filename == str(tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left

    def a_bug(path: Path) -> None:
        raise RuntimeError("a bug in the writer is not a full disk")

    with pytest.raises(RuntimeError, match="a bug"):
        write_file(tmp_path / "w.pt", a_bug)


def test_a_report_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    import initlab.report.build as build

    res = initlab.compare(["he_normal"], 1, data="digits", hidden=(8,), epochs=1, track="off",
                          out=tmp_path / "store")  # fmt: skip
    assert len(res.runs) == 1

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "curves.png"))

    monkeypatch.setattr(build, "build_report", full)
    assert main(["report", str(tmp_path / "store"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and "no space left on device" in err
