"""The SQLite results store: round trip, resume bookkeeping, studies, versions, exports."""

import math
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pandas as pd
import pytest

from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.results import ResultSet
from initlab.store import SCHEMA_VERSION, export, open_store
from initlab.sweep.engine import Outcome
from initlab.train.result import RunResult

ENV = {
    "host": "node-1",
    "initlab": "0.1.0",
    "torch": "2.13.0",
    "python": "3.11.7",
    "blas": "MKL AVX2",
}


def config(**changes):
    return RunConfig(dataset="digits", hidden=(16, 8), epochs=2, **changes)


def outcome(cfg, status="ok", accuracy=0.9, epochs=2, layers=True):
    records = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_accuracy": 0.5 + 0.1 * e,
            "val_loss": 1.1 / e,
            "val_accuracy": 0.4 + 0.1 * e,
            "seconds": 0.01,
            "grad_ratio": 2.0 * e,  # a metric the store has no column for
        }
        for e in range(1, epochs + 1)
    ]
    stats = [
        {"epoch": e, "step": 10 * e, "layer": name, "metric": "act_std", "value": 0.5 * e}
        for e in range(1, epochs + 1)
        for name in ("blocks.0", "blocks.1")
    ]
    result = RunResult(
        config=cfg,
        status=status,
        epochs=records,
        test_accuracy=accuracy,
        test_loss=0.3,
        train_seconds=1.5,
        message="" if status == "ok" else f"{status} here",
        layer_stats=stats if layers else [],
    )
    return Outcome(
        result, started_at=1_700_000_000.0, finished_at=1_700_000_002.5, engine="single", env=ENV
    )


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "study", create=True) as s:
        yield s


def test_round_trip_of_a_run_its_epochs_and_layer_stats(store):
    cfg = config(init="orthogonal(gain=1.41)", batch_norm=True, bias=0.1, output_init=None)
    store.record(outcome(cfg))
    runs = store.runs()
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["run_id"] == cfg.key() and row["hidden"] == "16-8" and row["init"] == cfg.init
    assert runs["batch_norm"].dtype == bool and bool(row["batch_norm"])
    assert row["bias"] == 0.1 and row["output_init"] == "same" and row["track"] == "epoch"
    assert row["status"] == "ok" and row["test_accuracy"] == 0.9 and row["epochs_done"] == 2
    assert row["wall_seconds"] == 2.5 and row["attempts"] == 1 and row["engine"] == "single"
    assert (row["host"], row["torch_version"], row["python_version"], row["blas"]) == (
        "node-1",
        "2.13.0",
        "3.11.7",
        "MKL AVX2",
    )
    assert (
        row["started_at"].startswith("2023-11-14T22:13:20")
        and row["finished_at"] > row["started_at"]
    )
    assert store.configs() == [cfg]
    epochs = store.epochs()
    assert list(epochs["epoch"]) == [1, 2] and list(epochs["grad_ratio"]) == [2.0, 4.0]
    assert epochs["val_accuracy"].tolist() == pytest.approx([0.5, 0.6])
    stats = store.layer_stats()
    assert list(stats.columns) == ["run_id", "epoch", "step", "layer", "metric", "value"]
    assert len(stats) == 4 and stats["value"].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert "init" in store.layer_stats(with_config=True)


def test_momentum_is_recorded_only_for_the_momentum_optimizer(store):
    """Plain SGD and Adam never use ``momentum``: their rows leave it empty, not 0.9."""
    for optimizer in ("sgd", "momentum", "adam"):
        store.record(outcome(config(optimizer=optimizer, momentum=0.8)))
    runs = store.runs().set_index("optimizer")
    assert runs.loc["momentum", "momentum"] == 0.8  # exact: stored as given
    assert runs.loc[["sgd", "adam"], "momentum"].isna().all()


