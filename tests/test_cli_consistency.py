"""The commands agree on how they read their shared options (found on a user journey)."""

import pytest

from initlab.cli import main
from initlab.cli.parsing import parse_model_args
from initlab.errors import InitlabError


@pytest.mark.parametrize("command", ["diagnose", "doctor", "plan", "compare", "scaling"])
def test_a_model_argument_given_twice_is_refused_not_overwritten(command, tmp_path, capsys):
    """``--model-arg width=64 --model-arg width=32``: the last value won, silently."""
    (tmp_path / "f.py").write_text("from torch import nn\n\ndef build(width=8):\n    ...\n")
    argv = [command, "--model", f"{tmp_path / 'f.py'}:build"]
    assert main([*argv, "--model-arg", "width=64", "--model-arg", "width=32"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: --model-arg width is given twice (width=64, width=32): give each model "
        "argument once"
    )


def test_parse_model_args_refuses_a_repeated_key_even_with_the_same_value():
    assert parse_model_args(["width=64", "depth=2"]) == {"width": 64, "depth": 2}
    with pytest.raises(InitlabError, match=r"--model-arg width is given twice"):
        parse_model_args(["width=64", "depth=2", "width = 64"])


@pytest.mark.parametrize(
    ("command", "typed", "said"),
    [
        ("diagnose", ["--width", "3", "--batch-norm"], "--width 3, --batch-norm: the model "),
        ("diagnose", ["--activation", "tanh"], "--activation tanh: the model "),
        ("doctor", ["--depth", "3"], "--depth 3: the model "),
    ],
)
def test_the_mlp_options_are_refused_with_a_factory_as_compare_refuses_hidden(
    command, typed, said, tmp_path, capsys
):
    """``diagnose --model f.py:build --width 3 --depth 9``: the output was identical to the
    run without them, though the factory has a width argument of its own."""
    (tmp_path / "f.py").write_text("from torch import nn\n\ndef build(width=8):\n    ...\n")
    model = f"{tmp_path / 'f.py'}:build"
    assert main([command, "--model", model, "--data", "digits", *typed]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {said}{model} does not use ") and "--model-arg" in err
    assert err.count("\n") == 0


def test_study_checks_the_device_before_its_banner_and_suggests_list(tmp_path, capsys):
    """``study lab --device cuda`` printed the study's title and claim, then the error
    (cuda:99: a device no machine here has, with or without CUDA)."""
    assert main(["study", "lab", "--scale", "tiny", "--device", "cuda:99",
                 "--out", str(tmp_path / "s")]) == 2  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: --device cuda:99")
    assert not (tmp_path / "s").exists()
    assert main(["study", "lsit"]) == 2
    assert "unknown study 'lsit'; did you mean 'list'?" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")  # --out a file: the one line, without the banner
    assert main(["study", "lab", "--scale", "tiny", "--out", str(tmp_path / "afile")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "a file is there; --out takes a directory" in captured.err


@pytest.mark.parametrize("command", ["compare", "diagnose"])
def test_an_unknown_bias_names_the_bias_policies_not_the_initializer_registry(command, capsys):
    assert main([command, "--bias", "zerso"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown bias 'zerso'; did you mean 'zeros'? (valid: zeros, ")
