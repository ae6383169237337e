"""The commands agree on how they read their shared options (found on a user journey)."""

import pytest

from initlab.cli import main
from initlab.cli.options import parse_model_args
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
