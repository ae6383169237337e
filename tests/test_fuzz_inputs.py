"""Bad input a fuzzer found: each is one ``error:`` line, exit status 2, before anything
trains, never a traceback."""

from __future__ import annotations

import pathlib

import pytest
import torch

from initlab.cli import main

TINY = ["--dataset", "digits", "--hidden", "8"]


def refused(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """``initlab ARGS``'s error line, asserting exit status 2 and one line, no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def locked(monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A directory ``locked`` this user may not search: ``stat`` of anything under it
    raises ``PermissionError`` (as for another user's 0700 folder; root passes chmod)."""
    real = pathlib.Path.stat

    def stat(self: pathlib.Path, *args, **kwargs):
        if "locked" in self.parts[:-1]:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", stat)
    return pathlib.Path("locked")


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "locked/m.py:build", "--dataset", "digits"],
        ["--data", "locked/d.npz", "--hidden", "8"],
        ["--out", "locked/out", *TINY],
        ["--data-dir", "locked/data", *TINY],
    ],
)
def test_a_path_under_a_directory_that_cannot_be_searched(
    args, locked, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    err = refused(["compare", *args, "--epochs", "1", "--seeds", "1"], capsys)
    assert f"{args[0]} {args[1].split(':')[0]}: permission denied" in err


def test_results_of_a_store_under_a_directory_that_cannot_be_searched(locked, capsys):
    assert "locked/r: permission denied" in refused(["results", "locked/r"], capsys)


@pytest.mark.parametrize(("flag", "name"), [("--model", "m.py:build"), ("--data", "d.npz")])
def test_an_unreadable_model_or_data_file(flag, name, tmp_path, capsys, monkeypatch):
    import builtins

    monkeypatch.chdir(tmp_path)
    file = (tmp_path / name.split(":")[0]).resolve()
    file.write_text("")
    real = builtins.open

    def unreadable(path, *args, **kwargs):
        if isinstance(path, (str, pathlib.Path)) and pathlib.Path(path).resolve() == file:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", unreadable)
    base = ["--dataset", "digits"] if flag == "--model" else ["--hidden", "8"]
    err = refused(["compare", *base, flag, name, "--epochs", "1", "--seeds", "1"], capsys)
    assert f"{flag} {file.name}: permission denied" in err


@pytest.mark.parametrize("spec", ["nets:build", "nets/:build", "nets.py:build"])
def test_a_directory_given_as_the_model_file(spec, tmp_path, capsys, monkeypatch):
    """It said 'no such file' of a directory that is there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / spec.split(":")[0].rstrip("/")).mkdir()
    err = refused(["compare", "--dataset", "digits", "--model", f"./{spec}"], capsys)
    assert "is a directory; expected path/to/file.py:function or module:function" in err


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """``read_only(path)``: ``os.access(path, W_OK)`` is false, as for a ``chmod 444`` file
    of a user other than root."""
    import os

    real, refused = os.access, set()

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and pathlib.Path(path).resolve() in refused:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return lambda path: refused.add(pathlib.Path(path).resolve())


def test_a_read_only_store_in_out_is_refused_before_training(
    tmp_path, read_only, trainings, capsys
):
    """The study's first write into it was an sqlite3.OperationalError traceback."""
    from initlab.store import open_store

    with open_store(tmp_path / "initlab.db", create=True):
        pass
    read_only(tmp_path / "initlab.db")
    err = refused(
        ["compare", *TINY, "--epochs", "1", "--seeds", "1", "--out", str(tmp_path)], capsys
    )
    assert f"results store {tmp_path / 'initlab.db'} is read-only" in err and "--out" in err
    assert trainings == []


def test_a_read_only_summary_csv_in_out_is_refused_before_training(
    tmp_path, read_only, trainings, capsys
):
    """It was found only once every run had trained, when the tables were written."""
    (tmp_path / "summary.csv").write_text("run_id\n")
    read_only(tmp_path / "summary.csv")
    err = refused(
        ["compare", *TINY, "--epochs", "1", "--seeds", "1", "--out", str(tmp_path)], capsys
    )
    assert "summary.csv is read-only" in err and trainings == []


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda x: x.to_sparse(), "sparse (torch.sparse_coo)"),
        (lambda x: x.to_sparse_csr(), "sparse (torch.sparse_csr)"),
        (lambda x: x.to("meta"), "meta"),
        (lambda x: torch.nested.nested_tensor(list(x)), "nested"),
        (lambda x: torch.quantize_per_tensor(x, 0.1, 0, torch.quint8), "quantized (torch.quint8)"),
    ],
)
def test_an_unusual_tensor_in_a_data_file(make, kind, tmp_path, capsys):
    """Sparse, meta, nested and quantized tensors in a .pt file were tracebacks."""
    import warnings

    data = {
        "x_train": torch.zeros(20, 4),
        "y_train": torch.arange(20) % 2,
        "x_test": torch.zeros(5, 4),
        "y_test": torch.arange(5) % 2,
    }
    with warnings.catch_warnings():  # nested and sparse CSR tensors are "prototypes"
        warnings.simplefilter("ignore")
        data["x_train"] = make(data["x_train"])
    torch.save(data, tmp_path / "d.pt")
    err = refused(["compare", "--data", str(tmp_path / "d.pt"), "--hidden", "8"], capsys)
    assert f"x_train is a {kind} tensor; save a dense one" in err