def test_diverged_runs_count_as_done_and_failed_ones_are_retried(store):
    ok, diverged, failed = config(seed=0), config(seed=1), config(seed=2)
    store.record(outcome(ok))
    store.record(outcome(diverged, status="diverged", accuracy=math.nan, epochs=1))
    store.record(outcome(failed, status="failed", accuracy=math.nan, epochs=0, layers=False))
    assert store.finished_ids() == {ok.key(), diverged.key()}
    runs = store.runs().set_index("run_id")
    assert runs.loc[diverged.key(), "status"] == "diverged"
    assert math.isnan(runs.loc[diverged.key(), "test_accuracy"])
    assert runs.loc[failed.key(), "message"] == "failed here"
    # the retry replaces the failed row and its children, in one transaction
    store.record(outcome(failed))
    runs = store.runs().set_index("run_id")
    assert len(runs) == 3 and runs.loc[failed.key(), "attempts"] == 2
    assert runs.loc[failed.key(), "status"] == "ok"
    assert (store.epochs()["run_id"] == failed.key()).sum() == 2


def test_the_file_is_wal_and_sound(store):
    store.record(outcome(config()))
    with closing(sqlite3.connect(store.path)) as conn, conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[
            0
        ] == str(SCHEMA_VERSION)
    assert store.integrity_check() == "ok"


def test_studies_share_runs_and_report_their_own(store):
    a, b, c = (config(seed=s) for s in range(3))
    store.add_study("aaaa1111", "first", {"n": 1}, ["init"], [a.key(), b.key()])
    store.add_study("bbbb2222", "second", {"n": 2}, ["seed"], [b.key(), c.key()])
    for cfg in (c, a, b):
        store.record(outcome(cfg))
    assert store.runs("first")["seed"].tolist() == [0, 1]  # grid order, not finishing order
    assert store.runs("bbbb")["seed"].tolist() == [1, 2]  # an id prefix works too
    assert len(store.runs()) == 3
    results = store.results("second")
    assert isinstance(results, ResultSet) and results.group_by == ["seed"]
    assert {"run_id", "seed", "epoch", "val_accuracy"} <= set(results.epochs.columns)
    studies = store.studies().set_index("name")
    assert studies.loc["first", "runs"] == 2 and studies.loc["second", "done"] == 2
    with pytest.raises(InitlabError, match="did you mean 'first'"):
        store.runs("frist")
    assert store.results().group_by == ["init"]  # nothing but the seed varies


