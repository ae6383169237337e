"""Epoch checkpoints (initlab.train.checkpoint): an interrupted stack's runs resume from
their last saved epoch, with the state an uninterrupted run has there.

Resumed and uninterrupted runs are compared with the engine tests' tolerance (the same
computation on the same path is in fact repeated exactly, but no test relies on that)."""

from __future__ import annotations

import math
import os
import shutil
import time

import pytest
import torch

from initlab.checkpoints import Checkpoints, checkpoint_dir, checkpoint_seconds
from initlab.config import RunConfig
from initlab.data import load
from initlab.errors import InitlabError
from initlab.notes import InitlabNote
from initlab.train import train_configs

EPS = torch.finfo(torch.float32).eps
BASE = dict(dataset="digits", hidden=(32, 16), epochs=4, batch_size=32, batch_norm=True)
INITS = ("he_normal", "glorot_uniform", "orthogonal")


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def configs(**settings) -> list[RunConfig]:
    return [RunConfig(**{**BASE, **settings}, init=init, seed=k) for k, init in enumerate(INITS)]


def assert_same_run(resumed, whole, data) -> None:
    """Same status, epochs, tracking rows and, within float tolerance, the same numbers."""
    tol = 50 * EPS * math.sqrt(data.num_train)
    assert resumed.status == whole.status
    assert [e["epoch"] for e in resumed.epochs] == [e["epoch"] for e in whole.epochs]
    for a, b in zip(resumed.epochs, whole.epochs, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=tol, abs=tol), key
    assert resumed.test_loss == pytest.approx(whole.test_loss, rel=tol, abs=tol)
    assert abs(resumed.test_accuracy - whole.test_accuracy) <= 2 / data.num_test
    assert len(resumed.layer_stats) == len(whole.layer_stats)
    for a, b in zip(resumed.layer_stats, whole.layer_stats, strict=True):
        assert (a["epoch"], a["step"], a["layer"], a["metric"]) == (
            b["epoch"], b["step"], b["layer"], b["metric"],
        )  # fmt: skip
        assert a["value"] == pytest.approx(b["value"], rel=1e-3, abs=1e-5) or (
            math.isnan(a["value"]) and math.isnan(b["value"])
        )


def interrupt_at(epoch: int, runs: list[RunConfig]):
    """An epoch hook raising KeyboardInterrupt when the last run reports ``epoch`` (before
    that epoch's checkpoint is saved)."""

    def hook(config, record):
        if record["epoch"] == epoch and config is runs[-1]:
            raise KeyboardInterrupt

    return hook


def interrupted(runs: list[RunConfig], data, folder, epoch: int) -> Checkpoints:
    """Train ``runs`` saving after every epoch, interrupted when the last run reports
    ``epoch`` (so saved after ``epoch - 1``); their checkpoints."""
    saves = Checkpoints(str(folder), every=0.0)
    with pytest.raises(KeyboardInterrupt):
        train_configs(runs, data, checkpoints=saves, on_epoch=interrupt_at(epoch, runs))
    return saves


def heard(log: list):
    return lambda config, record: log.append((config.init, record["epoch"]))


@pytest.mark.parametrize(
    "settings",
    [
        dict(optimizer="momentum", lr=0.02, track="epoch"),  # SGD fused into the backward
        dict(optimizer="adam", lr=0.003, dropout=0.2),
        dict(model="cnn", optimizer="adamw", lr=0.003, epochs=3),
    ],
    ids=["momentum-tracked", "adam-dropout", "cnn-adamw"],
)
def test_an_interrupted_stack_resumes_after_its_last_saved_epoch(tmp_path, digits, settings):
    runs = configs(**settings)
    whole = train_configs(runs, digits)
    saves = interrupted(runs, digits, tmp_path, epoch=3)
    assert sorted(os.listdir(tmp_path)) == sorted(f"{c.key()}.pt" for c in runs)
    assert {saves.saved_epoch(c.key()) for c in runs} == {2}
    log: list = []
    resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    last = runs[0].epochs
    assert sorted(log) == sorted((c.init, e) for c in runs for e in range(3, last + 1))
    for a, b in zip(resumed, whole, strict=True):
        assert_same_run(a, b, digits)
    assert [r.config for r in resumed] == runs


