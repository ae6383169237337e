"""Cautions: what mean field warns of where no finding fires (a study found 60 tanh layers at
He's scale called healthy with nothing more, their trainable depth 59.8 layers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import initlab
from initlab.data import load
from initlab.models import MLP
from initlab.probe.cautions import theory_cautions
from initlab.probe.findings import Finding


def frame(activation: str, sigma_w2: float, depth: int, width: int = 256) -> pd.DataFrame:
    """The columns the cautions read: ``depth`` hidden layers of ``width`` units, weights of
    variance ``sigma_w2 / width``, zero biases, mean field applicable, a linear readout."""
    rows = [
        {"layer": f"blocks.{k}.linear", "activation": activation, "normalized": False,
         "weight_std": math.sqrt(sigma_w2 / width), "fan_in": width, "fan_out": width,
         "units": width, "bias_std": 0.0, "q_pred": 1.0}
        for k in range(depth)
    ]  # fmt: skip
    rows.append({**rows[-1], "layer": "output", "activation": None, "fan_out": 10})
    return pd.DataFrame(rows)


def test_layers_deeper_than_their_trainable_depth_get_a_caution():
    (line,) = theory_cautions(frame("tanh", 25 / 9, 34), [])  # PyTorch's tanh gain 5/3
    assert line.startswith("mean field, though no measured limit was crossed")
    assert "chaotic" in line and "fewer than these 34" in line and "lecun_normal" in line
    assert theory_cautions(frame("tanh", 25 / 9, 20), []) == []  # 31.5 layers: within it
    assert theory_cautions(frame("tanh", 1.0, 60), []) == []  # the edge of chaos


def test_gelu_at_the_gain_rule_gets_a_caution_for_its_repelling_variance():
    (line,) = theory_cautions(frame("gelu", initlab.theory.numeric_gain("gelu") ** 2, 30), [])
    assert "unstable fixed point" in line and "residual connections" in line
    assert theory_cautions(frame("relu", 2.0, 60), []) == []  # He on ReLU: marginal, fine


def test_no_caution_beside_a_scale_finding_or_where_mean_field_does_not_apply():
    deep = frame("tanh", 25 / 9, 34)
    for name in ("exploding_gradients", "saturation", "dead_units"):
        flagged = [Finding(name, ("blocks.0.linear",))]
        assert theory_cautions(deep, flagged) == []  # its suggestion says it already
    assert theory_cautions(deep.assign(q_pred=math.nan), []) == []  # not a plain chain
    normed = deep.assign(normalized=True)
    assert theory_cautions(normed, []) == []


def test_a_healthy_gelu_net_at_the_gain_rule_carries_the_caution():
    """10 gelu layers at the gain rule measure well inside every limit (the variance drifts
    by L'^10 = 3.8 at most), yet mean field's repelling fixed point is worth a word."""
    data = load("digits")
    model = MLP(64, [256] * 10, 10, "gelu")
    scheme = f"variance_scaling(scale={initlab.theory.numeric_gain('gelu') ** 2})"
    initlab.initialize(model, scheme, generator=torch.Generator().manual_seed(0))
    result = initlab.diagnose(model, data.x_train[:256], data.y_train[:256])
    assert result.healthy and len(result.cautions) == 1
    assert "unstable fixed point" in result.cautions[0]
    assert "caution: mean field" in str(result) and result.to_dict()["cautions"]


def test_inputs_far_from_unit_scale_are_a_caution_where_no_finding_fires():
    """x × 1e4 through a He ReLU net keeps every ratio: 'no findings: healthy' at activations
    of std 14,500, and the doctor recommended He on top of it."""
    import torch
    from torch import nn

    import initlab
    from initlab.probe import diagnose

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    model.append(nn.Linear(64, 1))
    initlab.initialize(model, "he_normal")
    x, y = torch.randn(256, 20), torch.randn(256, 1)
    for scale, cautioned in ((1e4, True), (1.0, False), (1e-4, True)):
        found = diagnose(model, scale * x, y)
        assert not found.findings  # the ratios alone see nothing
        said = [c for c in found.cautions if c.startswith("the inputs are far from unit scale")]
        assert bool(said) == cautioned, (scale, found.cautions)
    said = diagnose(model, 1e4 * x, y).cautions[0]
    rms = float(said.split("root-mean-square ")[1].split(" ")[0])
    assert rms == pytest.approx(1e4, rel=0.1)  # 5,120 standard normals: rms within 2%
    # an LSTM first (no probe row) on standardized inputs: the estimate read its state
    lstm = _LstmHead()
    assert not [c for c in diagnose(lstm, torch.randn(64, 5, 8), y[:64]).cautions if "inputs" in c]


class _LstmHead(torch.nn.Module):
    """An LSTM whose last state a Linear head reads: the head is the probe's first row."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.head = torch.nn.LSTM(8, 16, batch_first=True), torch.nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])
