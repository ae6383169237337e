"""Statistical tests of every random initializer: mean, variance, bounds, truncation.

Tolerances are derived from the sample size (see :func:`assert_moments`), so they are as
tight as the sample allows: a missing truncation correction (std × 0.88) or a wrong fan
(a factor 2 in variance) fails by hundreds of standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from initlab.initializers import Fans, get, parse

Z = 5.0  # standard errors allowed: two-sided normal tail 5.7e-7 per check
EXCESS_KURTOSIS = {
    "normal": 0.0,
    "uniform": -1.2,
    "truncated": float(stats.truncnorm(-2, 2).stats("k")),  # -0.6345
}
TRUNCATED_STD = 0.87962566103423978


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_moments(
    x: torch.Tensor, mean: float, std: float, excess_kurtosis: float = 0.0, z: float = Z
) -> None:
    """Sample mean and variance of ``x`` within ``z`` standard errors of ``mean`` and ``std²``.

    For n iid draws with mean μ, variance σ² and excess kurtosis κ:

    - the sample mean has standard error ``σ / sqrt(n)``;
    - the unbiased sample variance s² has ``Var(s²) = σ⁴ (2/(n−1) + κ/n)`` (exact for iid
      draws), so its standard error is ``σ² sqrt(2/(n−1) + κ/n)``: κ = 0 for a normal,
      −6/5 for a uniform, −0.634 for a normal truncated at ±2σ.

    Both are then asymptotically normal, so ``z = 5`` fails a correct sampler with probability
    ~1e-6 per check while a 1 % error in std fails for n >= ~2·10^5.
    """
    x = x.detach().double().flatten()
    n = x.numel()
    sample_mean, sample_var = float(x.mean()), float(x.var(unbiased=True))
    mean_tol = z * std / math.sqrt(n)
    var_tol = z * std**2 * math.sqrt(2 / (n - 1) + excess_kurtosis / n)
    assert abs(sample_mean - mean) < mean_tol, (sample_mean, mean, mean_tol)
    assert abs(sample_var - std**2) < var_tol, (sample_var, std**2, var_tol)


def assert_uniform_bounds(x: torch.Tensor, low: float, high: float) -> None:
    """All draws in [low, high] and the extremes within ``40·(high−low)/n`` of the bounds.

    For n iid U(low, high) draws, P(max < high − δ) = (1 − δ/(high−low))^n ≈ exp(−nδ/(high−low)),
    so δ = 40·(high−low)/n fails a correct sampler with probability e^−40.
    """
    n, width = x.numel(), high - low
    slack = 1e-6 * max(abs(low), abs(high))  # float32 rounding of the bounds
    assert float(x.min()) >= low - slack and float(x.max()) <= high + slack
    assert float(x.min()) < low + 40 * width / n
    assert float(x.max()) > high - 40 * width / n


def test_moment_check_detects_a_missing_truncation_correction():
    """The harness itself: an uncorrected truncated normal (std 0.88σ) must be rejected."""
    x = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), 0, 1, -2, 2, generator=gen())
    assert_moments(x, 0.0, TRUNCATED_STD, EXCESS_KURTOSIS["truncated"])
    with pytest.raises(AssertionError):
        assert_moments(x, 0.0, 1.0, EXCESS_KURTOSIS["truncated"])
    with pytest.raises(AssertionError):  # a 1 % error in std is caught at n = 10^6
        assert_moments(x * 1.01, 0.0, TRUNCATED_STD, EXCESS_KURTOSIS["truncated"])


# ---- variance_scaling: every mode × distribution ---------------------------------------------

SHAPE = (400, 2500)  # fan_in 2500, fan_out 400, fan_avg 1450: the three modes differ
FAN = {"fan_in": 2500, "fan_out": 400, "fan_avg": 1450}


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_variance_scaling_truncated_normal(mode, scale):
    std = math.sqrt(scale / FAN[mode])
    init = get("variance_scaling", scale=scale, mode=mode, distribution="truncated_normal")
    x = init(torch.empty(SHAPE), gen())
    assert init.std(Fans(2500, 400)) == pytest.approx(std, rel=1e-12)
    # the post-truncation std is sqrt(var): the 0.8796 correction is applied
    assert_moments(x, 0.0, std, EXCESS_KURTOSIS["truncated"])
    bound = 2 * std / TRUNCATED_STD
    assert float(x.abs().max()) <= bound * (1 + 1e-6)
    assert float(x.abs().max()) > 0.99 * bound  # P(|z| > 1.98) ≈ 2.3e-3 per draw


@pytest.mark.parametrize("distribution", ["untruncated_normal", "normal"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_untruncated_normal(mode, distribution):
    std = math.sqrt(2.0 / FAN[mode])
    x = get("variance_scaling", scale=2.0, mode=mode, distribution=distribution)(
        torch.empty(SHAPE), gen()
    )
    assert_moments(x, 0.0, std)
    beyond = float((x.abs() > 2 * std).double().mean())  # 4.55 % of a normal lies beyond 2σ
    p = 2 * stats.norm.sf(2)
    assert abs(beyond - p) < Z * math.sqrt(p * (1 - p) / x.numel())


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_uniform(mode):
    limit = math.sqrt(3 * 2.0 / FAN[mode])
    x = get("variance_scaling", scale=2.0, mode=mode, distribution="uniform")(
        torch.empty(SHAPE), gen()
    )
    assert_moments(x, 0.0, limit / math.sqrt(3), EXCESS_KURTOSIS["uniform"])
    assert_uniform_bounds(x, -limit, limit)


def test_variance_scaling_floors_the_fan_at_one():
    """Keras: var = scale / max(1, n), so zero fans give var = scale."""
    init = get("variance_scaling", scale=4.0, mode="fan_in", distribution="untruncated_normal")
    assert init.std(Fans(0, 0)) == 2.0
    x = init(torch.empty(1000, 1000), gen(), fans=Fans(0, 0))
    assert_moments(x, 0.0, 2.0)


# ---- Keras presets against hand-computed constants (a 300 x 784 Dense kernel) ---------------

KERNEL = (300, 784)  # PyTorch layout [out, in]: fan_in 784, fan_out 300


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("glorot_uniform", math.sqrt(6 / 1084)),
        ("he_uniform", math.sqrt(6 / 784)),
        ("lecun_uniform", math.sqrt(3 / 784)),
    ],
)
def test_uniform_presets_limits(name, limit):
    x = get(name)(torch.empty(KERNEL), gen())
    assert get(name).std(Fans(784, 300)) == pytest.approx(limit / math.sqrt(3), rel=1e-12)
    assert_uniform_bounds(x, -limit, limit)
    assert_moments(x, 0.0, limit / math.sqrt(3), EXCESS_KURTOSIS["uniform"])


@pytest.mark.parametrize(
    ("name", "std"),
    [
        ("glorot_normal", math.sqrt(2 / 1084)),
        ("he_normal", math.sqrt(2 / 784)),
        ("lecun_normal", math.sqrt(1 / 784)),
    ],
)
def test_truncated_presets_std_and_cut(name, std):
    x = get(name)(torch.empty(KERNEL), gen())
    assert get(name).std(Fans(784, 300)) == pytest.approx(std, rel=1e-12)
    assert_moments(x, 0.0, std, EXCESS_KURTOSIS["truncated"])
    assert float(x.abs().max()) <= 2 * std / 0.87962566103423978 * (1 + 1e-6)


def test_he_normal_is_truncated_but_kaiming_normal_is_not():
    """Same std sqrt(2/fan_in); Keras' law has no mass beyond 2σ/0.88, PyTorch's has 3.6 %."""
    std = math.sqrt(2 / 784)
    bound = 2 * std / TRUNCATED_STD
    keras = get("he_normal")(torch.empty(1000, 784), gen())
    torch_ = get("kaiming_normal", nonlinearity="relu")(torch.empty(1000, 784), gen())
    assert_moments(keras, 0.0, std, EXCESS_KURTOSIS["truncated"])
    assert_moments(torch_, 0.0, std)
    assert int((keras.abs() > bound).sum()) == 0
    p = 2 * stats.norm.sf(2 / TRUNCATED_STD)
    beyond = float((torch_.abs() > bound).double().mean())
    assert abs(beyond - p) < Z * math.sqrt(p * (1 - p) / torch_.numel())


# ---- fixed-scale schemes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "mean", "std", "kurtosis"),
    [
        ("random_normal", 0.0, 0.05, "normal"),
        ("random_normal(mean=0.3, stddev=0.2)", 0.3, 0.2, "normal"),
        ("jax_normal", 0.0, 0.01, "normal"),
        ("normal", 0.0, 1.0, "normal"),
        ("normal(mean=-1, std=0.5)", -1.0, 0.5, "normal"),
        ("truncated_normal", 0.0, 0.05 * TRUNCATED_STD, "truncated"),
        ("truncated_normal(mean=1, stddev=0.2)", 1.0, 0.2 * TRUNCATED_STD, "truncated"),
        ("random_uniform", 0.0, 0.1 / math.sqrt(12), "uniform"),
        ("uniform(a=-1, b=3)", 1.0, 4 / math.sqrt(12), "uniform"),
        ("jax_uniform(scale=0.5)", 0.25, 0.5 / math.sqrt(12), "uniform"),
    ],
)
def test_fixed_scale_moments(spec, mean, std, kurtosis):
    init = parse(spec)
    x = init(torch.empty(1000, 1000), gen(3))
    assert init.std(Fans(1000, 1000)) == pytest.approx(std, rel=1e-12)
    assert_moments(x, mean, std, EXCESS_KURTOSIS[kurtosis])


def test_keras_truncated_normal_cuts_at_two_stddev_without_correction():
    x = get("truncated_normal", mean=1.0, stddev=0.2)(torch.empty(1000, 1000), gen())
    assert float(x.min()) >= 0.6 - 1e-6 and float(x.max()) <= 1.4 + 1e-6
    assert float(x.min()) < 0.61 and float(x.max()) > 1.39


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [("random_uniform", -0.05, 0.05), ("uniform(a=-1, b=3)", -1, 3), ("jax_uniform", 0, 0.01)],
)
def test_uniform_bounds(spec, low, high):
    assert_uniform_bounds(parse(spec)(torch.empty(1000, 1000), gen()), low, high)


def test_trunc_normal_absolute_bounds_and_std():
    """PyTorch's a, b are absolute: std=2 cut at [-1, 3] around mean 0.5."""
    init = get("trunc_normal", mean=0.5, std=2.0, a=-1.0, b=3.0)
    law = stats.truncnorm((-1 - 0.5) / 2, (3 - 0.5) / 2, loc=0.5, scale=2)
    assert init.std(Fans(1, 1)) == pytest.approx(float(law.std()), rel=1e-10)
    x = init(torch.empty(1000, 1000), gen())
    assert_moments(x, float(law.mean()), float(law.std()), float(law.stats("k")))
    assert float(x.min()) >= -1 and float(x.max()) <= 3


