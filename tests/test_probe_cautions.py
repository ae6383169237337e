"""Cautions: what mean field warns of where no finding fires (a study found 60 tanh layers at
He's scale called healthy with nothing more, their trainable depth 59.8 layers)."""

from __future__ import annotations

import math

import pandas as pd
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
    flagged = [Finding("exploding_gradients", ("blocks.0.linear",))]
    assert theory_cautions(deep, flagged) == []  # its suggestion says it already
    assert theory_cautions(deep.assign(q_pred=math.nan), []) == []  # not a plain chain
    normed = deep.assign(normalized=True)
    assert theory_cautions(normed, []) == []


def test_a_healthy_deep_tanh_net_at_hes_scale_carries_the_caution():
    data = load("digits")
    model = MLP(64, [64] * 60, 10, "tanh")
    initlab.initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    result = initlab.diagnose(model, data.x_train[:128], data.y_train[:128])
    assert result.healthy and len(result.cautions) == 1
    assert "fewer than these 60" in result.cautions[0]
    assert "caution: mean field" in str(result) and result.to_dict()["cautions"]
