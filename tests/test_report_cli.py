"""``initlab report``: from a results store, from `initlab compare --out` CSVs, and its errors."""

import time

import pytest

from initlab.cli import main
from initlab.config import RunConfig
from initlab.results import ResultSet
from initlab.store import open_store
from initlab.sweep.engine import Outcome
from initlab.train.result import RunResult


def run_results() -> list[RunResult]:
    """Four finished runs (two inits × two seeds) with epochs and per-layer rows; no training."""
    results = []
    for init, accuracy in (("he_normal", 0.9), ("zeros", 0.1)):
        for seed in range(2):
            config = RunConfig(dataset="digits", hidden=(16,), init=init, seed=seed, epochs=2)
            epochs = [
                {
                    "epoch": e,
                    "train_loss": 1.0 / e,
                    "train_accuracy": accuracy,
                    "val_loss": 1.0 / e,
                    "val_accuracy": accuracy + 0.01 * seed,
                    "seconds": 0.1,
                }
                for e in (1, 2)
            ]
            layers = [
                {"epoch": e, "step": 10 * e, "layer": name, "metric": metric, "value": value}
                for e in (0, 1, 2)
                for name, value in (("0", 0.01), ("2", 0.1))
                for metric in ("weight_grad_norm", "post_std")
            ]
            results.append(
                RunResult(
                    config,
                    "ok" if accuracy > 0.5 else "stuck",
                    epochs,
                    test_accuracy=accuracy + 0.01 * seed,
                    test_loss=0.5,
                    layer_stats=layers,
                )
            )
    return results


def test_report_from_a_compare_out_directory(tmp_path, capsys):
    untracked = run_results()
    for result in untracked:
        result.layer_stats = []  # a compare run with --track off
    ResultSet.from_results(untracked).save(tmp_path / "cmp")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "cmp"), "--out", str(out), "--title", "CSV <run>"]) == 0
    assert "report.html" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "CSV &lt;run&gt;" in html and "tracking was off" in html
    assert (out / "report.md").exists() and (out / "report_curves.png").exists()


def test_layer_stats_csv_next_to_the_compare_files_is_used(tmp_path):
    ResultSet.from_results(run_results()).save(tmp_path)  # writes layer_stats.csv too
    assert (tmp_path / "layer_stats.csv").exists()
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "gradients.png").exists()


def test_report_from_a_results_store(tmp_path):
    store = open_store(tmp_path / "sweep", create=True)
    results = run_results()
    for result in results:
        store.record(Outcome(result, time.time(), time.time(), "single"))
    store.add_study("0123456789abcdef", "tiny", {}, ["init"], [r.config.key() for r in results[:2]])
    store.close()
    out = tmp_path / "report"
    db = tmp_path / "sweep" / "initlab.db"
    assert main(["report", str(db), "--out", str(out), "--study", "tiny"]) == 0
    assert "2 runs in 1 groups" in (out / "report.html").read_text()
    assert main(["report", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert "2 runs in 1 groups" in (out / "report.html").read_text()  # the only study
    store = open_store(tmp_path / "sweep")
    store.add_study("fedcba9876543210", "other", {}, ["init"], [results[2].config.key()])
    store.close()
    assert main(["report", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()  # two studies: every run
    assert "4 runs in 2 groups" in html and (out / "gradients.png").exists()


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, [], "no such file or directory"),
        ("empty-dir", [], "neither a results store"),
        ("doctor", [], "holds `initlab doctor --trials` evidence: its verdict is in rec"),
        ("csv", ["--study", "x"], "--study needs a results store"),
        ("csv", ["--group-by", "init,nope"], "cannot group by 'nope'"),
        ("not-sqlite", [], "is not an initlab results store"),  # no SQLite file: no repair
        ("summary-csv", [], "(not an SQLite file): give its directory: initlab report "),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path, capsys, make, args, message):
    source = tmp_path / "source"
    if make in ("empty-dir", "doctor"):
        source.mkdir()
        if make == "doctor":  # the doctor's --out: evidence, no run table
            (source / "recommendation.json").write_text("{}")
    elif make == "csv":
        ResultSet.from_results(run_results()).save(source)
    elif make == "not-sqlite":
        source = tmp_path / "results.db"
        source.write_text("not a database")
    elif make == "summary-csv":  # a compare's table given for its directory
        ResultSet.from_results(run_results()).save(source)
        source = source / "summary.csv"
    assert main(["report", str(source), "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert "will not write" not in err  # report reads: the store-writing wording misled
