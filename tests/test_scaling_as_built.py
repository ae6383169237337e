"""The init as built (``--param default``), the note when a parametrization rescales the
factory's init, numpy integers, and errors that name the width (docs/scaling.md §1, §4)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from argv import merged
from initlab.cli import main
from initlab.scaling import coord_check
from initlab.scaling.parametrize import parametrized

FACTORIES = """
import torch
from torch import nn


def fixed(width=16):
    '''Every weight N(0, 0.05) whatever the width, zero biases: a width-blind init.'''
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width),
                          nn.ReLU(), nn.Linear(width, 10))
    for p in model.parameters():
        nn.init.normal_(p, 0, 0.05) if p.dim() > 1 else nn.init.zeros_(p)
    return model


class Heads(nn.Module):
    '''Splits width into 8 heads: runs only when 8 divides the width.'''

    def __init__(self, width):
        super().__init__()
        self.embed, self.head = nn.Linear(8, width), nn.Linear(width, 10)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], 8, 8))
        return self.head(h.view(h.shape[0], 8, 8, h.shape[-1] // 8).flatten(2).mean(1))


def heads(width=16):
    return Heads(width)


def seeded(width=16):
    torch.manual_seed(0)  # a reproducibility habit: every seed builds this one model
    return fixed(width)
"""
FAST = ["--steps", "1", "--seeds", "2", "--batch-size", "32"]


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def fixed_std(width: int = 16) -> nn.Module:
    model = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width))
    for p in model.parameters():
        nn.init.normal_(p, 0, 0.05) if p.dim() > 1 else nn.init.zeros_(p)
    return model


def no_bias(width: int = 16) -> nn.Module:
    """PyTorch's own init (weights variance ∝ 1/fan_in), no biases."""
    return nn.Sequential(nn.Linear(8, width, bias=False), nn.Linear(width, 10, bias=False))


def test_default_is_the_model_as_built_at_one_learning_rate():
    built = parametrized(fixed_std, "default", width=128, base_width=16, lr=0.1, seed=4)
    torch.manual_seed(4)
    plain = fixed_std(128)
    for (name, p), q in zip(built.model.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q), name  # untouched: the same seeded draws, no arithmetic
    assert [g["lr"] for g in built.param_groups()] == [0.1]
    assert built.notes == []


def test_a_rescaled_init_is_noted_with_its_count_and_law_and_a_fan_in_init_is_not():
    sp = parametrized(fixed_std, "sp", width=128, base_width=16, seed=0)
    (line,) = [n for n in sp.notes if "rescaled the factory's init" in n]
    assert "of 1 of 4 parameter(s) at width 128" in line  # `2.weight`, the hidden one
    assert "hidden weights: variance ∝ 1/fan_in" in line
    # ×√(16/128) = 0.354 up to the base's sampling noise: rms of 16·16 normals, relative sd
    # 1/√(2·256); 5 sd either side
    factor = float(re.search(r"`2\.weight` ×([0-9.]+)", line).group(1))
    assert factor == pytest.approx(8**-0.5, rel=5 * (2 * 256) ** -0.5)
    assert "param='default' checks the model as built" in line
    # PyTorch's weights already follow the 1/fan_in law: rescaled by sampling noise only
    assert parametrized(no_bias, "sp", width=256, base_width=16, seed=0).notes == []


def test_default_flags_the_width_dependence_of_a_fixed_std_init(factories):
    out = factories / "default"
    args = ["scaling", "--model", "factories.py:fixed", "--widths", "16,32,64,128"]
    assert (
        main(merged([*args, "--param", "default", *FAST], ["--seeds", "6", "--out", str(out)])) == 0
    )
    document = json.loads((out / "verdicts.json").read_text())
    assert document["settings"]["param"] == "default"
    at_init = {v["module"] for v in document["verdicts"] if v["flagged"] and v["step"] == 0}
    assert "(logits)" in at_init
    logits = next(v for v in document["verdicts"] if v["module"] == "(logits)" and not v["step"])
    assert logits["slope"] > 1 and "checked as built" in logits["sentence"]
    # the same under SP: the init is brought to 1/fan_in, flat at step 0, and the note says so
    # (6 seeds: width 16's log-noise is about 3 times width 128's; 2–3 seeds can agree by
    # chance and hide it)
    sp = coord_check(
        "factories.py:fixed", widths=(16, 32, 64, 128), param="sp", seeds=6, steps=1, batch_size=32
    )
    assert not [v for v in sp.flagged() if v.step == 0]
    assert any("rescaled the factory's init of 2 of 6" in n for n in sp.notes)


@pytest.mark.parametrize("param", ["default", "mup"])
def test_a_factory_that_seeds_torch_itself_is_refused_before_anything_is_measured(
    factories, capsys, param
):
    """Every seed built the same weights, so the seed-to-seed spread was minibatch noise
    alone: the intervals shrank, and a correct muP run was flagged with confidence."""
    out = factories / "seeded"
    args = ["scaling", "--model", "factories.py:seeded", "--widths", "16,32", "--param", param]
    assert main([*args, *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "same weights for seeds 0 and 1" in err and "torch.manual_seed" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_numpy_integers_are_ints():
    small = dict(steps=1, batch_size=8, data="digits")
    for seeds in ([np.int64(0), np.int64(1)], np.int64(2), np.arange(2)):
        result = coord_check(
            "mlp", widths=np.array([8, 16]), seeds=seeds, base_width=np.int64(8), **small
        )
        assert result.settings.seeds == (0, 1)
        assert type(result.settings.base_width) is int


def test_numpy_settings_are_written_as_json(tmp_path):
    result = coord_check("mlp", widths=(8, 16), seeds=np.int64(2), steps=1, batch_size=8)
    result.write(tmp_path)
    assert json.loads((tmp_path / "verdicts.json").read_text())["settings"]["seeds"] == [0, 1]


@pytest.mark.parametrize("widths", ["12,16,20", "16,20,32"])
def test_a_model_that_cannot_run_at_one_width_names_it(factories, capsys, widths):
    """20 is no multiple of the 8 heads: named whether it is the widest (checked first) or a
    width in between (met while measuring)."""
    out = factories / "never"
    args = ["scaling", "--model", "factories.py:heads", "--widths", widths, *FAST]
    assert main([*args, "--out", str(out)]) == 2
    # the error is one line, after the progress lines when met while measuring
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: width 20: the model cannot run on the data: ")
    assert "RuntimeError" in lines[-1]
    if widths.endswith("20"):  # checked first: the shapes and the module that failed
        assert "data examples have shape" in lines[-1] and "but the model failed in" in lines[-1]
    assert all(line.startswith("measur") for line in lines[:-1]) and not out.exists()
