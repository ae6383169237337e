"""The command line: ``initlab sweep`` (dry run, Ctrl-C), ``initlab compare --out`` resuming,
``initlab results`` and its exports, and the Ray backend's absence."""

import re
import sys

import pandas as pd
import pytest
import torch

from argv import merged
from initlab.cli import main
from initlab.store import open_store
from initlab.sweep import expand, load_spec

SPEC = """
name = "cli-tiny"
seeds = 2
[fixed]
dataset = "digits"
hidden = [16]
epochs = 1
lr = 0.1
[sweep]
init = ["zeros", "he_normal"]
"""
TINY = ["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--seeds", "2", "--lr", "0.1"]


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


def test_dry_run_lists_runs_and_cost_and_starts_nothing(spec_file, tmp_path, capsys, trainings):
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    for config in expand(load_spec(spec_file)):
        assert config.key() in text
    assert "he_normal" in text and "pending" in text and "GFLOP" in text
    assert "4 runs, 0 already done" in text and "4 model-epochs" in text and "estimated" in text
    assert not out.exists() and trainings == []
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["sweep", str(spec_file), "--out", str(out), "--dry-run"]) == 0
    assert "4 already done" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_dry_run_warns_of_a_device_this_machine_lacks(tmp_path, capsys, trainings):
    """It said nothing and exited 0; the real run on this machine refuses the device. Still
    0: the sweep may be planned here for a Ray cluster's GPUs."""
    spec = tmp_path / "gpu.toml"
    spec.write_text(SPEC.replace("epochs = 1", 'epochs = 1\ndevice = "cuda"'))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "CUDA is not available" in err and trainings == []


def test_compare_out_twice_resumes(tmp_path, capsys, trainings):
    args = [
        "compare",
        *TINY,
        "--inits",
        "zeros,he_normal",
        "--out",
        str(tmp_path),
        "--workers",
        "1",
    ]
    args = merged(args, ["--engine", "single"])
    assert main(args) == 0
    first = capsys.readouterr()
    assert len(trainings) == 4 and "he_normal" in first.out and "ranking" in first.out
    assert (tmp_path / "initlab.db").exists() and (tmp_path / "summary.csv").exists()
    assert main(args) == 0
    second = capsys.readouterr()
    assert len(trainings) == 4
    assert "4 of 4 runs already done" in second.err
    assert "he_normal" in second.out
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 4
    # one more seed: only the new runs train
    assert main(merged(args, ["--seeds", "3"])) == 0
    assert len(trainings) == 6 and "4 of 6 runs already done, resuming" in capsys.readouterr().err