def test_incompatible_or_foreign_files_are_refused(tmp_path):
    with open_store(tmp_path / "s", create=True) as s:
        s.record(outcome(config()))
    with closing(sqlite3.connect(tmp_path / "s" / "initlab.db")) as conn, conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(InitlabError, match=r"schema 99.*reads schema 1: upgrade initlab"):
        open_store(tmp_path / "s")
    (tmp_path / "text.db").write_text("not a database, just text " * 100)
    with pytest.raises(InitlabError, match=r"not an initlab results store \(not an SQLite file\)"):
        open_store(tmp_path / "text.db")
    with closing(sqlite3.connect(tmp_path / "other.db")) as conn, conn:
        conn.execute("CREATE TABLE t (x)")
    before = (tmp_path / "other.db").read_bytes()
    for create in (False, True):  # results, or a sweep --out into it
        with pytest.raises(InitlabError, match="SQLite file but not an initlab results store"):
            open_store(tmp_path / "other.db", create=create)
    # refused without a byte changed: it was switched to WAL (and -wal/-shm made) first
    assert (tmp_path / "other.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("other.db*")) == ["other.db"]
    with closing(sqlite3.connect(tmp_path / "versioned.db")) as conn, conn:
        conn.execute("PRAGMA user_version = 7")  # another program's database, no table yet
    with pytest.raises(InitlabError, match="SQLite file but not an initlab results store"):
        open_store(tmp_path / "versioned.db", create=True)  # it had written a schema in
    with pytest.raises(InitlabError, match="no results store at"):
        open_store(tmp_path / "nowhere")


def test_config_fields_and_results_added_later_become_columns(tmp_path):
    with open_store(tmp_path, create=True) as s:
        s.record(outcome(config()))
    with closing(sqlite3.connect(tmp_path / "initlab.db")) as conn, conn:
        conn.execute('ALTER TABLE runs DROP COLUMN "residual"')  # as if written before it existed
        conn.execute('ALTER TABLE runs DROP COLUMN "blas"')
    with open_store(tmp_path, create=True) as s:
        assert {"residual", "blas"} <= set(s.runs().columns)
        s.record(outcome(config(seed=5)))
        assert len(s.runs()) == 2


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export(store, tmp_path, fmt):
    store.record(outcome(config(seed=0)))
    store.record(outcome(config(seed=1), status="diverged", accuracy=math.nan))
    paths = export(store, fmt, tmp_path / "out")
    assert [p.name for p in paths] == [
        f"{t}.{fmt}" for t in ("runs", "epochs", "layer_stats", "studies")
    ]
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    runs, epochs, stats = (read(p) for p in paths[:3])
    assert len(runs) == 2 and len(epochs) == 4 and len(stats) == 8
    assert set(runs["status"]) == {"ok", "diverged"}
    with pytest.raises(InitlabError, match="unknown export format 'xlsx'"):
        export(store, "xlsx", tmp_path / "out")


OPEN_AT = """
import sys, time
from initlab.store import open_store
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
with open_store(sys.argv[1]) as s:
    print(len(s.runs()), "blas" in s.runs().columns)
"""


def test_several_processes_may_open_an_old_store_at_once(tmp_path):
    with open_store(tmp_path, create=True) as s:
        s.record(outcome(config()))
    with closing(sqlite3.connect(tmp_path / "initlab.db")) as conn, conn:
        conn.execute('ALTER TABLE runs DROP COLUMN "blas"')  # written before the column existed
    start = time.time() + 8  # after every process has imported initlab: all open together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-300:] for _, err in outputs]
    assert [out.split() for out, _ in outputs] == [["1", "True"]] * 4


def test_output_init_same_is_written_and_told_apart_from_unused(store):
    """'same' was stored as NULL, like the output_init a 'default' run never uses, and the
    two pooled: a compare with --output-init same merged into the glorot_uniform group."""
    from initlab.store.read import varying

    for output_init in ("glorot_uniform", "same"):
        store.record(outcome(config(init="he_normal", output_init=output_init)))
    runs = store.runs()
    assert sorted(runs["output_init"]) == ["glorot_uniform", "same"]
    assert varying(runs) == ["output_init"]
    store.record(outcome(config(init="default", output_init="glorot_uniform")))
    runs = store.runs()
    assert runs.loc[runs["init"] == "default", "output_init"].isna().all()  # never applied
    same = runs[runs["output_init"].ne("same")]  # glorot and an unused one: no difference
    assert "output_init" not in varying(same)


def test_an_empty_setting_is_a_value_unless_it_means_unused(store):
    """limit_train empty (all the data) against 100 pooled into one group with a mean of
    both; an old store's empty output_init (then meaning 'same') into glorot_uniform."""
    from initlab.store.read import varying

    for limit in (None, 100):
        store.record(outcome(config(init="he_normal", limit_train=limit)))
    assert varying(store.runs()) == ["limit_train"]
    with closing(sqlite3.connect(store.path)) as conn, conn:  # a row written before today
        conn.execute("UPDATE runs SET output_init = NULL WHERE limit_train IS NULL")
    runs = store.runs()
    assert list(runs.sort_values("limit_train", na_position="first")["output_init"]) == [
        "same",
        "glorot_uniform",
    ]


def test_a_rows_unused_settings_are_empty_in_memory_as_in_the_store(store):
    """An in-memory row said output_init glorot_uniform for init 'default', which never
    applies it; the store's row was empty."""
    for cfg in (config(init="default"), config(init="he_normal", output_init="same")):
        in_memory = RunResult(config=cfg, status="ok").summary_row()
        store.record(outcome(cfg))
        stored = store.runs().set_index("init").loc[cfg.init]
        for name in ("output_init", "bias"):
            assert (in_memory[name] is None) == pd.isna(stored[name]), name
    assert in_memory["output_init"] == "same" and stored["output_init"] == "same"
