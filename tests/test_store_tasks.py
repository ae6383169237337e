"""Each stored run's resolved task names its score: ``initlab results``, ``initlab report`` and
:class:`ResultSet` say R² for regression, not accuracy; stores written before the
``resolved_task`` column open, gain it, and read their runs by their config's task."""

import sqlite3
import time
from contextlib import closing
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from initlab.cli import main
from initlab.config import RunConfig
from initlab.ranking.scores import Score, run_tasks
from initlab.report import assemble_report
from initlab.results import ResultSet
from initlab.run_status import STUCK_RULE as RULE
from initlab.store import open_store
from initlab.sweep import engine
from initlab.sweep.engine import DataCache, Outcome, data_key, execute_chunk
from initlab.train.result import RunResult

STUCK_RULE = f"stuck: {RULE}"


def result(init: str, seed: int, score: float, task: str = "", **config) -> RunResult:
    """A finished run with two epochs (no training)."""
    cfg = RunConfig(dataset="digits", hidden=(8,), init=init, seed=seed, epochs=2, **config)
    epochs = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_accuracy": score,
            "val_loss": 1.0 / e,
            "val_accuracy": score,
            "seconds": 0.1,
        }
        for e in (1, 2)
    ]
    status = "stuck" if task in ("", "classification") and score < 0.15 else "ok"
    return RunResult(cfg, status, epochs, test_loss=0.5, test_accuracy=score, task=task)


def record(path, results: list[RunResult]) -> None:
    with open_store(path, create=True) as store:
        for r in results:
            store.record(Outcome(r, time.time(), time.time(), "single"))


def two_groups(task: str, **config) -> list[RunResult]:
    """``he_normal`` scoring well and ``zeros`` scoring near zero, two seeds each."""
    return [
        result(init, seed, score + 0.01 * seed, task, **config)
        for init, score in (("he_normal", 0.8), ("zeros", 0.05))
        for seed in range(2)
    ]


def results_text(path, capsys) -> str:
    """What ``initlab results PATH`` prints, its lines joined (the console wraps them)."""
    capsys.readouterr()
    assert main(["results", str(path)]) == 0
    return " ".join(capsys.readouterr().out.split())


def report_html(path, out) -> str:
    assert main(["report", str(path), "--out", str(out)]) == 0
    return (out / "report.html").read_text()


