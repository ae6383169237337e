"""What ``doctor --trials`` refuses before training (one line, exit 2) and how it trains:
the candidates (unknown names, fewer than two), ``--optimizer``/``--lr``/``--batch-size``."""

import dataclasses
import json

import pytest

from initlab.cli import main
from initlab.config import RunConfig
from initlab.doctor import trials
from initlab.doctor.candidates import Candidate
from initlab.doctor.evidence import gather
from initlab.errors import InitlabError

SMALL = ["--data", "digits", "--batch", "128", "--width", "16", "--depth", "2"]


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """Every config the trials train (the timing trial included), in order."""
    calls: list[RunConfig] = []

    def counting(configs, data, on_epoch=None):
        calls.extend(configs)
        return real(configs, data, on_epoch=on_epoch)

    real = trials.train_configs
    monkeypatch.setattr(trials, "train_configs", counting)
    return calls


def _refused(args: list[str], capsys) -> str:
    """Run the doctor; it must exit 2 with one line on stderr, which is returned."""
    assert main(["doctor", *SMALL, "--budget", "2s", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_an_unknown_candidate_is_refused_with_the_closest_name(tmp_path, capsys, trained):
    out = tmp_path / "o"
    err = _refused(["--trials", "1", "--candidates", "default,he_nrmal", "--out", str(out)], capsys)
    assert "unknown candidate 'he_nrmal'" in err and "did you mean 'he_normal'" in err
    assert not trained and not out.exists()
    err = _refused(
        ["--trials", "1", "--candidates", "orthogonal(gan=2)", "--out", str(out)], capsys
    )
    assert "--candidates" in err and "did you mean 'gain'" in err


@pytest.mark.parametrize("listed", ["default", "default,default"])
def test_fewer_than_two_candidates_is_refused_before_anything_runs(
    listed, tmp_path, capsys, trained
):
    args = ["--init", "default", "--candidates", listed, "--trials", "1"]
    err = _refused([*args, "--out", str(tmp_path / "o")], capsys)
    assert "a comparison needs at least two candidates" in err and "auto:" in err
    assert not trained and not (tmp_path / "o").exists()


def test_a_comparison_left_with_one_buildable_candidate_is_refused(tmp_path, capsys, trained):
    # dirac needs a convolution's weight: on an MLP it cannot be built, which leaves default
    args = ["--init", "default", "--candidates", "dirac", "--trials", "1"]
    err = _refused([*args, "--out", str(tmp_path / "o")], capsys)
    assert "only default is left" in err and "dirac could not be built" in err
    assert not trained and not (tmp_path / "o").exists()


def test_gather_refuses_a_single_candidate_or_a_missing_reference(trained):
    one = [Candidate("default", {"init": "default"})]
    with pytest.raises(InitlabError, match="at least two"):
        gather(one, RunConfig(dataset="digits"), None, trials.Design.square(1), 5.0)
    two = [*one, Candidate("he_normal", {"init": "he_normal"})]
    with pytest.raises(InitlabError, match="reference lsuv is not a candidate"):
        gather(two, RunConfig(), None, trials.Design.square(1), 5.0, reference="lsuv")
    assert not trained


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--lr", "-1"], "lr must be"), (["--optimizer", "adm"], "did you mean 'adam'"),
     (["--batch-size", "0"], "--batch-size must be")],
)  # fmt: skip
def test_bad_training_options_are_refused_before_training(option, message, tmp_path, capsys):
    err = _refused([*option, "--trials", "1", "--out", str(tmp_path / "o")], capsys)
    assert message in err and not (tmp_path / "o").exists()


def test_the_trials_train_with_the_given_optimizer_lr_and_batch_size(tmp_path, capsys, trained):
    args = ["--candidates", "he_normal", "--trials", "1", "--budget", "3s"]
    args += ["--optimizer", "adam", "--lr", "0.005", "--batch-size", "16"]
    assert main(["doctor", *SMALL, *args, "--out", str(tmp_path)]) == 0
    assert trained and {(c.optimizer, c.lr, c.batch_size) for c in trained} == {("adam", 0.005, 16)}
    found = json.loads((tmp_path / "recommendation.json").read_text())
    assert found["training"] == {"optimizer": "adam", "lr": 0.005, "batch_size": 16}
    out = capsys.readouterr().out
    assert "with adam, lr 0.005, batch size 16" in out
    assert "[green]" not in out and "[yellow]" not in out  # the verdict's style, not markup