def test_ctrl_c_keeps_finished_runs_and_prints_the_resume_command(
    spec_file, tmp_path, capsys, monkeypatch, interrupt_at
):
    interrupt_at(3)
    out = tmp_path / "out"
    args = ["sweep", str(spec_file), "--out", str(out), "--workers", "1", "--engine", "single"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted: ran 2 run(s)" in err and "2 of 4 runs done" in err
    expected = f"initlab sweep {spec_file} --out {out} --workers 1 --engine single"
    assert f"resume with:\n  {expected}" in err
    with open_store(out) as store:
        assert len(store.runs()) == 2 and store.integrity_check() == "ok"


def test_results_prints_summary_and_ranking_and_exports(spec_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["results", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cli-tiny" in text and "ranking by test accuracy" in text and "stuck 2/2" in text
    assert re.search(r"^(winner: .+, better than|no winner at 2 seeds: )", text, re.MULTILINE)
    assert main(["results", str(out / "initlab.db"), "--group-by", "seed"]) == 0
    assert "by seed" in capsys.readouterr().out
    for fmt in ("csv", "parquet"):
        target = tmp_path / fmt
        assert main(["results", str(out), "--export", fmt, "--out", str(target)]) == 0
        assert (target / f"runs.{fmt}").exists() and (target / f"layer_stats.{fmt}").exists()
    assert len(pd.read_csv(tmp_path / "csv" / "epochs.csv")) == 4
    capsys.readouterr()
    assert main(["results", str(out), "--out", str(tmp_path / "tables")]) == 2  # no --export
    assert "--out is where --export writes" in capsys.readouterr().err
    assert not (tmp_path / "tables").exists()
    assert main(["results", str(out), "--study", "cli-tinny"]) == 2
    assert "did you mean 'cli-tiny'" in capsys.readouterr().err
    assert main(["results", str(tmp_path / "nothing")]) == 2
    assert "no results store at" in capsys.readouterr().err


def test_out_may_name_the_store_file_and_the_csvs_go_beside_it(spec_file, tmp_path, capsys):
    """--out DIR/initlab.db (as results and report take it) trained everything, then failed
    with exit 2 writing the CSVs 'in' the database file."""
    db = tmp_path / "study" / "initlab.db"
    assert main(["sweep", str(spec_file), "--out", str(db), "--workers", "1"]) == 0
    assert (db.parent / "summary.csv").exists() and db.is_file()
    assert "store: " + str(db) in capsys.readouterr().err
    with open_store(db.parent) as store:
        assert len(store.runs()) == 4


def test_a_bad_within_is_the_only_output_of_results(spec_file, tmp_path, capsys):
    """With two studies in the store the studies table was printed, then the error."""
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 0
    spec_file.write_text(SPEC.replace("cli-tiny", "cli-other"))
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["results", str(out), "--within", "inti"]) == 2
    said = capsys.readouterr()
    assert said.out == "" and "did you mean 'init'?" in said.err
    assert len(said.err.strip().splitlines()) == 1
    assert main(["results", str(out)]) == 0
    assert "2 studies in" in capsys.readouterr().out


def test_two_store_files_in_one_directory_keep_their_own_csvs(tmp_path, capsys):
    """--out x/a.db then --out x/b.db wrote both studies' CSVs into x/: b's replaced a's."""
    assert main(["compare", *TINY, "--inits", "zeros", "--out", str(tmp_path / "a.db")]) == 0
    assert main(["compare", *TINY, "--inits", "he_normal", "--out", str(tmp_path / "b.db")]) == 0
    a, b = (pd.read_csv(tmp_path / n / "summary.csv") for n in ("a", "b"))
    assert set(a["init"]) == {"zeros"} and set(b["init"]) == {"he_normal"}


def test_ray_backend_without_ray_is_a_clear_error(spec_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--backend", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: Ray is not installed: pip install 'initlab[ray]'"
    assert not out.exists()
    assert main(["compare", *TINY, "--backend", "ray"]) == 2
    assert "pip install 'initlab[ray]'" in capsys.readouterr().err
    assert main(["sweep", str(spec_file), "--address", "ray://x:10001", "--out", str(out)]) == 2
    assert "--address is for the Ray backend" in capsys.readouterr().err
    assert main(["sweep", str(spec_file), "--backend", "slurm", "--out", str(out)]) == 2
    assert "unknown backend 'slurm'" in capsys.readouterr().err


USER_DATA_SPEC = """
name = "my-data"
seeds = 2
[fixed]
dataset = "{data}"
hidden = [8]
epochs = 2
lr = 0.1
[sweep]
init = ["zeros", "he_normal"]
"""


def test_sweep_of_user_npz_data_with_the_builtin_mlp_runs_end_to_end(tmp_path, capsys, trainings):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3, 4)).astype("float32")  # an image-like shape: flattened
    y = (x[:, 0, 0] > 0).astype("int64") + (x[:, 1, 1] > 0).astype("int64")  # 3 classes
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    spec_file = tmp_path / "mine.toml"
    spec_file.write_text(USER_DATA_SPEC.format(data=data))
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "--out", str(out), "--engine", "single"]) == 0
    err = capsys.readouterr().err
    # sized from the data once loaded: 4 tiny runs are costed and run in this process
    assert "running 4 run(s) on 1 worker(s)" in err and len(trainings) == 4
    with open_store(out) as store:
        runs, epochs = store.runs(), store.epochs()
    assert len(runs) == 4 and set(runs["dataset"]) == {str(data)}
    assert "failed" not in set(runs["status"]) and len(epochs) == 4 * 2
    assert (out / "summary.csv").exists()