@pytest.fixture
def regression_npz(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x @ rng.standard_normal(5)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    monkeypatch.chdir(tmp_path)
    return "reg.npz"


def test_a_regression_sweep_records_its_task_and_results_and_report_say_r2(
    regression_npz, tmp_path, capsys
):
    """End to end: the task is `auto` in the config, regression once the data is loaded."""
    out = tmp_path / "out"
    args = ["--data", regression_npz, "--inits", "he_normal,zeros", "--seeds", "2"]
    args += ["--epochs", "1", "--hidden", "8", "--workers", "1", "--out", str(out)]
    assert main(["compare", *args]) == 0
    with open_store(out) as store:
        runs = store.runs()
    assert set(runs["task"]) == {"auto"} and set(runs["resolved_task"]) == {"regression"}
    text = results_text(out, capsys)
    assert "test R² by init" in text and "ranking by test R²" in text
    assert "test accuracy" not in text and "stuck: test R² not significantly above 0" in text
    html = report_html(out, tmp_path / "report")
    assert "test R² (mean ± std)" in html and "Δ R² (A − B)" in html
    assert "R² with confidence intervals" in html and "task: regression" in html
    assert "test accuracy" not in html and "majority" not in html  # R²'s own stuck rule


def test_a_regression_run_in_a_store_is_shown_as_r2(tmp_path, capsys):
    record(tmp_path, two_groups("regression"))
    text = results_text(tmp_path, capsys)
    assert "all runs: test R² by init" in text and "test_accuracy: test R²," in text
    assert "ranking by test R²" in text
    assert "test accuracy" not in text and "majority-class" not in text
    rule = "stuck: test R² not significantly above 0: no better than predicting the test targets'"
    assert rule in text
    with open_store(tmp_path) as store:
        found = store.results()
    assert found.score == Score(("regression",))
    assert "test_accuracy holds the test R²" in repr(found)
    assert str(found).endswith("test_accuracy holds the test R²")  # print(results) too
    assert "test_accuracy holds the test R²" in found._repr_html_()  # a notebook's table
    report = assemble_report(found)
    summary = report.sections[0]
    assert "test R² (mean ± std)" in summary.blocks[0].frame.columns
    assert "test R² not significantly above 0" in summary.intro and "majority" not in summary.intro
    assert "ranked by mean test R²" in summary.intro


def test_classification_output_is_unchanged(tmp_path, capsys):
    record(tmp_path, two_groups("classification"))
    text = results_text(tmp_path, capsys)
    assert "all runs: test accuracy by init" in text and "ranking by test accuracy" in text
    assert "test accuracy: mean ± std over seeds" in text and STUCK_RULE in text
    assert "stuck 2/2" in text and "R²" not in text and "test score" not in text
    html = report_html(tmp_path, tmp_path / "report")
    assert "test accuracy (mean ± std)" in html and "Δ accuracy (A − B)" in html
    assert "<th>stuck</th>" in html and "Accuracy with confidence intervals" in html
    assert STUCK_RULE in html
    assert "R²" not in html and "task: " not in html and "test_accuracy holds" not in html


def test_an_old_store_opens_gains_the_column_and_reads_its_runs(tmp_path, capsys):
    """A store written before ``resolved_task`` existed: nothing is lost, its runs read by
    their config's task (``auto`` as classification), and new runs record theirs."""
    old = [*two_groups("classification"), result("lecun_normal", 0, 0.7, task="regression")]
    old[-1].config = RunConfig(dataset="digits", hidden=(8,), epochs=2, task="regression")
    record(tmp_path, old)
    db = tmp_path / "initlab.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute('ALTER TABLE runs DROP COLUMN "resolved_task"')  # as written back then
        before = pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", conn)
        epochs = conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
    with open_store(tmp_path) as store:
        runs = store.runs().sort_values("run_id").reset_index(drop=True)
        assert runs["resolved_task"].isna().all() and len(store.epochs()) == epochs
        assert list(run_tasks(runs)) == [
            "regression" if t == "regression" else "classification" for t in runs["task"]
        ]
        store.record(Outcome(result("orthogonal", 0, 0.9, "regression"), 0.0, 1.0, "single"))
    with closing(sqlite3.connect(db)) as conn:
        after = pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", conn)
    kept = after[after["run_id"].isin(before["run_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[before.columns], before)  # nothing lost or changed
    assert after.set_index("run_id")["resolved_task"].notna().sum() == 1
    text = results_text(tmp_path, capsys)
    assert "all runs: test score by init" in text  # classification + regression runs
    assert "test_accuracy: each task's score (classification: test accuracy" in text


def test_mixed_tasks_say_test_score_and_name_each_groups_task(tmp_path):
    runs = two_groups("classification") + [
        result("orthogonal", s, 0.6, "regression") for s in range(2)
    ]
    found = ResultSet.from_results(runs)
    assert found.score.mixed and found.score.name() == "test score"
    tasks = found.summary().set_index("init")["resolved_task"]
    assert tasks.to_dict() == {
        "he_normal": "classification",
        "zeros": "classification",
        "orthogonal": "regression",
    }
    report = assemble_report(found)
    table = report.sections[0].blocks[0].frame
    assert list(table["task"]) == ["classification", "classification", "regression"]
    assert "test score (mean ± std)" in table.columns and "stuck" in table.columns
    assert "stuck (classification runs)" in report.sections[0].intro
    found.save(tmp_path)  # summary.csv keeps each run's task for a later report
    assert set(pd.read_csv(tmp_path / "summary.csv")["resolved_task"]) == {
        "classification",
        "regression",
    }


def test_a_run_that_fails_before_training_records_its_data_task(monkeypatch):
    config = RunConfig(dataset="digits", hidden=(8,), epochs=1)
    data = SimpleNamespace(task="regression")

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "run_chunk", broken)
    cache = DataCache(preloaded={data_key(config): data})
    [outcome] = execute_chunk([config], cache, "single")
    assert outcome.result.status == "failed" and outcome.result.task == "regression"
    assert outcome.result.summary_row()["resolved_task"] == "regression"
