"""A real small sweep on a local Ray instance (2 CPUs, no dashboard), streamed into the store
and resumed. Skipped where Ray is not installed; CI installs it (pip install 'ray[default]')."""

import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install 'initlab[ray]' (CI installs it)"
)

from initlab.cli import main  # noqa: E402
from initlab.store import open_store  # noqa: E402
from initlab.sweep import expand, parse_spec, run_study  # noqa: E402
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
    """One local Ray instance for the module; the sweeps reuse it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
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
