"""Several processes on one results store: they share the runs through leases, never train or
overwrite a finished run again, and take over the runs of a process killed with SIGKILL.

Each child process replaces training by a fake that logs ``start``/``done`` lines (one short
``O_APPEND`` write each, so lines from different processes never mix) and sleeps, so the
test counts exactly which process trained which run.
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from initlab.config import RunConfig
from initlab.notes import InitlabNote
from initlab.store import open_store
from initlab.store.leases import Lease
from initlab.sweep import engine, parse_spec, run_study
from initlab.sweep.engine import Outcome
from initlab.train.result import RunResult

CHILD = """
import os, sys, time
from pathlib import Path
from initlab.sweep import engine
from initlab.train.result import RunResult

log, go, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])

def note(word, cfg):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{word} {os.getpid()} {cfg.key()}\\n".encode())
    os.close(fd)

def fake(cfg, data=None, on_epoch=None, checkpoints=None):
    note("start", cfg)
    time.sleep(delay)
    record = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.5, "val_loss": 0.5,
              "val_accuracy": 0.5 + cfg.seed / 100, "seconds": delay}
    note("done", cfg)
    return RunResult(config=cfg, status="ok", epochs=[record], test_accuracy=0.5)

engine.run_config = fake
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, f"ready {os.getpid()} -\\n".encode())
os.close(fd)
while not go.exists():
    time.sleep(0.01)
args = sys.argv[4:]
if args[0] == "compare":
    from initlab.cli import main
    sys.exit(main(args))
from initlab.sweep import parse_spec, run_study
spec = parse_spec({"name": "shared", "fixed": {"dataset": "digits", "hidden": [8], "epochs": 1},
                   "seeds": int(args[1]), "sweep": {"init": ["zeros", "he_normal"]}})
