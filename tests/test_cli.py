import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

from initlab.cli import main

TINY = ["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--seeds", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inits", "he_norml"], "did you mean 'he_normal'"),
        (["--activation", "rleu"], "did you mean 'relu'"),
        (["--optimizer", "adm"], "did you mean 'adam'"),
        (["--dataset", "fashon-mnist"], "did you mean 'fashion-mnist'"),
        (["--epochs", "-1"], "epochs"),
        (["--batch-size", "0"], "--batch-size must be"),
        (["--lr", "0"], "lr must be"),
        (["--seeds", "0"], "seeds"),
        (["--hidden", "300,abc"], "hidden widths"),
        (["--hidden", "8,,8"], "'8,,8' has an empty one"),  # trained 8-8 before
        # beyond 2^63 - 1: an OverflowError traceback, or a store write after training
        (["--epochs", "99999999999999999999"], "epochs must be at most 2^63 - 1"),
        (["--seeds", "99999999999999999999"], "--seeds must be a count in"),
        (["--seeds", "0,99999999999999999999"], "seed 99999999999999999999 is above 2^63"),
        (["--hidden", "99999999999"], "no machine can train it; check the widths"),  # not labels
        # accepted, then every run failed (float32) or the store write raised (SQLite)
        (["--lr", "1e308"], "lr must be a finite number in (0, 1e+38], got 1e+308"),
        (["--bias", "1e308"], "bias must be a finite number within ±1e+38 (float32)"),
        (["--track", "99999999999999999999"], "a step count in [1, 2^63 - 1]"),
        # "need at least one seed"; trained with he_normal and glorot_uniform silently;
        # "did you mean 'mlp'?"; a RuntimeError traceback at every run's first draw
        (["--seeds", "5-3"], "--seeds 5-3 is an empty range: write it low-high"),
        (["--inits", "he_normal,,glorot_uniform"], "has an empty item between commas"),
        (["--model", "m.py"], "--model m.py names a file, not the function in it to call"),
        (["--dataset", "d.py"], "--data d.py names a file, not the function in it to call"),
        (["--inits", "constant(value=1e308)"], "value must be within ±1e+38"),
        (["--residual-init", "none,none"], "--residual-init names none twice"),  # deduped
    ],
)
def test_bad_input_is_one_clear_line_and_exit_status_2(args, message, capsys):
    base = [a for a in TINY]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    assert main(["compare", *base]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("error: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--epochs", "abc"], "Invalid value for '--epochs'"),
        (["compre"], "No such command 'compre'. Did you mean 'compare'?"),
        (["compare", "--foo", "1"], "No such option: --foo"),
        (["report", "out"], "Missing option '--out'"),
        (["list", "datasets", "extra"], "unexpected extra argument"),
        # an unset $OUT: Click reads "" as ".", and the results went into the cwd
        (["sweep", "spec.toml", "--out", ""], "--out is empty (an unset variable?)"),
        (["compare", "--out="], "--out is empty"),
        (["compare", "--out", " "], "--out is empty"),  # trained first, then refused "save"
        (["compare", "--out"], "requires an argument. (initlab compare --help)"),  # not initlab
        (["doctor", "--save", "", "--data", "digits"], "--save is empty"),
    ],
)
def test_usage_mistakes_are_one_line_too(args, message, capsys):
    """Click's own errors were a boxed usage message of five lines."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert f"(initlab {args[0]} --help)" in err or "(initlab --help)" in err or "empty" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["compare", "--epochs", "1", "--seeds", "1", "--epochs=5"],
            "--epochs is given twice ('1', '5')",
        ),
        (["compare", "--batch-norm", "--no-batch-norm"], "(--batch-norm, --no-batch-norm)"),
        (["store", "check", "s", "--group-by", "a", "--group-by", "b"], None),  # no such option
        (["theory", "--sigma-b2", "1", "--sigma-b2", "2"], "--sigma-b2 is given twice"),
        (["--no-mkl-dispatch", "theory", "--sigma-b2", "1", "--sigma-b2", "2"], "given twice"),
    ],
)
def test_an_option_given_twice_is_refused_before_work(args, message, capsys):
    """Click kept the last value silently: an edited command trained what was not read."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert message in err if message else "given twice" not in err


def test_options_that_collect_values_may_repeat(capsys):
    assert main(["compare", "--model-arg", "a=1", "--model-arg", "b=2", "--model", "nomod:f"]) == 2
    err = capsys.readouterr().err
    assert "given twice" not in err and "cannot import module 'nomod'" in err


