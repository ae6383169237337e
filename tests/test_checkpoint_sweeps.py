"""Epoch checkpoints in sweeps: an interrupted or SIGKILLed sweep's unfinished runs resume
from their checkpoints, and a run's checkpoint is deleted once the store has recorded it."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from initlab.checkpoints import Checkpoints, checkpoint_dir
from initlab.notes import InitlabNote
from initlab.store import open_store
from initlab.sweep import SweepInterrupted, expand, load_spec, parse_spec, run_study
from initlab.sweep.report import SweepProgress

SPEC = """
name = "saved"
seeds = 2
[fixed]
dataset = "digits"
hidden = [64]
epochs = 4
batch_size = 16
optimizer = "momentum"
lr = 0.02
[sweep]
init = ["he_normal", "glorot_uniform", "lecun_normal"]
"""


class Epochs(SweepProgress):
    """Counts the epochs heard; raises KeyboardInterrupt at the ``stop_at``-th."""

    def __init__(self, stop_at: int = 0) -> None:
        self.heard, self.stop_at = 0, stop_at

    def epoch(self, config, record) -> None:
        self.heard += 1
        if self.heard == self.stop_at:
            raise KeyboardInterrupt


def spec_of(text: str = SPEC):
    import tomllib

    return parse_spec(tomllib.loads(text))


def saved_files(out) -> list:
    """The checkpoints in ``out``'s folder (not the temporary files of killed writers, which
    a later sweep removes once they are an hour old)."""
    folder = checkpoint_dir(out / "initlab.db")
    files = folder.glob("*.pt") if folder.exists() else []
    return sorted(p for p in files if not p.name.startswith("."))


def test_an_interrupted_sweep_resumes_its_stack_from_the_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    spec, out = spec_of(), tmp_path / "out"
    runs = expand(spec)
    with pytest.raises(SweepInterrupted):  # in epoch 2 of the one stack: saved after epoch 1
        run_study(spec, out, workers=1, progress=Epochs(stop_at=len(runs) + 1))
    assert len(saved_files(out)) == len(runs)
    with open_store(out) as store:  # what `initlab results DIR` says of the study
        progress = store.results("saved").progress
        assert store.results().progress == progress  # its only study, unnamed
    assert "(6 not run yet, 6 of them saved in epoch checkpoints: " in progress
    again = Epochs()
    resumed = "6 of the 6 run.s. to train have checkpoints to resume from, saved after epoch 1$"
    with pytest.warns(InitlabNote, match=resumed):
        results, report = run_study(spec, out, workers=1, progress=again)
    assert report.ran == len(runs) and again.heard == len(runs) * 3  # epochs 2-4 only
    assert saved_files(out) == []  # recorded, so deleted
    whole, _ = run_study(spec, None, workers=1)
    mine = results.runs.set_index("run_id")["test_loss"]
    for run_id, loss in whole.runs.set_index("run_id")["test_loss"].items():
        assert mine[run_id] == pytest.approx(loss, rel=1e-4, abs=1e-5)
    epochs = results.epochs.groupby("run_id")["epoch"].apply(sorted)
    assert all(e == [1, 2, 3, 4] for e in epochs)


def test_a_sigkilled_sweep_resumes_from_its_workers_checkpoints(tmp_path):
    spec_file, out = tmp_path / "saved.toml", tmp_path / "out"
    spec_file.write_text(SPEC.replace("epochs = 4", "epochs = 40"))
    cmd = [sys.executable, "-m", "initlab", "sweep", str(spec_file), "--out", str(out)]
    cmd += ["--workers", "2"]
    env = {**os.environ, "INITLAB_CHECKPOINT_SECONDS": "0"}
    log = tmp_path / "sweep.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        saved = _wait_for_checkpoints(out, proc, log, epoch=3, timeout=120)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    _wait_gone(workers)  # orphaned workers notice within a second and exit
    spec = load_spec(spec_file)
    runs = expand(spec)
    with closing(sqlite3.connect(out / "initlab.db")) as conn, conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] < len(runs)
    again = Epochs()
    with pytest.warns(InitlabNote, match="have checkpoints to resume from, saved after epoch"):
        results, _ = run_study(spec, out, workers=1, progress=again)
    assert again.heard <= len(runs) * 40 - saved  # the saved epochs were not trained again
    assert set(results.runs["status"]) == {"ok"} and len(results.runs) == len(runs)
    assert results.epochs.groupby("run_id").size().tolist() == [40] * len(runs)
    assert saved_files(out) == []


def _wait_for_checkpoints(out, proc, log, epoch: int, timeout: float) -> int:
    """Wait until every checkpoint of some stack is past ``epoch``; the epochs saved."""
    saves = Checkpoints(str(checkpoint_dir(out / "initlab.db")))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {log.read_text()[-2000:]}")
        epochs = [saves.saved_epoch(path.stem) for path in saved_files(out)]
        if epochs and min(epochs) >= epoch:
            return sum(epochs)
        time.sleep(0.1)
    pytest.fail(f"no checkpoints past epoch {epoch} in time: {log.read_text()[-2000:]}")
    return math.nan


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)]
        time.sleep(0.1)
    assert not pids, f"worker processes outlived their parent: {pids}"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_the_interrupt_message_says_which_runs_resume_from_checkpoints(tmp_path, monkeypatch):
    import io

    import typer
    from rich.console import Console

    from initlab.sweep import ui

    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    spec, out = spec_of(), tmp_path / "out"
    heard = []
    real = ui.RichProgress.epoch

    def epoch(self, config, record):
        real(self, config, record)
        heard.append(record["epoch"])
        if len(heard) == 8:  # the second of epoch 2: every run saved after epoch 1
            raise KeyboardInterrupt

    monkeypatch.setattr(ui.RichProgress, "epoch", epoch)
    text = io.StringIO()
    log = Console(file=text, force_terminal=False, width=100)
    with pytest.raises(typer.Exit):
        ui.run_and_report(spec, expand(spec), out, title="t", console=log, err=log)
    said = " ".join(text.getvalue().split())
    assert (
        "6 unfinished run(s) had trained 8 epoch(s) between them; 6 of them resume from their "
        "checkpoints (saved after every epoch: the epochs since are trained again)" in said
    )


def test_a_failed_run_keeps_its_checkpoint_and_its_retry_resumes(tmp_path, monkeypatch):
    """A worker killed mid-stack makes its runs 'failed' (retried on resume): deleting
    their checkpoints then threw away the epochs they were kept for."""
    from initlab.train.checkpoint import EpochSaver

    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    real = EpochSaver.__call__

    def crash_after_saving(self, trainer, epoch):
        real(self, trainer, epoch)
        if epoch == 2:
            raise RuntimeError("the worker went down")

    monkeypatch.setattr(EpochSaver, "__call__", crash_after_saving)
    spec, out = spec_of(), tmp_path / "out"
    runs = expand(spec)
    results, _ = run_study(spec, out, workers=1)
    assert set(results.runs["status"]) == {"failed"}
    assert len(saved_files(out)) == len(runs)
    monkeypatch.setattr(EpochSaver, "__call__", real)
    again = Epochs()
    with pytest.warns(InitlabNote, match="6 of the 6 run.s. to train have .* after epoch 2$"):
        results, _ = run_study(spec, out, workers=1, progress=again)
    assert set(results.runs["status"]) == {"ok"} and again.heard == len(runs) * 2
    assert saved_files(out) == []


def test_the_progress_counts_only_the_epochs_left_after_the_checkpoints():
    """A resumed run's saved epochs were counted only when it finished: the bar showed
    6/48 and an ETA for all 48, then jumped from 35 to 48."""
    import io

    from rich.console import Console

    from initlab.sweep.engine import Outcome
    from initlab.sweep.progress import RichProgress
    from initlab.sweep.report import SweepPlan
    from initlab.sweep.runner import config_identity
    from initlab.train.result import RunResult

    runs = expand(spec_of())
    resumed = {config_identity(c): 3 for c in runs[:4]}  # 4 runs saved after epoch 3 of 4
    progress = RichProgress(Console(file=io.StringIO(), force_terminal=False))
    progress.start(SweepPlan(6, 0, runs, "local", "batched", 1, 1, resumed))
    assert progress.shown.total == 4 * 1 + 2 * 4
    for config in runs:
        progress.epoch(config, {"epoch": 4})
        progress.finished(Outcome(RunResult(config, "ok"), 0.0, 0.0, "batched"))
    assert progress.shown.done == progress.shown.total
    progress.stop()


def test_checkpoints_no_run_of_a_finished_sweep_will_use_are_named(tmp_path, monkeypatch):
    """Interrupted, then run with other settings (new run ids): the old checkpoints stayed
    on disk and nothing said so."""
    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    spec, out = spec_of(), tmp_path / "out"
    with pytest.raises(SweepInterrupted):
        run_study(spec, out, workers=1, progress=Epochs(stop_at=len(expand(spec)) + 1))
    other = spec_of(SPEC.replace("epochs = 4", "epochs = 2"))
    left = r"6 checkpoint\(s\) \(.* MiB\) remain in .*delete those"
    with pytest.warns(InitlabNote, match=left):
        run_study(other, out, workers=1)
    with pytest.warns(InitlabNote, match=left):  # and again when nothing is left to run
        _, report = run_study(other, out, workers=1)
    assert report.ran == 0 and len(saved_files(out)) == 6


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "5s"])
def test_a_bad_checkpoint_interval_is_one_line_before_any_store(
    tmp_path, capsys, monkeypatch, value
):
    from initlab.cli import main
    from initlab.errors import InitlabError

    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", value)
    out = tmp_path / "never"
    tiny = ["--inits", "he_normal", "--seeds", "1", "--dataset", "digits", "--epochs", "1"]
    assert main(["compare", *tiny, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "INITLAB_CHECKPOINT_SECONDS" in err
    assert not out.exists()
    with pytest.raises(InitlabError, match="INITLAB_CHECKPOINT_SECONDS"):
        run_study(spec_of(), out, workers=1)
    assert not out.exists()


def test_a_run_whose_checkpoint_is_refused_grows_the_bar_back(tmp_path, monkeypatch):
    """The bar left out the saved epochs of runs that then started over (weights that do
    not fit the stack): it ended at 8 of 4 model-epochs."""
    import io

    from rich.console import Console

    from initlab.sweep.progress import RichProgress
    from initlab.sweep.report import SweepPlan
    from initlab.sweep.runner import config_identity

    runs = expand(spec_of())[:2]
    progress = RichProgress(Console(file=io.StringIO(), force_terminal=False))
    resumed = {config_identity(c): 2 for c in runs}
    progress.start(SweepPlan(2, 0, runs, "local", "batched", 1, 1, resumed))
    assert progress.shown.total == 4
    for epoch in (1, 2, 3, 4):  # trained from the start after all
        for config in runs:
            progress.epoch(config, {"epoch": epoch})
    assert progress.shown.done == progress.shown.total == 8
    progress.stop()


def test_results_of_a_store_whose_checkpoint_folder_cannot_be_searched(tmp_path, monkeypatch):
    """Another user's 0700 checkpoint folder in a shared results directory: counting its
    files raised PermissionError, and `initlab results` ended in a traceback."""
    from pathlib import Path

    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    spec, out = spec_of(), tmp_path / "out"
    with pytest.raises(SweepInterrupted):
        run_study(spec, out, workers=1, progress=Epochs(stop_at=len(expand(spec)) + 1))
    real = Path.is_file

    def refused(self):
        if self.suffix == ".pt":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "is_file", refused)
    with open_store(out) as store:
        progress = store.results("saved").progress
    assert "(6 not run yet: " in progress


def test_a_dry_run_counts_only_the_epochs_left_after_the_checkpoints(tmp_path, monkeypatch):
    """It listed every run as pending and the whole cost, while the resume trained 66 of
    72 model-epochs (a user's interrupted sweep)."""
    from initlab.sweep.dryrun import dry_run

    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    spec, out = spec_of(), tmp_path / "out"
    runs = expand(spec)
    before = dry_run(spec, out / "initlab.db")
    with pytest.raises(SweepInterrupted):  # saved after epoch 1
        run_study(spec, out, workers=1, progress=Epochs(stop_at=len(runs) + 1))
    after = dry_run(spec, out / "initlab.db")
    assert set(after.table["status"]) == {"saved after epoch 1"}
    assert after.table["epochs"].sum() == before.table["epochs"].sum() - len(runs)
    assert after.table["gflop"].sum() == pytest.approx(before.table["gflop"].sum() * 3 / 4)
    assert (
        f"to run: {len(runs)} runs ({len(runs)} resume from epoch checkpoints), 18 "
        in (after.lines[0])
    )
