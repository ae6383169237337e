"""``initlab diagnose``: tables, findings, files, user model factories, clear errors."""

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from argv import merged
from initlab.cli import main

TINY = ["--dataset", "digits", "--depth", "2", "--width", "16", "--batch", "64"]


def test_diagnose_prints_the_table_and_findings(capsys):
    assert main(["diagnose", *TINY, "--init", "zeros", "--activation", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.linear" in out and "symmetry" in out and "suggestion" in out


def test_the_command_reads_logits_as_the_python_api_does(capsys):
    # the command passes the task's cross-entropy as the loss, which hid large_logits
    args = ["--init", "random_normal(stddev=0.5)", "--output-init", "same"]
    assert main(["diagnose", *TINY, *args]) == 0
    assert "large_logits" in capsys.readouterr().out


def test_out_writes_csv_json_and_figures(tmp_path, capsys):
    args = ["diagnose", *TINY, "--init", "he_normal,zeros", "--out", str(tmp_path)]
    assert main(args) == 0
    layers = pd.read_csv(tmp_path / "layers.csv")
    assert set(layers["init"]) == {"he_normal", "zeros"}
    assert {"layer", "post_std", "pre_grad_std", "q_pred"} <= set(layers.columns)
    document = json.loads((tmp_path / "findings.json").read_text())
    assert set(document) == {"findings", "details"}
    assert {f["init"] for f in document["findings"]} == {"zeros"}
    assert "symmetry" in {f["name"] for f in document["findings"]}
    assert [d["init"] for d in document["details"]] == ["he_normal", "zeros"]
    assert document["details"][0]["healthy"] is True
    for name in ("profiles.png", "histograms_he_normal.png", "histograms_zeros.png"):
        assert (tmp_path / name).stat().st_size > 5_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--activation", "rleu"], "did you mean 'relu'"),
        (["--init", "he_norml"], "did you mean 'he_normal'"),
        (["--dataset", "fashon-mnist"], "did you mean 'fashion-mnist'"),
        (["--batch", "0"], "--batch"),
        (["--model", "no_colon_here"], "module:function"),
        (["--model", "initlab_no_such_module_xyz:build"], "cannot import module"),
        # an OverflowError traceback, a C++ one, and a hang of 10**8 layers
        (["--depth", "99999999999999999999"], "--depth must be at most 10,000 hidden layers"),
        (["--width", "99999999999999999999"], "weights, more than 1e+09 (4 GB)"),
        (["--depth", "100000000"], "--depth must be at most 10,000"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args, message, capsys):
    assert main(merged(["diagnose", *TINY], args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_the_labs_uneven_mlp_is_diagnosed_with_hidden(capsys):
    """The lab's 784-300-100-10 net could not be diagnosed (--depth/--width are uniform),
    and --model-arg hidden=300,100 was silently ignored for a 5×256 net."""
    base = ["diagnose", "--dataset", "digits", "--batch", "32"]
    assert main([*base, "--hidden", "30,10"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.linear" in out and "blocks.2.linear" not in out
    assert main([*base, "--model-arg", "hidden=30,10"]) == 2
    assert "--model-arg is for a model factory" in capsys.readouterr().err
    assert main([*base, "--hidden", "30,10", "--width", "8"]) == 2
    assert "leave out --width" in capsys.readouterr().err
    from initlab.cli.diagnose_cmd import _hidden_widths

    assert _hidden_widths(None, None, 2, 8) == (8, 8)  # without --hidden: no ctx needed


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module in the current directory with a good factory and two bad ones."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(),\n"
        "                         nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))\n"
        "def not_a_model():\n"
        "    return 42\n"
        "def needs_args(width):\n"
        "    return nn.Linear(64, width)\n"
    )
    monkeypatch.chdir(tmp_path)
    return name


def test_model_factory_from_a_user_module(user_module, tmp_path, capsys):
    args = ["diagnose", "--dataset", "digits", "--batch", "32", "--model", f"{user_module}:build"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{user_module}:build" in out and "tanh" in out
    layers = pd.read_csv(tmp_path / "out" / "layers.csv", dtype={"layer": str})
    assert list(layers["layer"]) == ["1", "3", "5"]
    assert main([*args, "--init", "zeros"]) == 0
    assert "symmetry" in capsys.readouterr().out


FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not FASHION.exists(), reason="the default data, fashion-mnist, is absent")
@pytest.mark.parametrize("command", ["diagnose", "doctor"])
def test_a_factory_without_data_says_which_data_it_fell_back_to(user_module, command, capsys):
    """A factory for 8×8 digits, run without --data: the shape error did not say that the
    command had fallen back to fashion-mnist (28×28), nor to pass --data."""
    assert main([command, "--model", f"{user_module}:build", "--batch", "32"]) == 2
    err = capsys.readouterr().err
    assert "the model cannot run on the data: data examples have shape [1, 28, 28]" in err
    assert f"(no data given: {command} ran the model on fashion-mnist, its default; pass " in err
    assert "--data with your model's inputs" in err and len(err.strip().splitlines()) == 1
    assert main([command, "--model", f"{user_module}:biuld"]) == 2  # the factory, not the data
    assert "no data given" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("biuld", "did you mean 'build'"),
        ("not_a_model", "not a torch.nn.Module"),
        ("needs_args", "'width'"),
    ],
)
def test_bad_model_factories_exit_2(user_module, function, message, capsys):
    args = ["diagnose", "--dataset", "digits", "--model", f"{user_module}:{function}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_recurrent_layer_has_its_own_table(monkeypatch, capsys):
    """The docs' LSTM classifier: its head is a row of the layer table, the LSTM a row of the
    recurrent one (it was named below the table, unmeasured), and the head's unknown
    activation shows as a dash."""
    monkeypatch.chdir(Path(__file__).parents[1])
    args = ["diagnose", "--model", "examples/my_models.py:lstm_classifier", "--batch", "64"]
    assert main([*args, "--data", "examples/my_data.py:first_token"]) == 0
    out = capsys.readouterr().out
    assert "recurrent layers" in out and "│ lstm " in out and "not measured" not in out
    assert "None" not in out


def test_diagnose_runs_on_fewer_examples_than_a_training_batch(tmp_path, capsys, monkeypatch):
    """Five examples were refused with 'fewer than one batch of 32; use a smaller
    batch_size': diagnose trains nothing and has no --batch-size."""
    import numpy as np

    from initlab.cli import main

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 8)).astype(np.float32), np.arange(10) % 2
    np.savez("small.npz", x_train=x[:5], y_train=y[:5], x_test=x[5:], y_test=y[5:])
    assert main(["diagnose", "--data", "small.npz", "--depth", "2", "--width", "8"]) == 0
    capsys.readouterr()
    args = ["doctor", "--data", "small.npz", "--depth", "2", "--trials", "2", "--out", "o"]
    assert main(args) == 2  # the trials do train: there the batch rule holds
    assert "fewer than one batch of 32" in capsys.readouterr().err


def test_an_empty_init_is_refused_as_compare_refuses_it(capsys):
    from initlab.cli import main

    assert main(["diagnose", "--init", ""]) == 2
    assert "--init is empty" in capsys.readouterr().err


def test_a_label_is_printed_as_it_is_not_as_markup_or_emoji(tmp_path, monkeypatch, capsys):
    """'exp[v2]/net.py' printed as 'exp/net.py' (Rich read [v2] as a style tag) and a
    function named fire as an emoji: the label is the user's path, printed literally."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "exp[v2]"
    folder.mkdir()
    (folder / "net.py").write_text(
        "from torch import nn\n\ndef fire():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))\n"
    )
    assert main(["diagnose", "--model", "exp[v2]/net.py:fire", "--data", "digits"]) == 0
    out = capsys.readouterr().out
    assert "exp[v2]/net.py:fire: per-layer statistics" in out
    assert "\N{FIRE}" not in out


def test_a_probe_batch_too_large_for_memory_is_told_to_shrink(monkeypatch, capsys):
    """224×224 images at the default --batch 512 ran out of memory: one clean line, which
    did not say that --batch is the knob."""
    import initlab.probe

    def short_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB")

    monkeypatch.setattr(initlab.probe, "diagnose", short_of_memory)
    assert main(["diagnose", "--data", "digits", "--width", "16", "--batch", "64"]) == 2
    err = capsys.readouterr().err
    assert "you tried to allocate 9 GB; give a smaller probe batch, e.g. --batch 8" in err


def test_no_hidden_layer_says_the_init_sets_nothing_but_the_output_init(capsys):
    """``--init he_normal --depth 0`` said 'he_normal: healthy' of a model no he_normal set."""
    from initlab.cli import main

    args = ["diagnose", "--init", "he_normal", "--depth", "0", "--data", "digits"]
    assert main(args) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "no hidden layer: he_normal set no layer here; the output layer takes --output" in said
    assert main([*args, "--output-init", "same"]) == 0  # the output layer is he_normal's
    assert "no hidden layer" not in capsys.readouterr().err