run_study(spec, args[0], workers=1, engine="single")
"""


def start_children(tmp_path: Path, n: int, delay: float, args: list[str], env=None):
    """``n`` children, released together once every one has imported initlab and torch."""
    log, go = tmp_path / "trainings.log", tmp_path / "go"
    command = [sys.executable, "-c", CHILD, str(log), str(go), str(delay), *args]
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for _ in range(n)
    ]
    deadline = time.monotonic() + 60
    while len(lines(log, "ready")) < n:
        assert time.monotonic() < deadline, "the children did not start"
        assert all(p.poll() is None for p in procs), [p.stderr.read()[-500:] for p in procs]
        time.sleep(0.05)
    go.touch()
    return procs, log


def lines(log: Path, word: str) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(int(r[1]), r[2]) for r in rows if len(r) == 3 and r[0] == word]


def stored(db: Path) -> dict[str, tuple[str, int]]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT run_id, status, attempts FROM runs").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {r: (s, a) for r, s, a in rows}


@pytest.mark.slow  # two processes importing torch: 24-30 s on a busy 2-core machine
def test_two_identical_compares_share_the_runs(tmp_path):
    out = tmp_path / "same"
    args = ["compare", "--dataset", "digits", "--inits", "zeros,he_normal,glorot_uniform"]
    args += ["--seeds", "4", "--epochs", "1", "--hidden", "8", "--workers", "1"]
    args += ["--engine", "single", "--out", str(out)]
    procs, log = start_children(tmp_path, 2, 0.2, args)
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-800:] for e in errors]
    done = lines(log, "done")
    trained = Counter(key for _, key in done)
    runs = stored(out / "initlab.db")
    assert len(runs) == 12 and set(runs.values()) == {("ok", 1)}  # attempts stays 1
    assert sorted(trained) == sorted(runs) and set(trained.values()) == {1}  # each once
    per_process = Counter(pid for pid, _ in done)
    assert sorted(per_process) == sorted(p.pid for p in procs)
    assert min(per_process.values()) >= 3, per_process  # about half each (12 runs)


INITS = ["zeros", "he_normal"]


def test_two_sweeps_on_one_store_at_once_share_the_runs(tmp_path, monkeypatch):
    """The fast equivalent of the two compares above: two threads (own Store connection, own
    lease owner, exactly as two processes) run the same study into one store with the Python
    API, training replaced by a sleep that logs which sweep trained which run."""
    trained: list[tuple[str, str]] = []

    def fake(cfg, data=None, on_epoch=None, checkpoints=None):
        trained.append((threading.current_thread().name, cfg.key()))
        time.sleep(0.05)
        record = {"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.5}
        return RunResult(config=cfg, status="ok", epochs=[record], test_accuracy=0.5)

    monkeypatch.setattr(engine, "run_config", fake)
    fixed = {"dataset": "digits", "hidden": [8], "epochs": 1}
    spec = parse_spec({"name": "shared", "fixed": fixed, "seeds": 6, "sweep": {"init": INITS}})
    together, reports, errors = threading.Barrier(2), {}, []

    def sweep() -> None:
        try:
            together.wait()
            reports[threading.current_thread().name] = run_study(
                spec, tmp_path, workers=1, engine="single"
            )[1]
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=sweep, name=name) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and sorted(reports) == ["a", "b"]
    runs = stored(tmp_path / "initlab.db")
    assert len(runs) == 12 and set(runs.values()) == {("ok", 1)}  # attempts stays 1
    per_run = Counter(key for _, key in trained)
    assert sorted(per_run) == sorted(runs) and set(per_run.values()) == {1}  # each once
    per_sweep = Counter(name for name, _ in trained)
    assert min(per_sweep["a"], per_sweep["b"]) >= 2, per_sweep  # both did part of the work
    # every run accounted for by each sweep: its own, the other's while it ran, and those
    # finished before it planned (a thread that starts late under load sees some done)
    assert {r.ran + r.by_others + r.already_done for r in reports.values()} == {12}
    with closing(sqlite3.connect(tmp_path / "initlab.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


@pytest.mark.slow  # four processes importing torch: ~30 s on a busy 2-core machine
def test_four_processes_and_a_sigkill_train_every_run_exactly_once(tmp_path):
    out = tmp_path / "shared"
    procs, log = start_children(
        tmp_path, 4, 0.25, [str(out), "8"], env={"INITLAB_LEASE_SECONDS": "1.5"}
    )
    victim = procs[0]
    deadline = time.monotonic() + 60
    while len([k for pid, k in lines(log, "start") if pid == victim.pid]) < 2:
        assert time.monotonic() < deadline, "the victim did no work"
        assert victim.poll() is None, victim.stderr.read()[-800:]
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)  # while it sleeps inside its second run
    in_flight = [k for pid, k in lines(log, "start") if pid == victim.pid][-1]
    victim.wait(timeout=10)
    errors = [p.communicate(timeout=120)[1] for p in procs[1:]]
    assert [p.returncode for p in procs[1:]] == [0, 0, 0], [e[-800:] for e in errors]
    runs = stored(out / "initlab.db")
    assert len(runs) == 16 and set(runs.values()) == {("ok", 1)}  # none lost, none redone
    done = lines(log, "done")
    trained = Counter(key for _, key in done)
    assert sorted(trained) == sorted(runs) and set(trained.values()) == {1}
    assert in_flight not in {k for pid, k in done if pid == victim.pid}
    takers = {pid for pid, k in done if k == in_flight}
    assert takers and victim.pid not in takers  # an expired lease is taken over
    with closing(sqlite3.connect(out / "initlab.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


# -- the store's side of it, in one process ----------------------------------------------------


def config(seed: int) -> RunConfig:
    return RunConfig(dataset="digits", hidden=(8,), epochs=1, seed=seed)


def outcome(cfg: RunConfig, status: str = "ok") -> Outcome:
    record = {"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.5}
    result = RunResult(config=cfg, status=status, epochs=[record], test_accuracy=0.5)
    return Outcome(result, 1.0, 2.0, "single", {})


def test_a_finished_run_is_never_overwritten(tmp_path):
    with open_store(tmp_path, create=True) as store:
        cfg = config(0)
        assert store.record(outcome(cfg)) is True
        assert store.record(outcome(cfg, status="diverged")) is False
        row = store.runs().set_index("run_id").loc[cfg.key()]
        assert row["status"] == "ok" and row["attempts"] == 1
        assert store.record(outcome(config(1), status="failed")) is True
        assert store.record(outcome(config(1))) is True  # a failed run is retried
        assert store.runs().set_index("run_id").loc[config(1).key(), "attempts"] == 2


def take_when_free(lease: Lease, timeout: float = 10.0):
    """What an executor does: take a chunk, waiting while other processes hold them."""
    deadline = time.monotonic() + timeout
    while (chunk := lease.take()) is None and not lease.done:
        assert time.monotonic() < deadline, "no chunk became free"
        lease.wait()
    return chunk


def test_leases_are_exclusive_until_they_expire(tmp_path):
    chunks = [[config(0), config(1)], [config(2)], [config(3)]]
    with open_store(tmp_path, create=True) as a, open_store(tmp_path) as b:
        first, second = Lease(a, chunks, ttl=0.5), Lease(b, chunks, ttl=0.5)
        assert first.take() == chunks[0]  # one chunk at a time, leased when taken
        assert [second.take(), second.take()] == chunks[1:]  # not the runs ``first`` holds
        with pytest.warns(InitlabNote, match=r"2 by \S+:\d+ \(renewed while it runs; else"):
            assert second.take() is None and not second.done  # the rest is held: try later
        # said once: a sweep idle without a word looked hung for the lease's 10 minutes
        a.record(outcome(config(0)))  # ``first`` finishes one run and is then "killed"
        started = time.monotonic()
        again = take_when_free(second)  # waits for the lease on config(1) to expire
        assert again == [config(1)] and time.monotonic() - started >= 0.3
        assert second.take() is None and second.done
        with closing(sqlite3.connect(tmp_path / "initlab.db")) as conn:
            owners = dict(conn.execute("SELECT run_id, owner FROM leases").fetchall())
        assert owners[config(1).key()] == second.owner


@pytest.mark.parametrize("status", ["ok", "failed"])
def test_a_run_attempted_by_another_process_meanwhile_is_not_taken(tmp_path, status):
    with open_store(tmp_path, create=True) as store:
        lease = Lease(store, [[config(0)]], ttl=10)
        store.record(outcome(config(0), status=status))  # someone else, after we started
        assert lease.take() is None and lease.done


def test_the_leases_of_a_dead_process_on_this_host_are_taken_over_at_once(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    keys = [config(0).key(), config(1).key()]
    with open_store(tmp_path, create=True) as store:
        with closing(sqlite3.connect(tmp_path / "initlab.db", isolation_level=None)) as conn:
            far = time.time() + 3600
            conn.execute(
                "INSERT INTO leases VALUES (?, ?, ?)", (keys[0], f"{host}:{gone.pid}:x", far)
            )
            conn.execute("INSERT INTO leases VALUES (?, ?, ?)", (keys[1], "elsewhere:1:x", far))
        lease = Lease(store, [[config(0), config(1)]], ttl=60)
        mine, held = store.claim(keys, lease.owner, lease.baseline, lease.ttl)
    assert mine == [keys[0]]  # its process is gone: no need to wait an hour
    assert held == [keys[1]]  # another host's process may be alive: its lease holds


def test_the_heartbeat_keeps_leases_alive_while_runs_train(tmp_path):
    keys = [config(0).key()]
    with open_store(tmp_path, create=True) as store:
        lease = Lease(store, [[config(0)]], ttl=0.6)
        with lease:
            assert lease.take() == [config(0)]
            time.sleep(1.5)  # 2.5 lease lengths: only renewals keep it
            with open_store(tmp_path) as other:
                intruder = Lease(other, [[config(0)]], ttl=0.6)
                assert other.claim(keys, intruder.owner, intruder.baseline, 0.6) == ([], keys)
        with closing(sqlite3.connect(tmp_path / "initlab.db")) as conn:  # dropped at the end
            assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
