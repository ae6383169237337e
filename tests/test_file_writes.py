"""Every file initlab writes is written all or nothing (fault injection): a disk that fills
up half-way through a weights file, an exported table, a report, a plan or an IDX file
leaves the earlier file (or set of files) as it was and no temporary file behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from initlab.atomic_files import write_files

EARLIER = b"the earlier file, whole"


def full_disk(real: Callable, where: int, fails: Callable[[Path], bool] = bool) -> Callable:
    """``real``, a writer whose argument ``where`` is the path, except that for a path
    ``fails`` picks it writes a few bytes and raises ENOSPC, as a full disk does."""

    def write(*args, **kwargs):
        path = Path(args[where])
        if not fails(path):
            return real(*args, **kwargs)
        with open(path, "wb") as half:
            half.write(b"\0" * 10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def only(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_saved_weights_are_written_whole_or_not_at_all(tmp_path, monkeypatch, suffix):
    import safetensors.torch

    from initlab.weights import load_weights, save_weights

    target = tmp_path / f"w{suffix}"
    target.write_bytes(EARLIER)
    monkeypatch.setattr(torch, "save", full_disk(torch.save, 1))
    monkeypatch.setattr(safetensors.torch, "save_file", full_disk(safetensors.torch.save_file, 1))
    with pytest.raises(OSError, match="No space left"):
        save_weights(nn.Linear(3, 2), target)
    assert only(tmp_path) == {target.name: EARLIER}
    monkeypatch.undo()
    model = nn.Linear(3, 2)
    save_weights(model, target)
    copy = load_weights(nn.Linear(3, 2), target)
    assert torch.equal(copy.weight, model.weight)  # a copy of the same bytes: exact
    assert only(tmp_path).keys() == {target.name}
    (tmp_path / "plain").touch()  # as open() makes a file under this umask (0600 was seen)
    assert target.stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_an_export_failing_on_its_third_table_leaves_the_earlier_export_whole(
    tmp_path, monkeypatch
):
    from initlab.errors import InitlabError
    from initlab.store import open_store
    from initlab.store.export import export

    out = tmp_path / "out"
    with open_store(tmp_path / "store", create=True) as store:
        export(store, "csv", out)
        earlier = only(out)
        third = full_disk(pd.DataFrame.to_csv, 1, lambda p: "layer_stats" in p.name)
        monkeypatch.setattr(pd.DataFrame, "to_csv", third)
        with pytest.raises(InitlabError, match=r"layer_stats\.csv: .*no space left"):
            export(store, "csv", out)
    assert only(out) == earlier


def test_a_report_failing_on_its_markdown_leaves_no_new_page(tmp_path, monkeypatch):
    from initlab.report import build_report
    from initlab.results import ResultSet

    accuracy = np.array([0.9, 0.1])
    runs = pd.DataFrame(
        {"run_id": ["a", "b"], "init": ["he_normal", "zeros"], "seed": 0, "status": "ok"}
        | {"test_accuracy": accuracy, "final_train_loss": 1 - accuracy, "epochs_done": 1}
        | {"final_val_accuracy": accuracy, "message": ""}
    )
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_accuracy=accuracy)
    epochs = epochs.assign(val_accuracy=accuracy, train_loss=1 - accuracy, val_loss=1 - accuracy)
    (tmp_path / "report.html").write_bytes(EARLIER)
    markdown = full_disk(Path.write_text, 0, lambda p: p.name.endswith(".md"))
    monkeypatch.setattr(Path, "write_text", markdown)
    with pytest.raises(OSError, match="No space left"):
        build_report(ResultSet(runs, epochs, ["init"]), tmp_path)
    assert only(tmp_path) == {"report.html": EARLIER}


def test_a_plan_that_cannot_be_written_leaves_the_earlier_one(tmp_path, monkeypatch, capsys):
    from initlab.cli import main

    target = tmp_path / "plan.json"
    target.write_bytes(EARLIER)
    monkeypatch.setattr(Path, "write_text", full_disk(Path.write_text, 0))
    args = ["plan", "--model", "initlab.models.gpt:gpt", "--model-arg", "depth=1"]
    assert main([*args, "--out", str(target)]) == 2
    assert "no space left" in capsys.readouterr().err.lower()
    assert only(tmp_path) == {"plan.json": EARLIER}


def test_an_idx_file_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from initlab.data.idx import read_idx, write_idx

    target = tmp_path / "x.idx.gz"
    target.write_bytes(EARLIER)
    monkeypatch.setattr(Path, "write_bytes", full_disk(Path.write_bytes, 0))
    with pytest.raises(OSError, match="No space left"):
        write_idx(target, np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert only(tmp_path) == {target.name: EARLIER}
    monkeypatch.undo()
    written = write_idx(target, np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert read_idx(written).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_a_killed_writers_temporary_file_without_a_suffix_is_removed_too(tmp_path):
    """``plan --out plan`` (no suffix): its temporary name ends in .tmp and was never
    matched as a temporary file, so a kill -9 left it behind for good."""
    dead = 2**22 + 7  # above Linux's default pid_max: no process has it
    stale = tmp_path / f".plan.{dead}-0123abcd.tmp"
    stale.write_text("half a plan")
    write_files(tmp_path, {"plan": lambda p: p.write_text("{}")})
    assert only(tmp_path) == {"plan": b"{}"}


def test_a_replaced_file_keeps_its_link_and_mode_and_a_read_only_one_is_refused(
    tmp_path, monkeypatch
):
    """Renaming a new file over the old one replaced a symbolic link by a file, reset a
    0600 file to the umask's mode and silently replaced a file the user made read-only."""
    from initlab.atomic_files import write_file

    store = tmp_path / "elsewhere"
    store.mkdir()
    real, link = store / "weights.pt", tmp_path / "weights.pt"
    real.write_bytes(EARLIER)
    real.chmod(0o600)
    link.symlink_to(real)
    write_file(link, lambda p: p.write_bytes(b"new"))
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert real.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in store.iterdir()] == ["weights.pt"]  # no temporary left
    real_access = os.access
    monkeypatch.setattr(  # root ignores permission bits: the test says it instead
        os, "access", lambda p, mode, *a, **k: Path(p) != real and real_access(p, mode)
    )
    with pytest.raises(PermissionError) as refused:
        write_file(link, lambda p: p.write_bytes(b"newer"))
    assert refused.value.filename == str(link) and real.read_bytes() == b"new"