@pytest.mark.parametrize("option", [["--budget", "1m"], ["--candidates", "plan"], ["--out", "o"]])
def test_trial_options_without_trials_are_refused(option, tmp_path, capsys, monkeypatch):
    """They were silently ignored: the doctor diagnosed and planned, and trained nothing."""
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", *SMALL, *option]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {option[0]}: for the trials; add --trials N (3 or more)"


FAILS_IN_TRAINING = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        if x.shape[0] == 7:  # a training batch of the trials (--batch-size 7), not the probe's
            raise RuntimeError("boom in a training step")
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def build():
    return Net()
"""


def test_trials_that_fail_in_the_timing_trial_are_one_line_before_the_budget(
    tmp_path, capsys, trained
):
    (tmp_path / "net.py").write_text(FAILS_IN_TRAINING)
    args = ["doctor", "--model", f"{tmp_path / 'net.py'}:build", "--data", "digits"]
    args += ["--candidates", "he_normal", "--trials", "1", "--budget", "60s", "--batch-size", "7"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    errors = [e for e in capsys.readouterr().err.splitlines() if e.startswith("error:")]
    assert len(errors) == 1 and "every trial run failed in the timing trial" in errors[0]
    assert errors[0].endswith("RuntimeError: boom in a training step")
    timing = trials.TIMING_STEPS * 7  # the timing trial's examples: the budget was not spent
    epochs = 1 + trials.WARM_EPOCHS
    assert trained and all(c.epochs == epochs and c.limit_train == timing for c in trained)


def test_trials_that_all_fail_say_why_and_exit_1(tmp_path, capsys, monkeypatch):
    """It printed 'see trials.csv and each run's message' (trials.csv was empty and the runs
    had no message) and exited 0. (Runs that train in the timing trial, then fail.)"""
    real = trials.run_trials

    def failing(configs, data, on_epoch=None):
        done = real(configs, data, on_epoch)
        return [dataclasses.replace(r, status="failed", message="RuntimeError: boom") for r in done]

    monkeypatch.setattr(trials, "run_trials", failing)
    args = ["doctor", *SMALL, "--candidates", "he_normal", "--trials", "1", "--budget", "3s"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 1
    captured = capsys.readouterr()
    assert "first run failed with: RuntimeError: boom" in captured.out
    assert "every one of the" in captured.err
    rows = [line for line in captured.out.splitlines() if "he_normal" in line and "│" in line]
    assert rows and rows[0].split("│")[-2].strip() == "1/1"  # failed, not counted as diverged
    assert rows[0].split("│")[-3].strip() == ""
    found = json.loads((tmp_path / "o" / "recommendation.json").read_text())
    assert all(run["message"] == "RuntimeError: boom" for run in found["runs"])


def test_one_failing_group_in_the_timing_trial_does_not_stop_the_others(monkeypatch):
    """Candidates train in several groups (a wrapped plan, fixup); the first group whose
    runs all failed stopped every candidate."""
    from types import SimpleNamespace

    calls = []

    def fake(group, data, on_epoch=None):
        calls.append(len(group))
        status = "failed" if len(calls) == 1 else "ok"
        epochs = [{"seconds": 0.01}, {"seconds": 0.01}]
        return [SimpleNamespace(status=status, message="boom", epochs=epochs) for _ in group]

    configs = [RunConfig(dataset="digits", hidden=(8,), init=i) for i in ("zeros", "he_normal")]
    monkeypatch.setattr(trials, "group_configs", lambda cs: [[c] for c in cs])
    monkeypatch.setattr(trials, "train_configs", fake)
    monkeypatch.setattr(trials, "trial_data", lambda data, limit: data)
    trials.time_trial(configs, object())  # no refusal: the second group trained
    assert calls == [1, 1]
    monkeypatch.setattr(trials, "train_configs", lambda g, d, on_epoch=None: [
        SimpleNamespace(status="failed", message="boom", epochs=[]) for _ in g
    ])  # fmt: skip
    with pytest.raises(InitlabError, match="every trial run failed in the timing trial"):
        trials.time_trial(configs, object())


def test_a_doctor_stopped_in_its_trials_says_what_it_leaves(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the trials printed only 'interrupted': nothing said the trials are not
    resumable, or that the evidence of an earlier doctor in --out was left as it was."""
    (tmp_path / "trials.csv").write_text("an earlier doctor's\n")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trials, "run_trials", stopped)
    args = ["--candidates", "he_normal", "--trials", "1", "--budget", "3s"]
    assert main(["doctor", *SMALL, *args, "--out", str(tmp_path)]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "the trials stopped before their verdict and are not resumable (run the" in err
    assert f"doctor again); {tmp_path} is as it was" in err
    assert err.endswith("interrupted")
    assert (tmp_path / "trials.csv").read_text() == "an earlier doctor's\n"