def test_dry_run_prints_one_line_per_model_size(tmp_path, capsys, trainings):
    # relu and tanh nets of one shape cost the same: one line, not two identical ones
    spec = tmp_path / "acts.toml"
    spec.write_text(SPEC + 'activation = ["relu", "tanh"]\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mlp 16")]
    assert len(lines) == 1, lines


def test_sigterm_is_ctrl_c_the_finished_runs_kept_their_tables_written_and_resume_said(
    spec_file, tmp_path, capsys, monkeypatch
):
    """`kill` (a scheduler's stop) ended a sweep silently: no resume line and no CSVs."""
    import os
    import signal

    from initlab.sweep import engine
    from initlab.train.run import run_config

    calls = []

    def terminated_at_the_third(config, data=None, on_epoch=None, checkpoints=None):
        calls.append(config)
        if len(calls) == 3:  # without initlab's handler, SIGTERM would end pytest itself
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "no handler"
            os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread
        return run_config(config, data, on_epoch)

    monkeypatch.setattr(engine, "run_config", terminated_at_the_third)
    out = tmp_path / "out"
    args = ["sweep", str(spec_file), "--out", str(out), "--workers", "1", "--engine", "single"]
    before = signal.getsignal(signal.SIGTERM)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted: ran 2 run(s)" in err and "resume with:" in err
    assert len(pd.read_csv(out / "summary.csv")) == 2  # the finished runs' table
    assert signal.getsignal(signal.SIGTERM) is before  # put back afterwards


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--workers", "0"], "--workers must be"), (["--engine", "foo"], "unknown engine 'foo'")],
)
def test_bad_run_options_create_no_store(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert main(["compare", *TINY, "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_conflicting_options_are_refused_before_anything_runs(spec_file, tmp_path, capsys):
    """--full silently won over --scale tiny (a paper-scale study), and --calibrate without
    --dry-run silently ran the sweep."""
    assert main(["study", "he2015", "--scale", "tiny", "--full"]) == 2
    assert "give one of --full and --scale tiny" in capsys.readouterr().err
    out = tmp_path / "never"
    assert main(["sweep", str(spec_file), "--calibrate", "--out", str(out)]) == 2
    assert "add --dry-run" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "foo"], "unknown engine 'foo'"),
        (["--backend", "foo"], "unknown backend 'foo'"),
        (["--workers", "0"], "--workers must be"),
    ],
)
def test_a_dry_run_refuses_what_the_run_would(spec_file, tmp_path, capsys, extra, message):
    """The dry run priced a sweep its real run then refused."""
    assert main(["sweep", str(spec_file), "--dry-run", "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_study_name_two_studies_share_says_which_one_it_shows(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", *TINY, "--out", str(out), "--inits", "zeros"]) == 0
    assert main(["compare", *TINY, "--out", str(out), "--inits", "he_normal"]) == 0
    capsys.readouterr()
    assert main(["results", str(out), "--study", "compare"]) == 0
    said = capsys.readouterr()
    assert "2 studies are named 'compare': showing the latest" in " ".join(said.err.split())
    assert "he_normal" in said.out and "zeros" not in said.out


def test_a_directory_where_a_table_goes_is_refused_before_anything_trains(
    spec_file, tmp_path, capsys
):
    """Found only after every run had trained (the runs saved, the tables not)."""
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "summary.csv is a directory where this command writes its summary.csv" in err
    assert not (out / "initlab.db").exists()  # nothing trained, no store made


def test_a_second_study_in_one_directory_says_whose_tables_it_replaces(tmp_path, capsys):
    """The second study's CSVs replaced the first's without a word (its runs stay stored)."""
    out = tmp_path / "shared"
    args = ["compare", "--data", "digits", "--hidden", "8", "--epochs", "1", "--seeds", "1"]
    args += ["--track", "off", "--workers", "1", "--out", str(out)]
    assert main([*args, "--inits", "he_normal"]) == 0
    assert main([*args, "--inits", "he_normal"]) == 0  # the same study again: nothing to say
    assert "another study" not in capsys.readouterr().err
    assert main([*args, "--inits", "zeros"]) == 0
    err = capsys.readouterr().err
    assert "summary.csv held 1 run(s) of another study, which this study's tables replace" in err
    assert f"initlab results {out}" in err