def test_more_gpus_per_trial_than_a_local_ray_cluster_has_touch_no_store(
    tmp_path, capsys, monkeypatch
):
    """Refused only once Ray had started, after the store had recorded the study."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    out = tmp_path / "out"
    args = [*TINY, "--backend", "ray", "--gpus-per-trial", "1", "--out", str(out)]
    err = refused(["compare", *args, "--epochs", "1", "--seeds", "1"], capsys)
    assert "--gpus-per-trial 1 but the Ray cluster has 0 GPUs" in err and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus-per-trial", "1"], "--gpus-per-trial is for the Ray backend: add --backend ray"),
        (["--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
        (["--task", "regression"], "'digits' is a classification task; --task regression needs"),
    ],
)
def test_a_dry_run_refuses_what_the_sweep_refuses(args, message, tmp_path, tiny_spec, capsys):
    spec = tiny_spec(tmp_path / "s.toml", "s", ["he_normal"])
    err = refused(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "o"), *args], capsys)
    assert message in err


@pytest.mark.parametrize(
    ("inits", "twice"),
    [
        ("he_normal,HE_NORMAL", "he_normal"),
        ("he_normal,He-Normal", "he_normal"),
        ("orthogonal(gain=2),ORTHOGONAL(gain=2)", "orthogonal(gain=2)"),
    ],
)
def test_inits_that_differ_only_in_case_or_separator_are_one_init(inits, twice, capsys):
    """They trained as two groups of the same scheme, as an init named twice would have."""
    err = refused(["compare", *TINY, "--inits", inits], capsys)
    assert f"--inits names {twice} more than once" in err


def test_a_scheme_is_stored_as_the_registry_names_it():
    from initlab.sweep.values import check_setting

    assert check_setting("init", "HE-Normal") == "he_normal"
    assert check_setting("init", "Orthogonal(gain=2)") == "orthogonal(gain=2)"
    assert check_setting("init", "orthogonal(gain=2)") == "orthogonal(gain=2)"


def test_a_misspelt_output_init_suggests_same(capsys):
    """'smae' was said to be 'sparse': 'same' was not among the candidates, and difflib
    prefers 'sparse' to a swap of two letters."""
    from initlab.errors import closest_name

    err = refused(["compare", *TINY, "--output-init", "smae"], capsys)
    assert "did you mean 'same'?" in err
    assert closest_name("smae", ["sparse", "same"]) == "same"


def test_model_args_on_the_cnn_suggest_only_what_the_cnn_takes(tmp_path, capsys):
    """It suggested hidden, which is then refused for the cnn."""
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "s"\n[fixed]\nmodel = "cnn"\ndataset = "digits"\nmodel_args = {width = 3}\n'
        '[sweep]\ninit = ["he_normal"]\n'
    )
    err = refused(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "o")], capsys)
    assert "the built-in 'cnn' (it takes activation, batch_norm)" in err
    err = refused(["compare", "--model", "cnn", "--model-arg", "width=3"], capsys)
    assert "the built-in 'cnn' takes activation, batch_norm" in err and "hidden" not in err


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--activation", "re\nlu"], r"unknown activation 're\nlu'"),
        (["--optimizer", "\x1b[31madam"], r"unknown optimizer '\x1b[31madam'"),
    ],
)
def test_a_value_with_control_characters_is_quoted_on_one_line(args, shown, capsys):
    """A newline split the error line; a terminal escape coloured the terminal."""
    err = refused(["compare", *TINY, *args], capsys)
    assert shown in err and "\x1b" not in err


def test_a_plain_value_is_quoted_as_before():
    from initlab.errors import quoted

    assert quoted("he norml") == "'he norml'" and quoted("é") == "'é'"


@pytest.mark.parametrize(
    ("at", "said"),
    [
        (1, "no run finished, so none is saved in "),
        (3, "finished runs are saved in "),
    ],
)
def test_ctrl_c_is_two_lines_that_say_whether_any_run_was_saved(
    at, said, tmp_path, tiny_spec, interrupt_at, capsys
):
    """It printed four or five lines, and 'finished runs are saved' when none had."""
    spec = tiny_spec(tmp_path / "s.toml", "s", ["zeros", "he_normal"], seeds=2)
    interrupt_at(at)
    out = tmp_path / "out"
    args = ["sweep", str(spec), "--out", str(out), "--workers", "1", "--engine", "single"]
    assert main(args) == 130
    err = capsys.readouterr().err
    lines = err[err.index("interrupted: ") :].strip().splitlines()
    assert len(lines) == 2 and said in lines[0] and lines[1].startswith("  ")
    assert at == 3 or "finished runs are saved" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--inits", "orthogonal(gain=nan)"],
            "parameter 'gain' must be a finite number, got 'nan'",
        ),
        (["--inits", "orthogonal(gain=inf)"], "parameter 'gain' must be a finite number"),
        (["--seeds", "0-99999999999"], "--seeds 0-99999999999 spans 100,000,000,000 seeds"),
        (["--inits", ""], "--inits: expected a comma-separated list, got ''"),
        (["--inits", "a,,b"], "--inits: 'a,,b' has an empty item between commas"),
        (["--batch-size", "0"], "error: --batch-size must be an integer >= 1"),
        (["--limit-train", "0"], "error: --limit-train must be an integer >= 1"),
        (["--embedding-init", "lsuv"], "error: --embedding-init 'lsuv' rescales layer outputs"),
    ],
)
def test_a_message_says_what_is_wrong_with_the_option_as_typed(args, message, capsys):
    """gain=nan 'must be a float'; a range of seeds quoted as a count; '' naming no option;
    settings spelled as Python keywords (batch_size) on the command line."""
    err = refused(["compare", *TINY, "--epochs", "1", *args], capsys)
    assert message in err


def test_python_keeps_the_keyword_spelling():
    from initlab.compare import comparison_spec

    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1"):
        comparison_spec(["he_normal"], 1, batch_size=0)


@pytest.mark.parametrize(
    "args",
    [["--lr", "0.1"], ["--batch-size", "8"], ["--optimizer", "adam"], ["--lr", "0.01"]],
)
def test_doctor_refuses_how_the_trials_train_without_trials(args, capsys):
    """--lr without --trials was accepted and ignored (even at its default value)."""
    err = refused(["doctor", "--depth", "2", "--width", "4", *args], capsys)
    assert f"{args[0]}: for the trials; add --trials N" in err


@pytest.mark.parametrize("command", ["results", "report"])
def test_within_the_only_grouping_column_is_refused(command, tmp_path, capsys):
    """--within init --group-by init ranked each init alone: nothing compared."""
    out = tmp_path / "out"
    args = [*TINY, "--inits", "zeros,he_normal", "--epochs", "1", "--seeds", "1"]
    assert main(["compare", *args, "--out", str(out)]) == 0
    capsys.readouterr()
    where = ["--out", str(tmp_path / "report")] if command == "report" else []
    err = refused([command, str(out), *where, "--within", "init", "--group-by", "init"], capsys)
    assert "--within init leaves nothing to compare: --group-by init groups by it too" in err


@pytest.mark.parametrize("flag", ["--output-init", "--embedding-init"])
def test_a_list_for_a_one_scheme_option_says_how_to_compare_several(flag, capsys):
    """It said 'cannot read initializer spec' of the whole list."""
    err = refused(["compare", "--data", "digits", flag, "he_normal,orthogonal(gain=1.4)"], capsys)
    key = flag.removeprefix("--").replace("-", "_")
    assert f'{key} = ["he_normal", "orthogonal(gain=1.4)"]' in err and "initlab sweep" in err
