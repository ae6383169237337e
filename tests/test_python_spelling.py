"""Messages name options as the user's surface spells them (:func:`initlab.errors.option`):
keywords from Python (``model_args``, ``workers``, ``device='cpu'``), flags from the command
line (``--model-arg``, ``--workers``, ``--device cpu``). A Python caller was told
``pass each as --model-arg NAME=VALUE`` and ``--workers must be at least 1``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import initlab
from initlab.cli import main
from initlab.errors import InitlabError, keyword, option, surface
from initlab.sweep.spec import parse_spec
from initlab.train.device import resolve_device

HERE = Path(__file__)
FLAG = re.compile(r"(?<![\w-])--[a-z]")
FAST = dict(data="digits", limit_train=64, epochs=1)
CLI_FAST = ["--data", "digits", "--epochs", "1", "--seeds", "1", "--workers", "1"]


def build(width: int = 8) -> nn.Module:
    """A factory of digits (8×8 images, 10 classes) models."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def two_tensors():
    """A data function returning ``(x, y)``: not the four arrays, not two Datasets."""
    return torch.randn(20, 8), torch.randint(0, 2, (20,))


def python_error(call, *keywords: str) -> str:
    """The one-line message ``call()`` raises: it names ``keywords`` and no ``--`` flag."""
    with pytest.raises(InitlabError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    assert not FLAG.search(message), message
    for word in keywords:
        assert word in message, message
    return message


def cli_error(args: list[str], capsys, *flags: str) -> str:
    """``initlab ARGS``' one ``error:`` line (status 2), naming ``flags``."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for flag in flags:
        assert flag in err, err
    return err


def test_option_spells_a_flag_as_a_keyword_outside_the_command_line():
    assert option("--gpus-per-trial") == "gpus_per_trial"
    assert option("--device cpu") == "device='cpu'"
    assert option("--seeds 3") == "seeds=3"
    assert (
        option("--model-arg NAME=VALUE", "model_args={NAME: VALUE}") == "model_args={NAME: VALUE}"
    )
    assert keyword("model") == "model"
    with surface("cli"):
        assert option("--device cpu") == "--device cpu"
        assert option("--model-arg NAME=VALUE", "model_args") == "--model-arg NAME=VALUE"
    assert option("--workers") == "workers"  # the surface is reset after the block


def test_a_misspelled_model_arg(capsys):
    spec = f"{HERE}:build"
    python_error(
        lambda: initlab.compare(["default"], 1, model=spec, model_args={"widht": 8}, **FAST),
        "model_args={NAME: VALUE}",
        "did you mean 'width'",
    )
    args = ["compare", "--model", spec, "--model-arg", "widht=8", *CLI_FAST]
    cli_error(args, capsys, "--model-arg NAME=VALUE", f"the model factory {spec} cannot")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys):
    python_error(lambda: resolve_device("cuda"), "device='cuda'", "use device='cpu'")
    python_error(lambda: initlab.compare(["default"], 1, device="cuda", **FAST), "device='cpu'")
    err = cli_error(["compare", *CLI_FAST, "--device", "cuda"], capsys, "use --device cpu")
    assert "in Python" not in err


def test_workers_and_ray_options(capsys):
    python_error(lambda: initlab.compare(["default"], 1, workers=0, **FAST), "workers must")
    python_error(
        lambda: initlab.compare(["default"], 1, gpus_per_trial=1, **FAST),
        "gpus_per_trial is for the Ray backend: add backend='ray'",
    )
    base = ["compare", "--data", "digits", "--epochs", "1", "--seeds", "1"]
    cli_error([*base, "--workers", "0"], capsys, "--workers must")
    cli_error([*base, "--address", "x:1"], capsys, "--address is for the Ray backend")


def test_option_mistakes_come_before_the_notebook_factory_refusal():
    """With a factory defined in this process, workers=0 and backend='rey' were told to use
    workers=1 and backend='local' (the refusal of worker processes), not of their typo."""
    fast = dict(model=build, **FAST)
    python_error(lambda: initlab.compare(["default"], 1, workers=0, **fast), "workers must")
    python_error(lambda: initlab.compare(["default"], 1, backend="rey", **fast), "'ray'")


def test_a_missing_data_file(capsys):
    python_error(lambda: initlab.compare(["default"], 1, data="nope.npz"), "data: no such file")
    args = ["compare", "--data", "nope.npz", "--epochs", "1", "--seeds", "1"]
    cli_error(args, capsys, "--data: no such file 'nope.npz'")


def test_a_data_function_returning_x_and_y():
    message = python_error(
        lambda: initlab.compare(["default"], 1, data=two_tensors, epochs=1),
        "returned 2 tensors",
        "(x_train, y_train, x_test, y_test)",
        "two Datasets (train, test)",
    )
    assert "not (x, y) pairs" not in message


def test_too_few_widths_for_a_coordinate_check(capsys, tmp_path):
    python_error(
        lambda: initlab.scaling.coord_check(widths=[4, 8], seeds=1),
        "widths needs at least 3 widths",
        "or use seeds=2",
    )
    args = ["scaling", "--widths", "4,8", "--seeds", "1", "--steps", "1", "--out", str(tmp_path)]
    cli_error(args, capsys, "--widths needs at least 3 widths", "--seeds 2")


def test_the_trials_budget(capsys, tmp_path):
    python_error(
        lambda: initlab.trials("mlp", "digits", budget="2 minutes"), "budget takes a positive time"
    )
    args = ["doctor", "--data", "digits", "--trials", "3", "--budget", "2 minutes"]
    args += ["--out", str(tmp_path / "evidence")]
    cli_error(args, capsys, "--budget takes a positive time")


def test_a_built_model_where_a_factory_goes():
    built = build()
    python_error(
        lambda: initlab.parametrize(built, "mup", base_width=4),
        "takes a factory, not a built Sequential",
    )
    python_error(
        lambda: initlab.scaling.coord_check(model=built, widths=[4, 8, 16]),
        "model= takes a factory, not a built Sequential",
    )


def test_a_callable_in_a_spec_dict():
    message = python_error(
        lambda: parse_spec({"fixed": {"model": build}, "sweep": {"init": ["default"]}}),
        "[fixed] model: a spec's model is a name",
        "'module:function' or 'file.py:function'",
        "initlab.compare(model=build)",
    )
    assert "<function" not in message and "0x" not in message


def test_a_registered_factory_is_named_by_its_own_name():
    def factory(hidden: int = 8) -> nn.Module:  # defined here: registered, not importable
        return build()

    message = python_error(
        lambda: initlab.compare(["default"], 1, model=factory, hidden=[5, 5], **FAST),
        "the model factory (defined in this Python session) does not use it",
        "model_args={NAME: VALUE}",
    )
    assert "callable:" not in message
