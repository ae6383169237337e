"""Running sweeps: resume, diverged and failed runs, engine dispatch, worker processes, and a
real sweep killed with SIGKILL half-way, then resumed."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from types import SimpleNamespace

import pytest

from initlab.errors import InitlabError
from initlab.store import open_store
from initlab.sweep import engine, expand, load_spec, parse_spec, plan_chunks, run_chunk, run_study
from initlab.sweep.engine import DataCache, execute_chunk, resolve_engine
from initlab.train.run import load_data, run_config

TINY = {"dataset": "digits", "hidden": [16], "epochs": 1, "lr": 0.1}


def tiny_spec(name="tiny", seeds=2, **sweep):
    return parse_spec(
        {
            "name": name,
            "fixed": TINY,
            "seeds": seeds,
            "sweep": sweep or {"init": ["zeros", "he_normal"]},
        }
    )


def test_resume_skips_finished_runs(tmp_path, trainings):
    spec = tiny_spec()
    results, report = run_study(spec, tmp_path, workers=1, engine="single")
    assert len(trainings) == 4 and report.ran == 4 and report.already_done == 0
    assert len(results.runs) == 4 and results.group_by == ["init"]
    results, report = run_study(spec, tmp_path, workers=1, engine="single")
    assert len(trainings) == 4 and report.ran == 0 and report.already_done == 4
    assert "4 of 4 runs done" in report.line()
    # a bigger spec in the same directory runs only what is new; both studies are kept
    _, report = run_study(tiny_spec(name="more", seeds=3), tmp_path, workers=1, engine="single")
    assert len(trainings) == 6 and report.already_done == 4
    with open_store(tmp_path) as store:
        assert len(store.runs()) == 6 and len(store.runs("tiny")) == 4
        assert store.studies()["name"].tolist() == ["tiny", "more"]
        blas = set(store.runs()["blas"])  # which BLAS kernels computed the runs
    assert blas == {engine.environment()["blas"]} and blas.pop().startswith(("MKL", "no MKL"))


def test_diverged_runs_are_results_and_failed_runs_are_retried(tmp_path, monkeypatch):
    spec = parse_spec(
        {
            "name": "mixed",
            "fixed": TINY,
            "sweep": {"init": ["he_normal", "zeros"]},
            "include": [{"init": "random_normal(stddev=5.0)", "lr": 1e12}],
        }
    )
    trained, failing = [], {"zeros"}

    def flaky(config, data=None, on_epoch=None, checkpoints=None):
        trained.append(config.init)
        if config.init in failing:
            raise RuntimeError("boom")
        return run_config(config, data, on_epoch)

    monkeypatch.setattr(engine, "run_config", flaky)
    _, report = run_study(spec, tmp_path, workers=1, engine="single")
    assert report.counts == {"ok": 1, "failed": 1, "diverged": 1}
    with open_store(tmp_path) as store:
        runs = store.runs().set_index("init")
    assert runs.loc["zeros", "status"] == "failed"
    assert runs.loc["zeros", "message"] == "RuntimeError: boom"
    assert runs.loc["random_normal(stddev=5.0)", "status"] == "diverged"
    assert "non-finite" in runs.loc["random_normal(stddev=5.0)", "message"]
    failing.clear()
    run_study(spec, tmp_path, workers=1, engine="single")
    assert trained[3:] == ["zeros"]  # only the failed run ran again
    with open_store(tmp_path) as store:
        runs = store.runs().set_index("init")
    assert runs.loc["zeros", "status"] == "stuck" and runs.loc["zeros", "attempts"] == 2


def test_run_chunk_dispatches_to_the_batched_engine_when_it_can(monkeypatch):
    calls = []
    fake = SimpleNamespace(
        group_configs=lambda configs: [configs[:3], configs[3:]],
        train_configs=lambda configs, data, on_epoch=None, checkpoints=None: (
            calls.append(len(configs)) or [run_config(c, data) for c in configs]
        ),
    )
    monkeypatch.setattr(engine, "batched_engine", lambda: fake)
    configs = expand(tiny_spec(seeds=2, init=["zeros", "he_normal", "lecun_normal"]))
    data = load_data(configs[0])
    assert resolve_engine("auto") == "batched"
    assert [len(c) for c in plan_chunks(configs, "auto", workers=1)] == [3, 3]
    assert [len(c) for c in plan_chunks(configs, "auto", workers=4)] == [1, 2, 1, 2]
    assert [len(c) for c in plan_chunks(configs, "single", workers=4)] == [1] * 6
    # splitting for other processes sharing the store keeps stacks of MIN_CHUNK models
    assert [len(c) for c in plan_chunks(configs, "auto", workers=1, share=4)] == [3, 3]
    many = expand(tiny_spec(seeds=8, init=["zeros", "he_normal"]))
    fake.group_configs = lambda configs: [configs]
    assert [len(c) for c in plan_chunks(many, "auto", workers=1, share=4)] == [4, 4, 4, 4]
    assert [len(c) for c in plan_chunks(many[:12], "auto", workers=1, share=4)] == [6, 6]
    assert [len(c) for c in plan_chunks(many[:6], "auto", workers=2, share=4)] == [3, 3]
    fake.group_configs = lambda configs: [configs[:3], configs[3:]]
    results = run_chunk(configs[:3], data, "auto")
    assert calls == [3] and [r.config for r in results] == configs[:3]
    run_chunk(configs[:3], data, "single")
    assert calls == [3]
    outcomes = execute_chunk(configs[:2], DataCache(preloaded=None), "batched")
    assert calls == [3, 2] and {o.engine for o in outcomes} == {"batched"}
    with pytest.raises(InitlabError, match="unknown engine 'fast'"):
        resolve_engine("fast")


SLOW_SPEC = """
name = "killed"
seeds = 4
[fixed]
dataset = "digits"
hidden = [128, 128]
epochs = 6
batch_size = 16
lr = 0.05
[sweep]
init = ["he_normal", "glorot_uniform", "lecun_normal"]
"""


def test_sigkill_mid_sweep_loses_only_runs_in_flight_and_resumes(tmp_path, trainings):
    spec_file = tmp_path / "killed.toml"
    spec_file.write_text(SLOW_SPEC)
    out, db = tmp_path / "out", tmp_path / "out" / "initlab.db"
    cmd = [sys.executable, "-m", "initlab", "sweep", str(spec_file), "--out", str(out)]
    cmd += ["--workers", "2", "--engine", "single"]
    log = tmp_path / "sweep.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        done = _wait_for_runs(db, 2, proc, log, timeout=90)
        children = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL and done >= 2
    _wait_gone(children)  # orphaned workers notice and exit by themselves
    with closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert 2 <= before < 12, "the sweep should have been killed half-way"

    spec = load_spec(spec_file)
    results, report = run_study(spec, out, workers=1, engine="single")
    assert report.already_done == before and report.ran == len(trainings) == 12 - before
    with closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT run_id FROM runs")]
        epochs = conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM epochs").fetchone()
    assert sorted(ids) == sorted(c.key() for c in expand(spec))  # every run exactly once
    assert epochs == (12 * 6, 12)
    assert set(results.runs["status"]) == {"ok"}
    # numbers do not depend on which process trained a run
    first = next(c for c in expand(spec) if c not in trainings)  # one the subprocess trained
    again = run_config(first)
    stored = results.runs.set_index("run_id").loc[first.key(), "test_accuracy"]
    assert again.test_accuracy == pytest.approx(stored, abs=0.01)


def _wait_for_runs(db, count, proc, log, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {log.read_text()[-2000:]}")
        try:
            with closing(sqlite3.connect(db, timeout=1)) as conn, conn:
                done = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            if done >= count:
                return done
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.05)
    pytest.fail("the sweep recorded no runs in time")


def _children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def _wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"worker processes outlived their parent: {alive}"


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_dataset_to_download_is_fetched_once_before_any_worker_starts(tmp_path, monkeypatch):
    from initlab import data as datasets
    from initlab.sweep import runner

    fetched, started = [], []
    monkeypatch.setattr(datasets, "availability", lambda name, data_dir=None: "will download")

    def offline(name, data_dir=None):
        fetched.append(name)
        raise InitlabError(f"could not download {name}; to get it: ...")

    monkeypatch.setattr(datasets, "load", offline)
    progress = runner.SweepProgress()
    progress.start = lambda plan: started.append(plan)
    spec = tiny_spec(seeds=3)
    with open_store(tmp_path, create=True) as store, pytest.raises(InitlabError, match="to get"):
        runner.run_sweep(expand(spec), store, runner.Study.from_spec(spec), progress=progress)
    assert fetched == ["digits"] and started == []  # one attempt, and nothing announced


def test_worker_processes_start_once_and_each_chunk_is_leased_when_a_worker_takes_it(
    tmp_path, monkeypatch
):
    from initlab.sweep import executor, runner

    starts, leased = [], []
    start = executor.ProcessExecutor._start

    def counted(self, ctx, tasks, events):
        procs = start(self, ctx, tasks, events)
        starts.append(len(procs))
        return procs

    class LeaseCount(runner.SweepProgress):
        def finished(self, outcome):  # after the run is recorded (its lease dropped)
            with closing(sqlite3.connect(tmp_path / "initlab.db")) as conn:
                leased.append(conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0])

    monkeypatch.setattr(executor.ProcessExecutor, "_start", counted)
    spec = tiny_spec(seeds=4)  # 8 runs, one per chunk with the single engine
    _, report = run_study(spec, tmp_path, workers=2, engine="single", progress=LeaseCount())
    assert sum(report.counts.values()) == 8 and "failed" not in report.counts
    assert starts == [2]  # one start for the whole sweep, not one per batch of chunks
    assert len(leased) == 8 and max(leased) <= 2  # at most one chunk per worker is leased
    with open_store(tmp_path) as store:
        assert len(store.finished_ids()) == 8


def test_ray_gets_the_data_the_driver_already_loaded(tmp_path, monkeypatch, trainings):
    """Ray faked: the executor the sweep builds is handed the loaded dataset (``preloaded``),
    so the driver does not load it a second time; the runs train inline."""
    from initlab.sweep import ray_backend, runner
    from initlab.sweep.executor import InlineExecutor

    made = []

    def fake_ray_executor(address, *, engine, data_dir, preloaded, **options):
        made.append(preloaded)
        return InlineExecutor(engine, DataCache(data_dir, preloaded))

    monkeypatch.setattr(ray_backend, "import_ray", lambda: None)
    monkeypatch.setattr(ray_backend, "RayExecutor", fake_ray_executor)
    configs = expand(tiny_spec())
    loaded = load_data(configs[0])
    with open_store(tmp_path, create=True) as store:
        study = runner.Study.from_spec(tiny_spec())
        report = runner.run_sweep(configs, store, study, backend="ray", dataset=loaded)
    assert report.ran == 4 and len(trainings) == 4
    assert len(made) == 1 and list(made[0]) == [engine.data_key(configs[0])]
    assert made[0][engine.data_key(configs[0])] is loaded  # the same tensors, not a copy


def test_an_executor_waits_while_other_processes_hold_the_runs_left(trainings):
    """A source (a lease) that has nothing free at first: the inline executor waits, then
    takes each chunk as it frees up, and stops when the source is done."""
    from initlab.sweep.executor import InlineExecutor

    configs = expand(tiny_spec())
    answers = [None, [configs[0]], None, None, configs[1:3]]
    waits = []

    class Source:
        @property
        def done(self):
            return not answers

        def take(self):
            return answers.pop(0) if answers else None

        def wait(self):
            waits.append(len(answers))

    chunks = InlineExecutor("single", DataCache()).run(Source(), None)
    outcomes = [outcome for chunk in chunks for outcome in chunk]
    assert [o.result.config for o in outcomes] == configs[:3] == trainings
    assert waits == [4, 2, 1]  # once per empty answer, never after the end


def test_workers_are_never_more_than_the_runs_to_do():
    """--workers 1000 for a few runs started hundreds of torch-importing processes."""
    from initlab.sweep.executor import plan_workers

    assert plan_workers(3, 1000, cores=2) == (3, 1)
    assert plan_workers(0, 8, cores=2) == (1, 2)
    assert plan_workers(10, None, cores=2) == (2, 1)