def test_a_new_file_gets_the_umasks_mode_whatever_the_writer_made(tmp_path):
    from initlab.atomic_files import write_file

    def private(path: Path) -> None:  # as safetensors.torch.save_file does
        path.write_bytes(b"tensors")
        path.chmod(0o600)

    (tmp_path / "plain").touch()
    made = write_file(tmp_path / "init.safetensors", private)
    assert made.stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_a_network_error_while_downloading_is_not_named_as_the_local_file(tmp_path):
    from initlab.atomic_files import write_files

    def reset(path: Path) -> None:
        raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))

    with pytest.raises(ConnectionResetError) as raised:
        write_files(tmp_path, {"train.gz": reset})
    assert raised.value.filename is None and list(tmp_path.iterdir()) == []


def test_a_plot_path_without_a_suffix_is_written_as_png(tmp_path):
    """matplotlib adds .png to a name without a suffix; the temporary name ended in .tmp and
    savefig refused it ('Format tmp is not supported')."""
    from initlab.curves import plot_curves

    epochs = pd.DataFrame(
        {"init": ["a", "a"], "epoch": [1, 2], "train_loss": [1.0, 0.5]}
        | {"val_accuracy": [0.5, 0.6], "val_loss": [1.0, 0.6], "train_accuracy": [0.5, 0.6]}
    )
    written = plot_curves(epochs, ["init"], tmp_path / "curves")
    assert written == tmp_path / "curves.png" and written.read_bytes()[:4] == b"\x89PNG"


def test_a_killed_writer_that_is_still_a_zombie_counts_as_gone(tmp_path):
    """A container without an init process never reaps a killed sweep's workers: their
    zombies kept every temporary file they had left 'in use' for good."""
    from initlab.pids import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid = child.pid
    try:
        assert pid_alive(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:  # a zombie until reaped below
            time.sleep(0.01)
        assert not pid_alive(pid) and os.path.exists(f"/proc/{pid}")
        stale = tmp_path / f".plan.{pid}-0123abcd.tmp.json"
        stale.write_text("half a plan")
        write_files(tmp_path, {"plan.json": lambda p: p.write_text("{}")})
        assert only(tmp_path) == {"plan.json": b"{}"}
    finally:
        child.kill()
        child.wait()
    assert pid_alive(os.getpid())


def test_a_directory_where_a_later_file_goes_leaves_every_file_as_it_was(tmp_path):
    """report.html a directory: the renames replaced curves.png first and then failed, while
    the error said the directory was as it was (durability journey)."""
    (tmp_path / "curves.png").write_bytes(b"compare's")
    (tmp_path / "report.html").mkdir()
    writers = {
        "curves.png": lambda p: p.write_bytes(b"new"),
        "report.html": lambda p: p.write_text("<html>"),
    }
    with pytest.raises(IsADirectoryError) as caught:
        write_files(tmp_path, writers)
    assert caught.value.filename == str(tmp_path / "report.html")
    assert (tmp_path / "curves.png").read_bytes() == b"compare's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "report.html"]


def test_a_report_beside_compare_s_files_leaves_them_as_compare_wrote_them(tmp_path, capsys):
    """report --out DIR into compare's directory replaced compare's curves.png silently."""
    from initlab.cli import main

    args = ["--dataset", "digits", "--hidden", "8", "--epochs", "1", "--seeds", "2"]
    assert main(["compare", *args, "--inits", "zeros,he_normal", "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert main(["report", str(tmp_path), "--out", str(tmp_path)]) == 0
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    kept = {n for n in before if n != "initlab.db" and not n.startswith("initlab.db-")}
    assert {n for n in kept if after.get(n) != before[n]} == set()
    assert {"report.html", "report.md", "report_curves.png"} <= set(after)


def test_an_export_into_compare_s_directory_is_refused_before_it_replaces_its_tables(
    tmp_path, capsys
):
    """results --export csv --out DIR replaced compare's epochs.csv (init, seed, ... per
    group) with the store's (per run, no init or seed) without a word."""
    from initlab.cli import main

    args = ["--dataset", "digits", "--hidden", "8", "--epochs", "1", "--seeds", "1"]
    assert main(["compare", *args, "--inits", "zeros", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "epochs.csv").read_bytes()
    capsys.readouterr()
    assert main(["results", str(tmp_path), "--export", "csv", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} holds the tables compare wrote (epochs.csv")
    assert f"--out {tmp_path / 'export'}" in err
    assert (tmp_path / "epochs.csv").read_bytes() == before and not (tmp_path / "runs.csv").exists()
    assert main(["results", str(tmp_path), "--export", "csv", "--out", str(tmp_path / "x")]) == 0