def test_the_console_script_exits_2_without_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "initlab", "compare", "--inits", "xavier_nromal", *TINY],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "did you mean 'xavier_normal'" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_prints_a_table_and_writes_files(tmp_path, capsys):
    assert main(["compare", *TINY, "--inits", "zeros,lecun_normal", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lecun_normal" in out and "stuck 1/1" in out
    runs = pd.read_csv(tmp_path / "summary.csv")
    assert list(runs["init"]) == ["zeros", "lecun_normal"]
    assert (tmp_path / "curves.png").exists() and (tmp_path / "epochs.csv").exists()


def test_list_shows_every_section(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("he_normal", "kaiming_normal", "tanh", "1.6667", "fashion-mnist", "adamw"):
        assert word in out
    assert re.search(r"│ default +│ pytorch", out)  # a row of its own, not torch_default
    assert main(["list", "gains"]) == 2


def test_list_keeps_every_formula_whole_at_80_columns(capsys, monkeypatch):
    import initlab.cli.list_cmd as list_cmd
    from initlab.console import stdout_console

    monkeypatch.setattr(list_cmd, "out", stdout_console(width=80))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out  # folded onto more lines, never cut
    cells = "".join(line.split("│")[3].strip() for line in out.splitlines() if line.count("│") > 4)
    assert "U(±sqrt(6/(fan_in+fan_out)))" in cells  # glorot_uniform's formula, folded
    assert "E[phi(z)²]" in out  # brackets are text, not Rich markup


def test_version_names_the_blas_kernels(capsys):
    assert main(["--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("initlab ") and lines[1].startswith("torch ")
    assert lines[2].startswith(("BLAS: MKL", "BLAS: no MKL")) and "override:" in lines[2]


def test_initlabs_own_warnings_are_notes_and_torchs_keep_their_source():
    from initlab.console import warning_line
    from initlab.notes import InitlabNote

    assert warning_line("a fallback", InitlabNote, "/any/file.py", 3) == "note: a fallback"
    torch_file = torch.nn.modules.rnn.__file__
    line = warning_line("dropout option adds dropout", UserWarning, torch_file, 9)
    assert line == f"UserWarning: dropout option adds dropout ({torch_file}:9)"


def test_a_command_prints_each_distinct_note_once(capsys):
    """A check before training and the training itself noted the same residual rule twice."""
    from initlab.console import NotePrinter
    from initlab.notes import InitlabNote

    printer = NotePrinter()
    for text in ("rule changes nothing", "rule changes nothing", "another"):
        printer(text, InitlabNote, "/any/file.py", 3)
    assert capsys.readouterr().err.splitlines() == ["note: rule changes nothing", "note: another"]


def test_a_note_from_the_python_api_points_at_the_users_own_line(tmp_path):
    # a notebook user sees where *they* called initlab, not a line inside initlab
    import warnings

    import initlab
    from initlab.models.gpt import gpt
    from initlab.notes import InitlabNote

    model = gpt(vocab_size=16, width=16, depth=1, heads=2, context=8)
    model.head.weight = model.tok_emb.weight  # tied: Fixup keeps it, with a note
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initlab.initialize(model, "he_normal", residual_init="fixup")
        line = sys._getframe().f_lineno - 1
    notes = [w for w in caught if issubclass(w.category, InitlabNote)]
    assert notes and all(w.filename == __file__ and w.lineno == line for w in notes)


def test_a_long_init_name_folds_and_leaves_every_number_readable_at_80_columns():
    import io

    from rich.console import Console

    from initlab.console import print_frame

    name = "plan+orthogonal(gain=1.41)+fixup,bias=zeros,output=glorot_uniform"
    frame = pd.DataFrame(
        {"group": [name, "he_normal"], "acc mean": [0.9123, 0.8765], "acc std": [0.0111, 0.0222]}
        | {"loss": [0.3333, 0.3111], "n": [5, 5], "diverged": [0, 1], "epochs to 90": [3.0, 4.0]}
    )
    out = io.StringIO()
    print_frame(frame, Console(file=out, width=80))
    text = out.getvalue()
    for value in ("0.9123", "0.8765", "0.0111", "0.0222", "0.3333", "0.3111", "epochs"):
        assert value in text
    first_column = "".join(line.split("│")[1].strip() for line in text.splitlines()[3:-1])
    assert name in first_column  # folded over lines, every character kept


def test_study_list_names_studies_as_the_docs_do(capsys):
    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    assert "gpt-init" in out and "lr-transfer" in out and "gpt_init" not in out


def test_an_unknown_study_lists_the_names_as_study_list_does(capsys):
    assert main(["study", "resnet-dept"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'resnet-depth'?" in err and "gpt-init" in err and "gpt_init" not in err


@pytest.mark.parametrize("typed", ["resnet-depth", "resnet_depth"])
def test_a_studys_default_directory_is_named_as_the_list_names_it(typed, tmp_path, monkeypatch):
    """``results/studies/resnet-depth-tiny`` as the README says, not the class's
    ``resnet_depth``, whichever way the name was typed."""
    from initlab.cli import runs
    from initlab.errors import InitlabError

    targets = []

    def stop(spec, configs, out, **options):
        targets.append(out)
        raise InitlabError("stopped before training")

    monkeypatch.setattr(runs, "run_checked", stop)
    monkeypatch.chdir(tmp_path)
    assert main(["study", typed, "--scale", "tiny"]) == 2
    assert [str(t) for t in targets] == ["results/studies/resnet-depth-tiny"]


def test_no_command_prints_the_help_once():
    proc = subprocess.run(
        [sys.executable, "-m", "initlab"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and (proc.stdout + proc.stderr).count("Usage:") == 1


def test_paths_and_names_print_as_written_not_as_markup(tmp_path, capsys, monkeypatch):
    """--out 'br[red]/x' printed 'wrote br/x/...' in red; every console reads no markup."""
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *TINY, "--inits", "zeros", "--out", "br[red]/x :fire:"]) == 0
    out = capsys.readouterr().out
    assert "wrote br[red]/x :fire:/summary.csv" in out