# ---- PyTorch-named schemes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "std", "kurtosis"),
    [
        ("xavier_normal(gain=2)", 2 * math.sqrt(2 / 1084), "normal"),
        ("xavier_uniform", math.sqrt(2 / 1084), "uniform"),
        ("kaiming_normal(nonlinearity=relu)", math.sqrt(2 / 784), "normal"),
        ("kaiming_normal(mode=fan_out, nonlinearity=tanh)", 5 / 3 / math.sqrt(300), "normal"),
        ("kaiming_uniform(a=0.2)", math.sqrt(2 / 1.04 / 784), "uniform"),
        ("torch_default", 1 / math.sqrt(3 * 784), "uniform"),
    ],
)
def test_pytorch_named_moments(spec, std, kurtosis):
    init = parse(spec)
    assert init.std(Fans(784, 300)) == pytest.approx(std, rel=1e-12)
    x = init(torch.empty(1200, 784), gen(), fans=Fans(784, 300))
    assert_moments(x, 0.0, std, EXCESS_KURTOSIS[kurtosis])


def test_torch_default_is_uniform_one_over_sqrt_fan_in():
    bound = 1 / math.sqrt(784)
    assert_uniform_bounds(get("torch_default")(torch.empty(1000, 784), gen()), -bound, bound)
    bias = get("torch_default_bias")(torch.empty(100_000), gen(), fans=Fans(784, 300))
    assert_uniform_bounds(bias, -bound, bound)


def test_sparse_moments():
    """Entries are 0 w.p. k/rows (k = ceil(s·rows)), else N(0, std²): a scale mixture with
    variance (1 − k/rows)·std² and kurtosis 3/(1 − k/rows)."""
    init = get("sparse", sparsity=0.3, std=0.5)
    x = init(torch.empty(1000, 1000), gen())
    keep = 1 - 300 / 1000
    assert init.std(Fans(1000, 1000)) == pytest.approx(0.5 * math.sqrt(keep))
    assert_moments(x, 0.0, 0.5 * math.sqrt(keep), 3 / keep - 3)
