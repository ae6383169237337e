"""A real small sweep on a local Ray instance (2 CPUs, no dashboard), streamed into the store
and resumed; user data loaded once and shared through the object store; GPUs per task.
Skipped where Ray is not installed; CI installs it (pip install 'ray[default]')."""

import os

import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install 'initlab[ray]' (CI installs it)"
)

from initlab.cli import main  # noqa: E402
from initlab.data import clear_cache  # noqa: E402
from initlab.errors import InitlabError  # noqa: E402
from initlab.store import open_store  # noqa: E402
from initlab.sweep import expand, parse_spec, run_study  # noqa: E402
from initlab.sweep.ray_backend import RayExecutor  # noqa: E402
from initlab.sweep.runner import SweepProgress  # noqa: E402
from initlab.train.run import run_config  # noqa: E402

SPEC = {
    "name": "on-ray",
    "seeds": 2,
    "fixed": {"dataset": "digits", "hidden": [16], "epochs": 2, "lr": 0.1},
    "sweep": {"init": ["zeros", "he_normal"]},
}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (its own, even where `ray start` runs one on this
    machine); the sweeps reuse it and leave it running."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class CountEpochs(SweepProgress):
    def __init__(self) -> None:
        self.epochs: list[tuple[str, int]] = []

    def epoch(self, config, record) -> None:
        self.epochs.append((config.key(), record["epoch"]))


def test_a_sweep_runs_on_ray_streams_into_the_store_and_resumes(local_ray, tmp_path, capsys):
    spec = parse_spec(SPEC)
    progress = CountEpochs()
    results, report = run_study(spec, tmp_path, backend="ray", engine="single", progress=progress)
    assert report.ran == 4 and report.counts["failed"] == 0
    # every epoch of every run was reported while the tasks ran, each once
    assert sorted(progress.epochs) == sorted((c.key(), e) for c in expand(spec) for e in (1, 2))
    assert len(results.runs) == 4 and results.epochs["epoch"].max() == 2
    with open_store(tmp_path) as store:
        runs = store.runs()
        assert store.integrity_check() == "ok"
    assert set(runs["engine"]) == {"single"} and runs["host"].notna().all()
    # a Ray worker computes the same numbers as this process
    config = expand(spec)[-1]
    stored = runs.set_index("run_id").loc[config.key(), "test_accuracy"]
    assert run_config(config).test_accuracy == pytest.approx(stored, abs=0.01)
    # the CLI on the same (already initialized) Ray resumes: nothing left to run
    spec_file = tmp_path / "on-ray.json"
    spec_file.write_text(__import__("json").dumps(SPEC))
    assert main(["sweep", str(spec_file), "--backend", "ray", "--out", str(tmp_path)]) == 0
    assert "4 of 4 runs already done" in capsys.readouterr().err
    assert ray.is_initialized()  # a connection the sweep did not open is left open


USER_DATA = """
import os
import torch

LOG = "LOG_PATH"


def make():
    with open(LOG, "a") as log:
        log.write(f"{os.getpid()}\\n")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return x[:100], y[:100], x[100:], y[100:]
"""


def test_user_data_is_loaded_once_by_the_driver_and_shared(local_ray, tmp_path):
    clear_cache()
    log = tmp_path / "calls.log"
    (tmp_path / "mydata.py").write_text(USER_DATA.replace("LOG_PATH", str(log)))
    spec = parse_spec({**SPEC, "fixed": {**SPEC["fixed"], "dataset": f"{tmp_path}/mydata.py:make"}})
    executor = RayExecutor(engine="single")
    outcomes = [o for chunk in executor.run([[c] for c in expand(spec)], None) for o in chunk]
    assert len(outcomes) == 4 and "failed" not in {o.result.status for o in outcomes}
    # the function ran once, in this process; the four tasks got the data from the store
    assert log.read_text().split() == [str(os.getpid())]


def test_gpus_per_trial_is_checked_before_anything_runs(local_ray):
    with pytest.raises(InitlabError, match="gpus_per_trial must be >= 0"):
        RayExecutor(gpus_per_trial=-1)
    have = ray.cluster_resources().get("GPU", 0)
    runs = RayExecutor(gpus_per_trial=have + 1).run([expand(parse_spec(SPEC))[:1]], None)
    with pytest.raises(InitlabError, match=f"the Ray cluster has {have:g} GPUs"):
        next(runs)


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs CUDA (runs on GPU machines)"
)
def test_tasks_reserving_a_gpu_train_on_it(local_ray):
    # Ray hides GPUs from tasks that reserve none: device="cuda" works only through num_gpus
    assert ray.cluster_resources().get("GPU", 0) >= 1
    spec = parse_spec({**SPEC, "fixed": {**SPEC["fixed"], "device": "cuda"}})
    (outcomes,) = RayExecutor(engine="single", gpus_per_trial=0.5).run([expand(spec)], None)
    assert len(outcomes) == 4
    assert "failed" not in {o.result.status for o in outcomes}, outcomes[0].result.message


def test_an_address_that_is_no_address_is_refused_before_anything_prints(tmp_path, capsys):
    """'--address foo' printed 'running 7 run(s) on Ray tasks' and a progress bar first."""
    from initlab.cli import main

    args = ["compare", "--data", "digits", "--epochs", "1", "--seeds", "1", "--hidden", "8"]
    assert main([*args, "--backend", "ray", "--address", "foo", "--out", str(tmp_path)]) == 2
    said = capsys.readouterr()
    assert said.err.startswith("error: --address foo: give host:port") and said.out == ""


class InterruptAt(SweepProgress):
    def __init__(self, epochs: int) -> None:
        self.heard, self.stop_at = 0, epochs

    def epoch(self, config, record) -> None:
        self.heard += 1
        if self.heard == self.stop_at:
            raise KeyboardInterrupt


def test_ray_tasks_save_checkpoints_that_a_local_resume_continues(local_ray, tmp_path, monkeypatch):
    from initlab.notes import InitlabNote
    from initlab.sweep import SweepInterrupted

    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")  # read by the driver, sent to tasks
    spec = parse_spec({**SPEC, "fixed": {**SPEC["fixed"], "epochs": 30}})
    runs = expand(spec)
    with pytest.raises(SweepInterrupted):  # after every run's 5th epoch or so
        run_study(spec, tmp_path, backend="ray", progress=InterruptAt(5 * len(runs)))
    again = InterruptAt(0)
    with pytest.warns(InitlabNote, match="have checkpoints to resume from, saved after epoch"):
        results, _ = run_study(spec, tmp_path, workers=1, progress=again)
    assert again.heard < 30 * len(runs) and set(results.runs["status"]) <= {"ok", "stuck"}
    assert results.epochs.groupby("run_id").size().tolist() == [30] * len(runs)
