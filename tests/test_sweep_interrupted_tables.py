"""Ctrl-C in a directory holding the CSVs of an earlier sweep: the CSVs are rewritten from
the store (the runs finished so far), or a line says that those left are from before."""

import pandas as pd
import pytest

from initlab.cli import main


@pytest.fixture
def out(tmp_path, capsys, tiny_spec):
    """A study directory holding the store and CSVs of a finished earlier sweep."""
    spec = tiny_spec(tmp_path / "earlier.toml", "earlier", ["zeros", "he_normal"])
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    return out


def _sweep_later(out, tmp_path, tiny_spec) -> int:
    inits = ["orthogonal", "lecun_normal"]
    spec = tiny_spec(tmp_path / "later.toml", "later", inits, seeds=2)
    args = ["sweep", str(spec), "--out", str(out), "--workers", "1", "--engine", "single"]
    return main(args)


def test_interrupted_sweep_writes_the_csvs_of_its_finished_runs(
    out, tmp_path, capsys, interrupt_at, tiny_spec
):
    interrupt_at(3)
    assert _sweep_later(out, tmp_path, tiny_spec) == 130
    assert "wrote the tables of the finished runs" in capsys.readouterr().err
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and set(summary["init"]) == {"orthogonal"}
    assert set(pd.read_csv(out / "by_group.csv")["init"]) == {"orthogonal"}


def test_interrupted_before_any_run_says_the_csvs_are_from_before(
    out, tmp_path, capsys, interrupt_at, tiny_spec
):
    interrupt_at(1)
    assert _sweep_later(out, tmp_path, tiny_spec) == 130
    err = capsys.readouterr().err
    assert f"the CSVs in {out} are from before this sweep" in err
    assert set(pd.read_csv(out / "summary.csv")["init"]) == {"zeros", "he_normal"}


def test_a_store_error_while_saving_after_ctrl_c_is_a_note_not_a_traceback(
    out, tmp_path, capsys, interrupt_at, tiny_spec, monkeypatch
):
    import sqlite3

    from initlab.store.sqlite import Store

    def unreadable(self, *args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    interrupt_at(3)
    monkeypatch.setattr(Store, "results", unreadable)
    assert _sweep_later(out, tmp_path, tiny_spec) == 130
    err = capsys.readouterr().err
    assert "are from before this sweep (DatabaseError: database disk image" in err
    assert "Traceback" not in err


def test_a_second_ctrl_c_while_the_tables_are_written_is_said(tmp_path):
    """With no tables from before, Ctrl-C again while they were written left none and
    said nothing."""
    from types import SimpleNamespace

    from initlab.sweep.ui import save_interrupted

    def interrupted(study_id):
        raise KeyboardInterrupt

    store = SimpleNamespace(results=interrupted, path=tmp_path / "initlab.db")
    said = save_interrupted(store, "abc", tmp_path)
    assert "the tables of the finished runs were not written (interrupted again)" in said
