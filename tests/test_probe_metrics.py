"""The probe's statistics as pure functions of tensors (initlab.probe.metrics)."""

import math

import pytest
import torch

from initlab.probe.metrics import (
    METRICS,
    activation_duplicates,
    dead_fraction,
    duplicate_groups,
    layer_metrics,
    mean_std,
    saturated_fraction,
    unit_matrix,
    weight_duplicates,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_unit_matrix_puts_units_in_columns():
    assert unit_matrix(torch.zeros(8, 5)).shape == (8, 5)
    assert unit_matrix(torch.zeros(8, 3, 4, 4)).shape == (8 * 16, 3)
    assert unit_matrix(torch.zeros(8, 7, 5), unit_dim=-1).shape == (56, 5)
    x = torch.arange(2 * 3 * 2.0).reshape(2, 3, 2)  # [B, C, L]
    assert unit_matrix(x)[:, 1].tolist() == [2.0, 3.0, 8.0, 9.0]


def test_mean_std_are_population_statistics_and_overflow_is_infinite():
    mean, std = mean_std(torch.tensor([1.0, 3.0]))
    assert (mean, std) == (2.0, 1.0)
    mean, std = mean_std(torch.tensor([1.0, math.inf]))
    assert math.isnan(mean) and std == math.inf
    assert all(math.isnan(v) for v in mean_std(None))


def test_saturation_follows_the_activation_registry_rules():
    tanh = torch.tensor([0.995, 0.5, -0.999, 0.0])
    assert saturated_fraction(tanh, "tanh") == 0.5
    sigmoid = torch.tensor([0.005, 0.5, 0.995, 0.02])
    assert saturated_fraction(sigmoid, "sigmoid") == 0.5
    assert saturated_fraction(torch.tensor([0.95, 0.1]), "softsign") == 0.5
    assert math.isnan(saturated_fraction(tanh, "relu"))  # cannot saturate
    assert math.isnan(saturated_fraction(tanh, None))


def test_dead_units_are_zero_for_every_sample_and_position():
    x = torch.rand(4, 3, 5, 5) + 0.1
    x[:, 0] = 0.0  # channel 0 dead everywhere
    x[:, 1] = 0.0
    x[2, 1, 3, 3] = 0.5  # channel 1 alive at one position of one sample
    assert dead_fraction(x) == pytest.approx(1 / 3)
    dense = torch.relu(torch.randn(16, 10, generator=gen()))
    dense[:, [2, 7]] = 0.0
    assert dead_fraction(dense) == pytest.approx(0.2)


def test_duplicate_groups_counts_identical_rows_and_their_groups():
    rows = torch.randn(10, 32, generator=gen())
    assert duplicate_groups(rows) == (0, 0)
    rows[3] = rows[0]
    rows[7] = rows[0]
    rows[5] = rows[1] * (1 + 1e-9)  # identical up to round-off
    assert duplicate_groups(rows) == (5, 2)
    assert duplicate_groups(torch.zeros(6, 4)) == (6, 1)
    assert duplicate_groups(torch.zeros(1, 4)) == (0, 0)


def test_duplicate_groups_finds_one_pair_among_thousands_of_units():
    rows = torch.randn(8192, 256, generator=gen())
    rows[100] = rows[4000]
    assert duplicate_groups(rows) == (2, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_duplicates_are_equal_up_to_rounding_on_any_cpu(dtype):
    eps = torch.finfo(dtype).eps
    base = torch.randn(64, 33, generator=gen(), dtype=dtype)
    # the same 8 rows computed in another summation order: relative differences ~1e-7
    wobble = 1 + 1e-7 * torch.randn(16, 33, generator=gen(1), dtype=dtype)
    assert duplicate_groups(base[:8].repeat(2, 1) * wobble) == (16, 8)
    # genuinely different random rows never are, in a big matrix or in short rows
    assert duplicate_groups(base) == (0, 0)
    assert duplicate_groups(torch.randn(4096, 8, generator=gen(2), dtype=dtype)) == (0, 0)
    assert duplicate_groups(base * 1e-6) == (0, 0)  # the floor is relative to the matrix
    # a zero-initialized layer behind a BatchNorm: zero weights, and biases (whose gradient
    # the normalization cancels) of pure rounding noise that differs from CPU to CPU
    zeros = torch.zeros(16, 32, dtype=dtype)
    noise = 20 * eps * torch.randn(16, generator=gen(3), dtype=dtype)
    assert weight_duplicates(zeros, noise) == 16
    assert weight_duplicates(zeros, 0.1 * torch.randn(16, generator=gen(4), dtype=dtype)) == 0
    assert activation_duplicates(base.T[:, [0, 1, 0]] * wobble[:3].T) == 2


def test_weight_duplicates_include_the_bias():
    weight = torch.ones(4, 3)
    assert weight_duplicates(weight) == 4
    assert weight_duplicates(weight, torch.tensor([0.0, 1.0, 2.0, 3.0])) == 0
    assert weight_duplicates(weight, torch.tensor([0.0, 0.0, 2.0, 3.0])) == 2


def test_activation_duplicates_skip_constant_units_and_see_fluctuations():
    x = torch.randn(64, 6, generator=gen())
    x[:, 1] = x[:, 0]
    x[:, 2] = 0.0
    x[:, 3] = 0.0  # two dead units: constant, not counted as duplicates
    assert activation_duplicates(x) == 2
    # nearly constant (saturated) but different units are not duplicates
    base = torch.full((64, 2), 0.9999)
    base[:, 0] += 1e-5 * torch.randn(64, generator=gen(1))
    base[:, 1] += 1e-5 * torch.randn(64, generator=gen(2))
    assert activation_duplicates(base) == 0


def test_layer_metrics_returns_every_metric_by_name():
    pre = torch.randn(32, 8, generator=gen())
    post = torch.tanh(pre)
    weight = torch.randn(8, 5, generator=gen(1))
    grad = torch.randn(8, 5, generator=gen(2))
    out = layer_metrics(pre, post, "tanh", weight, grad, torch.ones(32, 8))
    assert tuple(out) == METRICS
    assert out["weight_grad_norm"] == pytest.approx(float(grad.norm()))
    assert out["pre_msq"] == pytest.approx(float(pre.square().mean()), rel=1e-6)
    assert out["post_grad_std"] == 0.0 and out["nonfinite_frac"] == 0.0
    assert math.isnan(out["pre_grad_std"]) and math.isnan(out["bias_mean"])
    only_pre = layer_metrics(pre)
    assert math.isnan(only_pre["post_std"]) and math.isnan(only_pre["weight_std"])


def test_units_alive_on_one_sample_are_not_duplicates_by_coincidence():
    """A 50-layer He net had two ReLU units alive on one sample each, at 0.02005 and
    0.01966, in a layer whose largest value set the floor to ~9e-4: 'symmetry' on a healthy
    net. A unit needs three observations away from its median to be compared."""
    x = torch.relu(torch.randn(256, 64, generator=gen(5)))
    x[:, 0] = 9.0 * torch.rand(256, generator=gen(6))  # a big unit: the floor's scale
    x[:, 1], x[:, 2] = 0.0, 0.0
    x[17, 1], x[17, 2] = 0.02005, 0.01966
    assert activation_duplicates(x, fan_in=256) == 0
    x[17, 1], x[17, 2] = 0.5005, 0.5000  # big enough that the zeros sit off the mean
    assert activation_duplicates(x, fan_in=256) == 0
    x[:, 3] = x[:, 4]  # a real duplicate is still seen
    assert activation_duplicates(x, fan_in=256) == 2


def test_equal_rows_in_different_groups_of_a_grouped_convolution_are_not_duplicates():
    """A depthwise convolution whose every channel got the same 3x3 filter (delta-orthogonal
    puts ±1 at every centre tap) read different input channels: no two units are copies,
    yet the rows compared across groups made 'symmetry: 16 units identical'."""
    same = torch.randn(1, 1, 3, 3, generator=gen(7)).expand(16, 1, 3, 3).contiguous()
    assert weight_duplicates(same) == 16 and weight_duplicates(same, groups=16) == 0
    pairs = torch.randn(4, 8, 3, 3, generator=gen(8)).repeat_interleave(2, dim=0)  # 2 groups
    assert weight_duplicates(pairs, groups=2) == 8  # copies within a group still count


def test_the_diagnosis_of_a_depthwise_convolution_with_equal_filters_has_no_symmetry_finding():
    from torch import nn

    from initlab.probe import diagnose

    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    )  # fmt: skip
    with torch.no_grad():
        model[2].weight.copy_(torch.randn(1, 1, 3, 3, generator=gen(9)).expand(8, 1, 3, 3))
        model[2].bias.zero_()  # as a scheme with zero biases leaves them
    x = torch.randn(64, 1, 8, 8, generator=gen(10))
    found = diagnose(model, x, torch.arange(64) % 10)
    assert "symmetry" not in found.names
    assert found.layers.set_index("layer").loc["2", "weight_duplicates"] == 0