def test_a_diverged_run_is_kept_as_it_was_and_not_trained_again(tmp_path, digits):
    runs = configs(optimizer="sgd", lr=0.05, batch_norm=False)
    runs[1] = runs[1].replace(init="random_normal(stddev=5.0)", lr=1e8)
    saves = interrupted(runs, digits, tmp_path, epoch=3)
    log: list = []
    resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    assert resumed[1].status == "diverged"
    assert resumed[1].message.startswith("loss became non-finite at epoch 1")
    assert not any(init == runs[1].init for init, _ in log)
    assert math.isnan(resumed[1].test_loss) and resumed[1].epochs == []
    assert resumed[1].device == "cpu" and resumed[1].strategy == resumed[0].strategy != ""
    assert resumed[0].status == "ok" and len(resumed[0].epochs) == 4


def test_runs_saved_at_other_epochs_train_in_their_own_stacks(tmp_path, digits):
    runs = configs(optimizer="momentum", lr=0.02)
    saves = Checkpoints(str(tmp_path), every=0.0)
    with pytest.raises(KeyboardInterrupt):  # the first two, saved after epoch 1
        train_configs(runs[:2], digits, checkpoints=saves, on_epoch=interrupt_at(2, runs[:2]))
    log: list = []
    resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    assert sorted(e for init, e in log if init == runs[2].init) == [1, 2, 3, 4]
    assert sorted(e for init, e in log if init == runs[0].init) == [2, 3, 4]
    whole = train_configs(runs, digits)
    for a, b in zip(resumed, whole, strict=True):
        assert_same_run(a, b, digits)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda path, other: path.write_bytes(b"not a checkpoint"), "damaged .[A-Za-z]+.\\)"),
        (lambda path, other: path.write_bytes(path.read_bytes()[:200]), "damaged"),
        (lambda path, other: path.write_bytes(b""), "damaged .[A-Za-z]+.\\)"),
        (lambda path, other: shutil.copy(other, path), "it holds run [0-9a-f]{16}\\)"),
    ],
    ids=["garbage", "truncated", "empty", "another-run"],
)
def test_a_damaged_checkpoint_is_a_note_and_its_run_starts_over(tmp_path, digits, damage, reason):
    runs = configs(optimizer="momentum", lr=0.02, epochs=3)
    saves = interrupted(runs, digits, tmp_path, epoch=2)
    path, other = saves.path(runs[0].key()), saves.path(runs[1].key())
    damage(path, other)
    log: list = []
    with pytest.warns(InitlabNote, match=reason) as notes:
        resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    assert any(str(path) in str(n.message) for n in notes)
    assert sorted(e for init, e in log if init == runs[0].init) == [1, 2, 3]
    assert sorted(e for init, e in log if init == runs[1].init) == [2, 3]
    for a, b in zip(resumed, train_configs(runs, digits), strict=True):
        assert_same_run(a, b, digits)


def test_a_checkpoint_that_cannot_be_saved_is_a_note_and_training_goes_on(tmp_path, digits):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    runs = configs(optimizer="momentum", lr=0.02, epochs=3)
    saves = Checkpoints(str(blocked / "checkpoints"), every=0.0)
    with pytest.warns(InitlabNote, match="cannot save checkpoints in .*training goes on") as notes:
        results = train_configs(runs, digits, checkpoints=saves)
    assert len([n for n in notes if "cannot save" in str(n.message)]) == 1  # once per stack
    assert [r.status for r in results] == ["ok"] * 3


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's sysfs")
def test_a_folder_that_refuses_new_files_is_a_note_too(digits):
    """torch.save given a path raises RuntimeError, not OSError, when the file cannot be
    created (a read-only or immutable folder): every run of the stack failed. /sys/kernel
    refuses new files even to root."""
    runs = configs(optimizer="momentum", lr=0.02, epochs=2)
    saves = Checkpoints("/sys/kernel", every=0.0)
    with pytest.warns(InitlabNote, match="cannot save checkpoints in /sys/kernel .permission"):
        results = train_configs(runs, digits, checkpoints=saves)
    assert [r.status for r in results] == ["ok"] * 3


