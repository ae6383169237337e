"""The older hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm``: refused in one line.

Their ``weight`` is a plain attribute a forward pre-hook recomputes from ``weight_g`` and
``weight_v`` (``weight_orig``): ``initialize`` used to fill it, print a record claiming the
scheme's std, and the next forward recomputed it as before (a silent no-op). The
``parametrizations`` versions were refused already; these now are too, in ``initialize``,
``recommend`` + ``initialize``, residual rules, ``plan`` and ``compare``, whose copy check
no longer blames RNNs a model does not have.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import InitlabError

NORMS = {"weight_norm": "weight_g and weight_v", "spectral_norm": "weight_orig"}


def hooked(kind: str, n_in: int = 8) -> nn.Module:
    """``Sequential(kind(Linear), ReLU, Linear)`` with the old hook-based ``kind``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # weight_norm is deprecated
        first = getattr(nn.utils, kind)(nn.Linear(n_in, 16))
    return nn.Sequential(first, nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("kind", list(NORMS))
def test_initialize_refuses_a_hooked_layer_in_one_line_before_changing_anything(kind):
    """The bug: the record said std 0.0 while the layer's output kept its std. diagnose,
    which sets nothing, works on such a layer."""
    torch.manual_seed(0)
    model = hooked(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitlabError) as info:
        initlab.initialize(model, "zeros", output_init="zeros")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"0: weight is recomputed from {NORMS[kind]}")
    assert f"torch.nn.utils.{kind} hook" in message
    assert f"initialize the layer before applying {kind}, or use the init 'default'" in message
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored copies: exact
    initlab.initialize(model, "default")  # as built: nothing to refuse
    frame = initlab.diagnose(model, torch.randn(32, 8), torch.randint(0, 3, (32,))).layers
    assert list(frame["layer"]) == ["0", "2"]  # diagnose sets nothing: the hook's weight is
    assert frame[["weight_std", "weight_grad_norm"]].notna().all().all()  # read, as computed


@pytest.mark.parametrize("kind", list(NORMS))
def test_a_plan_keeps_a_computed_layer_and_a_residual_rule_is_refused(kind):
    """``recommend`` named a scheme for the hooked layer, which applying it refused (it was
    a silent no-op before): the plan keeps that layer as built, saying why. A residual rule
    zeroing or scaling a hooked branch layer was a no-op as well, and is refused."""
    torch.manual_seed(0)
    model, x = hooked(kind), torch.randn(32, 8)
    plan = initlab.recommend(model, x)
    assert plan["0"] == "default" and plan["2"] == "glorot_uniform"
    assert f"computed by a torch.nn.utils.{kind} hook" in plan.entries[0].reason
    initlab.initialize(model, plan)  # the output layer set, the wrapped one kept
    parametrized = nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Linear(8, 16)), nn.ReLU(), nn.Linear(16, 3)
    )
    assert initlab.recommend(parametrized, x)["0"] == "default"

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = hooked(kind, n_in=3)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return h + self.body(h)

    blocks = nn.Sequential(nn.Linear(8, 3), Block(), nn.Linear(3, 2))
    with pytest.raises(InitlabError, match=r"^1\.body\.0: .*or use residual 'none'$"):
        initlab.initialize(blocks, "default", residual_init="fixup")


def test_plan_of_an_uncopyable_model_says_which_layer_and_what_to_do():
    """``plan`` works on a copy; deepcopy refuses a hook-based weight_norm's computed weight
    (a RuntimeError from deep inside torch before)."""
    with pytest.raises(InitlabError) as info:
        initlab.plan(hooked("weight_norm"), "default")
    message = str(info.value)
    assert message.startswith("the model cannot be copied (RuntimeError: Only Tensors")
    assert "layer 0 (Linear) uses the hook-based torch.nn.utils.weight_norm" in message
    assert message.endswith("use torch.nn.utils.parametrizations.weight_norm instead")


MODELS = """
import warnings
from torch import nn

warnings.simplefilter("ignore", FutureWarning)


def weight_norm():
    return nn.Sequential(
        nn.Flatten(), nn.utils.weight_norm(nn.Linear(64, 16)), nn.ReLU(), nn.Linear(16, 10)
    )


def spectral_norm():
    return nn.Sequential(
        nn.Flatten(), nn.utils.spectral_norm(nn.Linear(64, 16)), nn.ReLU(), nn.Linear(16, 10)
    )
"""


@pytest.mark.parametrize("kind", list(NORMS))
def test_compare_refuses_a_hooked_model_naming_the_layer_not_an_rnn(tmp_path, capsys, kind):
    """It said "build it without parametrizations on its RNNs" of a model without RNN."""
    from initlab.cli import main

    (tmp_path / "m.py").write_text(MODELS)
    out = tmp_path / "out"
    argv = ["compare", "--model", f"{tmp_path}/m.py:{kind}", "--data", "digits"]
    argv += ["--epochs", "1", "--seeds", "1", "--limit-train", "200", "--out", str(out)]
    assert main(argv) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "RNN" not in err
    assert "cannot be copied after a forward pass (RuntimeError: Only Tensors" in err
    assert f"layer 1 (Linear) uses the hook-based torch.nn.utils.{kind}" in err
    assert f"use torch.nn.utils.parametrizations.{kind} instead" in err
