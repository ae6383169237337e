"""Theory meets reality: wide random MLPs in torch follow predicted_variances layer by layer.

Tolerance from the width N (and R independent networks). Given layer l-1, the units of layer
l are iid N(0, v_l) with ``v_l = sigma_w² mean_j phi(z_{l-1,j})² + sigma_b²``: the mean over
N units of ``phi²`` has relative variance ``kappa / N``, ``kappa = E[phi⁴] / E[phi²]² - 1``
(ReLU: 5, Hanin & Rolnick 2018), and a relative deviation of q is passed on with the
elasticity ``e = L'(q) q / L(q)`` (ReLU at sigma_w² = 2: e = 1, so it accumulates; tanh
contracts). Measuring ``mean(z²)`` over N units adds ``2 / N``. Averaging over a batch of
inputs can only shrink this single-input variance, so ``3 sqrt(var / R)`` is a safe bound.
"""

import math

import numpy as np
import pytest
import torch

from initlab import activations
from initlab.theory import gaussian_expectation, length_map_slope, predicted_variances
from initlab.theory.gaussian import activation_fn

WIDTH, DEPTH, BATCH, NETS = 2000, 10, 128, 4


def _measured_variances(name, sigma_w2, sigma_b2, seed):
    """mean(z_l²) over units and batch for NETS random MLPs, inputs with mean(x²) = 1."""
    gen = torch.Generator().manual_seed(seed)
    fn = activations.get(name).fn
    out = np.zeros((NETS, DEPTH))
    for r in range(NETS):
        x = torch.randn(BATCH, WIDTH, generator=gen)
        h = x / x.pow(2).mean(dim=1, keepdim=True).sqrt()  # q0 = 1 exactly, per input
        for layer in range(DEPTH):
            w = torch.randn(WIDTH, WIDTH, generator=gen) * math.sqrt(sigma_w2 / WIDTH)
            b = torch.randn(WIDTH, generator=gen) * math.sqrt(sigma_b2)
            z = h @ w + b
            out[r, layer] = z.double().pow(2).mean().item()
            h = fn(z)
    return out.mean(axis=0)


def _tolerance(name, sigma_w2, sigma_b2, q):
    """3 sd of the relative error of the R-network average, layer by layer (module doc)."""
    phi = activation_fn(name)
    var, tol = 0.0, np.empty(DEPTH)
    for layer in range(DEPTH):
        if layer > 0:
            prev = q[layer - 1]
            m2 = gaussian_expectation(lambda x: phi(x) ** 2, prev)
            kappa = gaussian_expectation(lambda x: phi(x) ** 4, prev) / m2**2 - 1
            elasticity = length_map_slope(prev, name, sigma_w2, sigma_b2) * prev / q[layer]
            var = elasticity**2 * var + kappa / WIDTH
        tol[layer] = 3 * math.sqrt((var + 2 / WIDTH) / NETS)
    return tol


@pytest.mark.parametrize(
    ("name", "sigma_w2", "sigma_b2", "seed"), [("tanh", 1.5, 0.05, 0), ("relu", 2.0, 0.0, 1)]
)
def test_wide_mlp_matches_predicted_variances(name, sigma_w2, sigma_b2, seed):
    predicted = predicted_variances(name, sigma_w2, sigma_b2, depth=DEPTH, q0=1.0)
    measured = _measured_variances(name, sigma_w2, sigma_b2, seed)
    tol = _tolerance(name, sigma_w2, sigma_b2, predicted)
    assert tol.max() < 0.25
    rel = measured / predicted - 1
    assert np.all(np.abs(rel) < tol), (rel, tol)
    # The test can fail: the other first-layer convention (q_1 = L(q0)) is far outside it.
    wrong = predicted_variances(name, sigma_w2, sigma_b2, DEPTH, 1.0, raw_input=False)
    assert np.abs(measured[0] / wrong[0] - 1) > 5 * tol[0]
