"""Gains: PyTorch's table exactly, the numeric rule against closed forms and Monte Carlo."""

import math

import pytest
import torch

from initlab import activations
from initlab.errors import InitlabError, UnknownNameError
from initlab.theory import critical_gain, gain, gain_table, numeric_gain, pytorch_gain

TORCH_NAMES = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]
NO_TORCH_GAIN = ["elu", "gelu", "silu", "softsign", "softplus"]


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_pytorch_gains_equal_calculate_gain_exactly(name):
    expected = torch.nn.init.calculate_gain(name)  # leaky_relu: PyTorch's default slope 0.01
    assert gain(name, method="pytorch") == expected
    assert gain(name) == expected  # auto prefers PyTorch's value


def test_pytorch_gain_values_are_the_documented_ones():
    assert gain("tanh", method="pytorch") == 5.0 / 3
    assert gain("relu", method="pytorch") == math.sqrt(2.0)
    assert gain("selu", method="pytorch") == 0.75
    assert gain("leaky_relu", method="pytorch") == math.sqrt(2.0 / (1 + 0.01**2))


def test_numeric_gains_closed_forms():
    assert gain("relu", method="numeric") == pytest.approx(math.sqrt(2.0), abs=1e-9)
    assert gain("linear", method="numeric") == pytest.approx(1.0, abs=1e-12)
    assert gain("leaky_relu", method="numeric") == pytest.approx(
        math.sqrt(2.0 / (1 + 0.01**2)), abs=1e-9
    )
    assert gain("selu", method="numeric") == pytest.approx(1.0, abs=1e-6)  # self-normalizing


def test_numeric_and_pytorch_disagree_where_documented():
    assert gain("tanh", method="numeric") == pytest.approx(1.5925, abs=1e-4)
    assert gain("sigmoid", method="numeric") == pytest.approx(1.8462, abs=1e-4)


@pytest.mark.parametrize("name", activations.names())
def test_numeric_gain_matches_monte_carlo(name):
    """Tolerance from the sample size: gain = m^-1/2, so sd(gain) = gain sd(m) / (2 m)."""
    n = 400_000
    gen = torch.Generator().manual_seed(1234)
    z = torch.randn(n, generator=gen, dtype=torch.float64)
    sq = activations.get(name).fn(z) ** 2
    m = sq.mean().item()
    sd_gain = (1 / math.sqrt(m)) * (sq.std().item() / math.sqrt(n)) / (2 * m)
    assert numeric_gain(name) == pytest.approx(1 / math.sqrt(m), abs=5 * sd_gain)


@pytest.mark.parametrize("name", NO_TORCH_GAIN)
def test_auto_falls_back_to_numeric(name):
    assert pytorch_gain(name) is None
    assert gain(name) == numeric_gain(name)
    with pytest.raises(UnknownNameError):
        gain(name, method="pytorch")


def test_every_activation_has_a_finite_positive_gain_and_table_row():
    table = {row["activation"]: row for row in gain_table()}
    assert list(table) == activations.names()
    for name, row in table.items():
        for key in ("numeric", "auto"):
            assert math.isfinite(row[key]) and row[key] > 0, (name, key)
        assert row["source"] == ("numeric" if row["pytorch"] is None else "pytorch")
        assert row["auto"] == gain(name)


def test_critical_gain_links_to_edge_of_chaos():
    assert critical_gain("relu") == pytest.approx(math.sqrt(2.0), abs=1e-9)
    assert critical_gain("tanh") == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs():
    with pytest.raises(UnknownNameError):
        gain("relux")
    with pytest.raises(UnknownNameError):
        gain("relu", method="magic")
    with pytest.raises(InitlabError):
        critical_gain("tanh", sigma_b2=-1.0)
