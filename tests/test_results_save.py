"""Writing a study's CSVs and plot: atomic (a full disk never leaves an empty or truncated
file), and a full disk after a sweep is one ``error:`` line and exit 2, the runs kept."""

import errno
import os

import pandas as pd
import pytest

from initlab.cli import main
from initlab.results import ResultSet
from initlab.store import open_store


def _full_disk_on(monkeypatch, name: str) -> None:
    """``DataFrame.to_csv`` writes half of ``name`` and then fails as a full disk does."""
    original = pd.DataFrame.to_csv

    def to_csv(self, path=None, *args, **kwargs):
        if path is not None and name in str(path):
            with open(path, "w") as handle:
                handle.write("run_id,in")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


def _results() -> ResultSet:
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "init": ["zeros", "he_normal"],
            "seed": [0, 0],
            "test_accuracy": [0.1, 0.9],
            "final_train_loss": [2.3, 0.4],
            "status": ["stuck", "ok"],
        }
    )
    epochs = runs[["run_id", "init", "seed"]].assign(
        epoch=1, train_loss=runs["final_train_loss"], val_accuracy=runs["test_accuracy"]
    )
    return ResultSet(runs, epochs)


def test_runs_regrouped_by_a_setting_their_curves_lack_summarize_and_plot(tmp_path):
    """Two comparisons concatenated and grouped by ``lr`` raised pandas' KeyError 'lr' from
    the curves: the epochs carried only the first grouping's columns."""
    first, second = _results(), _results()
    second.runs["run_id"] = ["c", "d"]
    second.epochs["run_id"] = ["c", "d"]
    runs = pd.concat([first.runs.assign(lr=0.1), second.runs.assign(lr=0.01)])
    both = ResultSet(runs, pd.concat([first.epochs, second.epochs]), ["init", "lr"])
    assert "lr" in both.epochs and len(both.summary()) == 4
    assert repr(both) and both.plot(tmp_path / "curves.png").exists()


def test_a_group_keyed_by_a_setting_it_does_not_use_stays_in_every_table(tmp_path):
    """``init = default`` leaves ``output_init`` unset (NaN): grouped by both, the summary,
    by_group.csv and the report dropped the default baseline while the ranking kept it."""
    from initlab.report import build_report

    runs = _results().runs.assign(output_init=[None, "glorot_uniform"], init=["default", "he"])
    runs = pd.concat([runs, runs.assign(run_id=["c", "d"], seed=1)], ignore_index=True)
    epochs = runs[["run_id", "init", "output_init", "seed"]].assign(epoch=1, train_loss=1.0)
    both = ResultSet(runs, epochs, ["init", "output_init"])
    assert both.summary()["init"].tolist() == ["default", "he"]
    assert "default              —" in repr(both)
    report = build_report(both, tmp_path).markdown.read_text()
    assert "4 runs in 2 groups" in report and "init=default, output_init=—" in report


def test_save_on_a_full_disk_leaves_the_files_of_before(tmp_path, monkeypatch):
    results = _results()
    paths = results.save(tmp_path)
    before = {p.name: p.read_bytes() for p in paths}
    _full_disk_on(monkeypatch, "epochs")
    with pytest.raises(OSError) as raised:
        results.save(tmp_path)
    assert raised.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file left


def test_save_on_a_full_disk_writes_no_empty_csv(tmp_path, monkeypatch):
    _full_disk_on(monkeypatch, "summary")
    with pytest.raises(OSError):
        _results().save(tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


def test_sweep_with_a_full_disk_for_the_csvs_is_one_line_and_exit_2(
    tmp_path, capsys, monkeypatch, tiny_spec
):
    spec = tiny_spec(tmp_path / "tiny.toml", "save-tiny", ["zeros", "he_normal"], seeds=2, lr=0.1)
    out = tmp_path / "out"
    _full_disk_on(monkeypatch, "summary")
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0]
    assert "Traceback" not in captured.err + captured.out
    assert "ranking by" in captured.out  # the results are still shown
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("initlab.db")) == []
    with open_store(out) as store:
        assert len(store.runs()) == 4 and store.integrity_check() == "ok"
    monkeypatch.undo()
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    assert len(pd.read_csv(out / "summary.csv")) == 4


def test_a_file_that_cannot_be_written_is_named_and_not_blamed_on_the_disk(tmp_path):
    """A directory where summary.csv goes is not a full disk: the line said to free space."""
    from initlab.sweep.ui import save_tables

    (tmp_path / "summary.csv").mkdir()
    paths, line = save_tables(_results(), tmp_path)
    assert paths == [] and "summary.csv: is a directory" in line
    assert "fix that and run the same command again" in line and "space" not in line


def test_a_full_disk_says_to_free_space(tmp_path, monkeypatch):
    from initlab.sweep.ui import save_tables

    _full_disk_on(monkeypatch, "summary")
    _, line = save_tables(_results(), tmp_path)
    assert "no space left on device" in line and "free some space" in line


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    """kill -9 while the tables were written left .summary.<pid>-<hex>.tmp.csv forever."""
    from initlab.atomic_files import write_files

    dead = 2**22 + 7  # above Linux's default pid_max: no process has it
    stale = tmp_path / f".summary.{dead}-0123abcd.tmp.csv"
    stale.write_text("half a table")
    live = tmp_path / f".summary.{os.getpid()}-89abcdef.tmp.csv"  # a writer still at work
    live.write_text("another process's table")
    other = tmp_path / f".notes.{dead}-0123abcd.tmp.txt"  # not a name this write makes
    other.write_text("not ours")
    write_files(tmp_path, {"summary.csv": lambda p: p.write_text("runs")})
    assert (tmp_path / "summary.csv").read_text() == "runs"
    assert not stale.exists() and live.exists() and other.exists()


def test_an_older_studys_layer_stats_are_not_left_beside_new_tables(tmp_path):
    """A sweep's tables written over another study's kept its layer_stats.csv, whose 16 run
    ids matched none of the new summary's."""
    (tmp_path / "layer_stats.csv").write_text("run_id,layer,metric,value\nother,l,std,1\n")
    results = _results()
    assert results.layer_stats.empty
    written = {p.name for p in results.save(tmp_path)}
    assert "layer_stats.csv" not in written
    assert not (tmp_path / "layer_stats.csv").exists()