def test_a_disk_that_fills_while_torch_writes_is_a_note_too(tmp_path, digits, monkeypatch):
    """torch.save reports a full disk mid-file as RuntimeError ('[enforce fail at
    inline_container.cc:672] . unexpected pos'): every run of the stack failed, and the
    retry failed again until space was freed."""
    import initlab.checkpoints as checkpoints

    class FullDisk:
        @staticmethod
        def save(state, file):
            file.write(b"part of it")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")

    monkeypatch.setattr(checkpoints, "_torch", lambda: FullDisk)
    runs = configs(optimizer="momentum", lr=0.02, epochs=2)
    saves = Checkpoints(str(tmp_path / "checkpoints"), every=0.0)
    with pytest.warns(InitlabNote, match=r"cannot save checkpoints in .*\(the write failed"):
        results = train_configs(runs, digits, checkpoints=saves)
    assert [r.status for r in results] == ["ok"] * 3
    assert not list((tmp_path / "checkpoints").glob("*"))  # no partial file left


def test_no_checkpoint_is_saved_before_the_interval_has_passed(tmp_path, digits):
    saves = Checkpoints(str(tmp_path), every=3600.0)
    train_configs(configs(epochs=2), digits, checkpoints=saves)
    assert os.listdir(tmp_path) == []


def test_the_checkpoint_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("INITLAB_CHECKPOINT_SECONDS", raising=False)
    assert checkpoint_seconds() == 60.0
    monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", "0")
    assert checkpoint_seconds() == 0.0
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("INITLAB_CHECKPOINT_SECONDS", bad)
        with pytest.raises(InitlabError, match="a number >= 0"):
            checkpoint_seconds()


def test_the_checkpoint_folder_is_beside_the_store_file(tmp_path):
    assert checkpoint_dir(tmp_path / "initlab.db") == tmp_path / "initlab.db-checkpoints"


def test_tidying_spares_a_fresh_temporary_file_whose_writer_may_be_on_another_machine(tmp_path):
    saves = Checkpoints(str(tmp_path / "ck"))
    saves.save("0123456789abcdef", {"version": 1})
    dead = 2**22 + 7  # above Linux's default pid_max: no process here has it
    writing = tmp_path / "ck" / f".fedcba9876543210.{dead}-0123abcd.tmp.pt"
    writing.write_bytes(b"half")
    assert saves.tidy(done={"0123456789abcdef"}) == []  # no checkpoint left: a file written
    assert os.listdir(tmp_path / "ck") == [writing.name]
    old = writing.stat().st_mtime - 2 * 3600
    os.utime(writing, (old, old))
    saves.tidy()
    assert not (tmp_path / "ck").exists()


def test_a_slow_save_spaces_the_next_ones_so_saving_stays_a_small_share(
    tmp_path, digits, monkeypatch
):
    saved, real = [], Checkpoints.save

    def slow(self, key, state):  # a disk that takes 0.1 s per file
        time.sleep(0.1)
        saved.append(state["epoch"])
        real(self, key, state)

    monkeypatch.setattr(Checkpoints, "save", slow)
    runs = configs(epochs=4)  # three models: 0.3 s a save, so the next waits >= 6 s
    train_configs(runs, digits, checkpoints=Checkpoints(str(tmp_path), every=1e-6))
    assert saved == [1, 1, 1]  # epochs 2 and 3 train in far less than 6 s


def edit_saved(saves: Checkpoints, key: str, **changes) -> None:
    saved = torch.load(saves.path(key), weights_only=True)
    saved.update(changes)
    torch.save(saved, saves.path(key))


def test_a_checkpoint_saved_on_another_kind_of_device_resumes_with_dropout_seeded_anew(
    tmp_path, digits
):
    """The run key leaves the device out (a sweep may move to a GPU), and the CUDA RNG's
    state has another layout than the CPU's: setting it failed every resumed run."""
    runs = configs(optimizer="adam", lr=0.003, dropout=0.2, epochs=3)
    saves = interrupted(runs, digits, tmp_path, epoch=2)
    for config in runs:
        edit_saved(saves, config.key(), dropout_device="cuda", dropout_rng=torch.zeros(16))
    log: list = []
    resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    assert [r.status for r in resumed] == ["ok"] * 3
    assert sorted(e for _, e in log) == [2, 2, 2, 3, 3, 3]


