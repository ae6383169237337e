"""The fast probe statistics equal straightforward implementations of their definitions.

The references below follow the docstrings of :mod:`initlab.probe.metrics` and
:mod:`initlab.probe.duplicates` literally — every pair of units compared (O(n²)), every
unit's median computed, the whole ``[observations, units]`` matrix built — on random inputs
with planted duplicates (exact and up to rounding), dead units, nearly constant units,
units alive on a few observations and non-finite units, built so that every decision is far
from the tolerance boundary: the integer counts must agree exactly.
"""

import math

import pytest
import torch

from initlab.probe.metrics import (
    DUPLICATE_ATOL_FACTOR,
    DUPLICATE_MAX_OBSERVATIONS,
    DUPLICATE_MIN_DISTINCT,
    DUPLICATE_RTOL,
    activation_duplicates,
    dead_fraction,
    mean_std,
    saturated_fraction,
    unit_matrix,
    weight_duplicates,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def floor(values, terms, reference=0.0):
    eps = torch.finfo(values.dtype).eps
    scale = max(float(values.abs().max()), reference)
    return DUPLICATE_ATOL_FACTOR * eps * math.sqrt(max(1, terms)) * scale


def pairwise_max_diff(rows):
    return (rows[:, None, :] - rows[None, :, :]).abs().amax(dim=-1)


def count_matched(rows_blocks, sizes, atol):
    """Rows that pass the test against at least one other row, in every block (O(n²))."""
    same = torch.ones(len(sizes[0]), len(sizes[0]), dtype=torch.bool)
    for rows, size in zip(rows_blocks, sizes, strict=True):
        bound = DUPLICATE_RTOL * torch.maximum(size[:, None], size[None, :]) + atol
        same &= pairwise_max_diff(rows) <= bound
    same.fill_diagonal_(False)
    return int(same.any(dim=1).sum())


def reference_activation_duplicates(post, unit_dim=1, fan_in=None):
    obs = unit_matrix(post, unit_dim)
    if obs.shape[0] > DUPLICATE_MAX_OBSERVATIONS:
        keep = torch.linspace(0, obs.shape[0] - 1, DUPLICATE_MAX_OBSERVATIONS).long()
        obs = obs[keep]
    cols = obs.T if obs.is_floating_point() else obs.T.float()
    cols = cols[torch.isfinite(cols).all(dim=1)]
    if cols.shape[0] < 2 or cols.shape[1] < 2:
        return 0
    atol = floor(cols, cols.shape[0] if fan_in is None else fan_in)
    kept = []
    for row in cols:
        centred = row - row.mean()
        far = ((row - row.median()).abs() > atol).sum()
        varying = centred.abs().max() > DUPLICATE_RTOL * row.abs().max() + atol
        if varying and far >= DUPLICATE_MIN_DISTINCT:
            kept.append((row, centred))
    if len(kept) < 2:
        return 0
    rows = torch.stack([r for r, _ in kept])
    centred = torch.stack([c for _, c in kept])
    sizes = [rows.abs().amax(dim=1), centred.abs().amax(dim=1)]
    return count_matched([rows, centred], sizes, atol)


def reference_weight_duplicates(weight, bias=None):
    rows = weight.reshape(weight.shape[0], -1)
    if bias is not None:
        rows = torch.cat([rows, bias.reshape(-1, 1)], dim=1)
    rows = rows[torch.isfinite(rows).all(dim=1)]
    if rows.shape[0] < 2:
        return 0
    fan_in = weight[0].numel()
    atol = floor(rows, fan_in, fan_in**-0.5)
    return count_matched([rows], [rows.abs().amax(dim=1)], atol)


def planted_units(units, n_obs, seed, dtype=torch.float32):
    """``[n_obs, units]``: random units, then planted cases in the first 14 columns;
    returns the matrix and how many units the definition calls duplicates."""
    g = gen(seed)
    x = torch.randn(n_obs, units, generator=g, dtype=dtype)
    wobble = 1 + 1e-7 * torch.randn(n_obs, generator=g, dtype=dtype)
    x[:, 0] = x[:, 1]  # an exact pair
    x[:, 2] = x[:, 3] * wobble  # equal up to summation-order rounding
    x[:, 4] = x[:, 5] = x[:, 3]  # ... and the same group: 2, 3, 4, 5
    x[:, 6] = 0.0  # two dead units: constant, never duplicates
    x[:, 7] = 0.0
    x[:, 8] = 0.5 + 1e-8 * torch.randn(n_obs, generator=g, dtype=dtype)  # constant to rounding
    x[:, 9] = 0.5 + 1e-8 * torch.randn(n_obs, generator=g, dtype=dtype)
    x[:, 10] = 0.9 + 1e-2 * torch.randn(n_obs, generator=g, dtype=dtype)  # nearly constant,
    x[:, 11] = x[:, 10].clone()  # but fluctuating: a duplicate pair
    x[:, 12] = 0.9 + 1e-2 * torch.randn(n_obs, generator=g, dtype=dtype)  # and a different one
    x[:, 13] = 0.0  # alive on two observations only, like unit 14: never compared
    x[:, 14] = 0.0
    x[[5, n_obs - 3], 13] = 1.0
    x[[5, n_obs - 3], 14] = 1.0
    return x, 2 + 4 + 2


def as_map(matrix, batch, spatial):
    """``[batch·H·W, C]`` back to ``[batch, C, H, W]`` (the inverse of ``unit_matrix``)."""
    channels = matrix.shape[1]
    return matrix.reshape(batch, *spatial, channels).movedim(-1, 1).contiguous()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_activation_duplicates_match_the_reference_on_dense_layers(seed):
    x, expected = planted_units(300, 256, seed)
    assert reference_activation_duplicates(x) == expected
    assert activation_duplicates(x) == expected
    assert activation_duplicates(x, fan_in=784) == reference_activation_duplicates(x, fan_in=784)
    x[:, 20] = math.nan  # a non-finite unit and its copy are never counted
    x[:, 21] = x[:, 20]
    x[7, 22] = math.inf
    assert activation_duplicates(x) == reference_activation_duplicates(x) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activation_duplicates_match_the_reference_on_subsampled_conv_maps(dtype):
    batch, spatial = 64, (16, 16)  # 16,384 observations: every other one is compared
    n_obs = batch * spatial[0] * spatial[1]
    assert n_obs > DUPLICATE_MAX_OBSERVATIONS
    keep = torch.linspace(0, n_obs - 1, DUPLICATE_MAX_OBSERVATIONS).long()
    x, expected = planted_units(16, n_obs, 3, dtype)
    x[:, 13:15] = 0.0  # alive on two compared observations (and three others)
    x[keep[[7, 8000]], 13:15] = 1.0
    x[keep[[7, 100, 8000]] + 1, 13:15] = 2.0
    x[:, 15] = 0.0  # alive on three (a real unit), the same as unit 1 there
    x[keep[[1, 2, 3]], 15] = 1.0
    x[:, 1] = x[:, 0] = x[:, 15]
    post = as_map(x, batch, spatial)
    assert reference_activation_duplicates(post) == expected + 1
    assert activation_duplicates(post) == expected + 1
    assert activation_duplicates(post, fan_in=72) == reference_activation_duplicates(post, 1, 72)
    tokens = x.reshape(batch, -1, 16)  # [B, T, F] with units last
    assert activation_duplicates(tokens, unit_dim=-1) == expected + 1


@pytest.mark.parametrize("seed", range(6))
def test_activation_duplicates_match_the_reference_on_random_relu_maps(seed):
    g = gen(seed)
    post = torch.relu(torch.randn(32, 12, 18, 18, generator=g) - 1.5 * torch.rand(1, 12, 1, 1))
    post[:, 3] = post[:, 7]
    post[:, 5] = 0.0
    post[:, 9] = torch.relu(torch.randn(32, 1, 18, 18, generator=g) - 3.5)[:, 0]  # rarely alive
    assert activation_duplicates(post, fan_in=108) == reference_activation_duplicates(
        post, fan_in=108
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_weight_duplicates_match_the_reference(seed):
    g = gen(seed)
    weight = torch.randn(100, 20, 3, 3, generator=g) / 13
    bias = 0.1 * torch.randn(100, generator=g)
    weight[1], bias[1] = weight[0], bias[0]
    weight[2], bias[2] = weight[0] * (1 + 1e-7), bias[0]
    weight[10:14] = 0.0  # zero rows whose bias is rounding noise: one group
    bias[10:14] = 1e-9 * torch.randn(4, generator=g)
    weight[20, 0, 0, 0] = math.nan
    assert reference_weight_duplicates(weight, bias) == 7
    assert weight_duplicates(weight, bias) == 7
    assert weight_duplicates(weight) == reference_weight_duplicates(weight)


def test_dead_fraction_and_saturation_match_the_reference():
    g = gen(4)
    post = torch.relu(torch.randn(16, 10, 7, 7, generator=g))
    post[:, 2] = 0.0
    post[:, 4] = -0.0
    post[:, 6] = 0.0
    post[3, 6, 2, 2] = 1e-30  # alive once
    post[:, 8] = math.nan  # NaN is not 0
    post[:, 9] = -post[:, 9]  # at most 0, not dead
    for x, dim in ((post, 1), (post.flatten(2).transpose(1, 2), -1), (post[:, :, 0, 0], 1)):
        dead = (unit_matrix(x, dim) == 0).all(dim=0).double().mean()
        assert dead_fraction(x, dim) == float(dead)
    tanh = torch.tanh(3 * torch.randn(64, 8, 9, 9, generator=g))
    assert saturated_fraction(tanh, "tanh") == float((tanh.abs() > 0.99).double().mean())


@pytest.mark.parametrize("shape", [(4, 3), (256, 8, 28, 28)])
def test_mean_std_match_float64_and_are_exact_for_constants(shape):
    x = 3.0 + 2.0 * torch.randn(*shape, generator=gen(5))
    mean, std = mean_std(x)
    assert mean == pytest.approx(float(x.double().mean()), rel=1e-6)
    assert std == pytest.approx(float(x.double().std(correction=0)), rel=1e-6)
    assert mean_std(torch.full(shape, 0.1)) == (float(torch.tensor(0.1)), 0.0)
    assert mean_std(torch.zeros(shape)) == (0.0, 0.0)
    x.view(-1)[1] = math.inf
    mean, std = mean_std(x)
    assert math.isnan(mean) and std == math.inf
    big = torch.full(shape, 1e30)
    big.view(-1)[0] = -1e30  # the float32 square overflows: float64 takes over
    mean, std = mean_std(big)
    assert math.isfinite(std) and std == pytest.approx(float(big.double().std(correction=0)))
