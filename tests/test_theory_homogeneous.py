"""ReLU (any positively homogeneous activation) at sigma_b² = 0 below its edge: the correlation
map does not depend on q or sigma_w², chi_c(1) = 1 and xi_c = inf; only the scale vanishes,
by chi1 = sigma_w²/2 per layer (docs/theory.md, "Depth scales")."""

from __future__ import annotations

import math

import pytest

from initlab import theory


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.5])
def test_relu_below_its_edge_has_an_infinite_correlation_depth_and_a_finite_variance_one(sigma_w2):
    assert theory.chi_c("relu", sigma_w2, 0.0) == pytest.approx(1.0, abs=1e-12)  # did raise
    found = theory.analyze("relu", sigma_w2, 0.0)
    assert found["xi_c"] == math.inf and found["phase"] == "vanishing" and found["note"]
    assert found["c_star"] == 1.0 and found["chi_c"] == pytest.approx(1.0, abs=1e-12)
    scale = -1 / math.log(sigma_w2 / 2)  # the variance and the gradients: (sigma_w²/2)^l
    assert found["xi_q"] == pytest.approx(scale, rel=1e-9)
    assert found["max_trainable_depth"] == pytest.approx(6 * scale, rel=1e-9)
    assert theory.max_trainable_depth("relu", sigma_w2, 0.0) == found["max_trainable_depth"]


def test_the_relu_correlation_map_is_the_same_at_every_sigma_w2_and_q():
    at_zero = theory.correlation_map(0.3, "relu", 1.0, 0.0)  # q* = 0: the q -> 0+ limit
    assert theory.correlation_map(0.3, "relu", 2.0, 0.0, q=5.0) == pytest.approx(at_zero, rel=1e-12)
    # the arc-cosine kernel: (sqrt(1 - c²) + (π - arccos c) c) / π
    c = 0.3
    assert at_zero == pytest.approx((math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi)


def test_a_bias_or_a_non_homogeneous_activation_keeps_the_ordered_phase():
    assert theory.analyze("relu", 1.5, 0.1)["phase"] == "ordered"  # q* > 0: chi_c(1) = chi1
    assert theory.analyze("relu", 1.5, 0.1)["xi_c"] == pytest.approx(-1 / math.log(0.75))
    assert theory.analyze("tanh", 0.5, 0.0)["phase"] == "ordered"  # tanh is not homogeneous


def test_the_theory_table_says_why_a_row_is_vanishing(capsys):
    """The table showed xi_c = inf beside a trainable depth of 8.66 and never said why."""
    from initlab.cli import main

    assert main(["theory", "--activation", "relu", "--sigma-w2", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("note: q* = 0 and the correlation map does not depend on q") == 1