def test_a_run_with_dropout_resumed_in_another_stack_continues_its_own_masks(tmp_path, digits):
    runs = configs(optimizer="adam", lr=0.003, dropout=0.2, epochs=3)
    whole = train_configs(runs, digits)
    saves = interrupted(runs, digits, tmp_path, epoch=3)
    resumed = train_configs(runs[1:], digits, checkpoints=saves)  # 2 of the 3, another first
    for a, b in zip(resumed, whole[1:], strict=True):
        assert_same_run(a, b, digits)


def test_each_resumed_run_keeps_its_own_time_from_before(tmp_path, digits):
    runs = configs(optimizer="momentum", lr=0.02, epochs=3)
    saves = interrupted(runs, digits, tmp_path, epoch=2)
    saved = torch.load(saves.path(runs[0].key()), weights_only=True)
    edit_saved(saves, runs[0].key(), result={**saved["result"], "seconds": 100.0})
    resumed = train_configs(runs, digits, checkpoints=saves)
    assert 100.0 < resumed[0].train_seconds < 150.0
    assert resumed[1].train_seconds < 50.0 and resumed[2].train_seconds < 50.0


class Tagged(torch.nn.Module):
    """A model whose extra state is an object a safe load refuses (a numpy scalar)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def get_extra_state(self):
        import numpy as np

        return {"version": np.int64(3)}

    def set_extra_state(self, state) -> None:
        self.version = int(state["version"])


def tagged() -> torch.nn.Module:
    return Tagged()


def test_a_model_with_extra_state_resumes(tmp_path, digits):
    runs = configs(model=f"{__file__}:tagged", optimizer="momentum", lr=0.02, batch_norm=False)
    saves = interrupted(runs, digits, tmp_path, epoch=3)
    log: list = []
    resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    assert sorted({e for _, e in log}) == [3, 4]
    for a, b in zip(resumed, train_configs(runs, digits), strict=True):
        assert_same_run(a, b, digits)


def test_checkpoints_that_do_not_fit_the_stack_are_a_note_and_the_runs_start_over(tmp_path, digits):
    runs = configs(optimizer="momentum", lr=0.02, epochs=3)
    saves = interrupted(runs, digits, tmp_path, epoch=2)
    edit_saved(saves, runs[0].key(), parameters=["something.else"])
    log: list = []
    with pytest.warns(InitlabNote, match="checkpoints of 3 run.s. do not fit .*start over"):
        resumed = train_configs(runs, digits, checkpoints=saves, on_epoch=heard(log))
    assert sorted(e for _, e in log) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [r.status for r in resumed] == ["ok"] * 3


def test_a_resumed_stack_runs_its_models_the_way_it_did_before(tmp_path, digits):
    """The strategy trial times the stack again on resume and may choose another way to
    run it (other float rounding from then on): the saved way is kept instead."""
    runs = configs(optimizer="momentum", lr=0.02, epochs=3)
    saves = interrupted(runs, digits, tmp_path, epoch=2)
    for config in runs:
        edit_saved(saves, config.key(), strategy="looped")
    resumed = train_configs(runs, digits, checkpoints=saves)
    assert [r.strategy for r in resumed] == ["looped"] * 3
    for a, b in zip(resumed, train_configs(runs, digits), strict=True):
        assert_same_run(a, b, digits)


def test_a_saved_way_that_no_longer_checks_out_falls_back_to_looped(tmp_path, digits, monkeypatch):
    """The saved strategy was forced: a stacked forward that no longer matched the models'
    own outputs failed the whole stack, on every retry (failed runs keep checkpoints)."""
    from initlab.train import trial

    runs = configs(optimizer="momentum", lr=0.02, epochs=3)
    saves = interrupted(runs, digits, tmp_path, epoch=2)
    for config in runs:
        edit_saved(saves, config.key(), strategy="stacked")
    trial._CHOSEN.clear()
    monkeypatch.setattr(trial, "output_mismatch", lambda got, want: "a planted mismatch")
    with pytest.warns(InitlabNote, match="a planted mismatch"):
        resumed = train_configs(runs, digits, checkpoints=saves)
    assert [(r.status, r.strategy) for r in resumed] == [("ok", "looped")] * 3
    trial._CHOSEN.clear()
