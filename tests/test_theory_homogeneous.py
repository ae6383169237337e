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


def test_a_bias_keeps_the_ordered_phase():
    assert theory.analyze("relu", 1.5, 0.1)["phase"] == "ordered"  # q* > 0: chi_c(1) = chi1
    assert theory.analyze("relu", 1.5, 0.1)["xi_c"] == pytest.approx(-1 / math.log(0.75))
    found = theory.analyze("tanh", 0.5, 0.05)  # q* > 0
    assert found["phase"] == "ordered" and found["q_star"] > 0
    assert found["xi_c"] == pytest.approx(-1 / math.log(found["chi1"]), rel=1e-9)


def test_tanh_at_q_star_zero_vanishes_as_relu_does():
    """tanh at (0.64, 0) was "ordered" with c* = 1, chi_c = 0.64 and xi_c = 2.24 where ReLU
    at q* = 0 is "vanishing" with xi_c = inf: as q -> 0 tanh acts as the identity, whose
    correlation map has slope 1, and two inputs' correlation freezes instead of going to 1."""
    found = theory.analyze("tanh", 0.64, 0.0)
    assert found["q_star"] == 0.0 and found["phase"] == "vanishing" and found["note"]
    assert found["xi_c"] == math.inf and found["chi_c"] == 1.0
    scale = -1 / math.log(0.64)  # the gradients' mean square: 0.64^l
    assert found["xi_grad"] == pytest.approx(scale, rel=1e-9)
    assert found["xi_q"] == pytest.approx(scale, rel=1e-9)  # L'(0) = sigma_w² tanh'(0)² too
    assert found["max_trainable_depth"] == pytest.approx(6 * scale, rel=1e-9)  # as before
    # the slope of the correlation map at c = 1 tends to 1 as q -> 0, not to chi1 = 0.64
    assert theory.chi_c("tanh", 0.64, 0.0, c=1.0, q=1e-8) == pytest.approx(1.0, abs=1e-6)
    # iterated along q_l -> 0, two inputs at c = 0.5 settle near 0.46, far from 1
    q, c = 1.0, 0.5
    for _ in range(40):
        q, c = (
            theory.length_map(q, "tanh", 0.64, 0.0),
            theory.correlation_map(c, "tanh", 0.64, 0.0, q=q),
        )
    assert c == pytest.approx(0.4638, abs=1e-3)


def test_the_theory_table_says_why_a_row_is_vanishing(capsys):
    """The table showed xi_c = inf beside a trainable depth of 8.66 and never said why."""
    from initlab.cli import main

    assert main(["theory", "--activation", "relu", "--sigma-w2", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("note: q* = 0: the signal shrinks to where phi acts as its") == 1
