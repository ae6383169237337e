"""Mean-field theory: fixed points, chi1, edge of chaos, depth scales, analyze()."""

import json
import math

import numpy as np
import pytest

from initlab import activations
from initlab.errors import InitlabError, UnknownNameError
from initlab.theory import (
    analyze,
    chi1,
    chi_c,
    correlation_map,
    critical_sigma_w2,
    fixed_point_c,
    fixed_point_q,
    length_map,
    length_map_slope,
    max_trainable_depth,
    phase,
    predicted_variances,
    xi_c,
    xi_q,
)
from initlab.theory.meanfield import Q_GRID, second_moment

ALL = activations.names()


def test_tanh_edge_of_chaos():
    assert critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)
    assert critical_sigma_w2("tanh", 0.05) == pytest.approx(1.76, abs=0.02)  # Schoenholz et al.
    assert chi1("tanh", critical_sigma_w2("tanh", 0.05), 0.05) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("sigma_b2", [0.0, 0.05, 0.5])
def test_relu_edge_of_chaos_is_he(sigma_b2):
    assert critical_sigma_w2("relu", sigma_b2) == pytest.approx(2.0, abs=1e-9)
    assert chi1("relu", 1.2, sigma_b2) == pytest.approx(0.6, abs=1e-12)  # sigma_w² / 2


def test_linear_edge_of_chaos():
    assert critical_sigma_w2("linear") == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_every_activation_has_a_consistent_edge(name):
    sw_crit = critical_sigma_w2(name, 0.05)
    assert math.isfinite(sw_crit) and sw_crit > 0
    assert phase(chi1(name, 0.8 * sw_crit, 0.05)) == "ordered"
    assert phase(chi1(name, 1.25 * sw_crit, 0.05)) == "chaotic"


def test_phase_labels():
    assert analyze("tanh", 1.2, 0.05)["phase"] == "ordered"
    assert analyze("tanh", 2.5, 0.05)["phase"] == "chaotic"
    assert analyze("relu", 2.0, 0.0)["phase"] == "critical"
    assert phase(0.5) == "ordered" and phase(1.5) == "chaotic" and phase(1.0) == "critical"


def test_relu_fixed_points():
    assert fixed_point_q("relu", 2.0, 0.0, q0=3.7) == 3.7  # every q is fixed
    assert fixed_point_q("relu", 2.5, 0.0) == math.inf  # diverges
    assert fixed_point_q("relu", 1.5, 0.1) == pytest.approx(0.1 / (1 - 0.75), rel=1e-12)
    assert fixed_point_q("relu", 1.5, 0.0) == 0.0
    assert chi1("relu", 1.5, 0.0) == pytest.approx(0.75, abs=1e-12)  # q* = 0: one-sided limit
    assert chi1("selu", 0.3, 0.0) == pytest.approx(0.3 * 1.0507**2 * (1 + 1.6733**2) / 2, rel=1e-4)
    assert fixed_point_q("linear", 1.0, 0.1) == math.inf


@pytest.mark.parametrize("name", ALL)
def test_fixed_point_is_a_fixed_point(name):
    q = fixed_point_q(name, 0.9, 0.1)
    assert math.isfinite(q) and q > 0
    assert length_map(q, name, 0.9, 0.1) == pytest.approx(q, rel=1e-12)


def test_fixed_point_matches_plain_iteration_and_vectorizes():
    sw = np.array([0.7, 1.5, 2.5, 4.0])
    got = fixed_point_q("tanh", sw, 0.05)
    assert got.shape == (4,)
    q = np.ones(4)
    for _ in range(120):
        q = length_map(q, "tanh", sw, 0.05)
    np.testing.assert_allclose(got, q, rtol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_length_map_is_nondecreasing(name):
    """fixed_point_q relies on it: the iteration moves monotonically toward q*."""
    v = np.asarray(second_moment(name, Q_GRID))
    assert np.all(np.diff(v) >= -1e-14 * v[1:])


@pytest.mark.parametrize("name", ALL)
def test_length_map_slope_is_the_derivative(name):
    """Schoenholz eq. 5 (Stein's lemma), against a finite difference of the length map."""
    q, h = 0.8, 1e-5
    fd = (length_map(q + h, name, 1.4, 0.1) - length_map(q - h, name, 1.4, 0.1)) / (2 * h)
    assert length_map_slope(q, name, 1.4, 0.1) == pytest.approx(fd, abs=1e-8)


@pytest.mark.parametrize("name", ["tanh", "relu", "selu", "gelu", "sigmoid"])
def test_correlation_map_slope_at_one_is_chi1(name):
    q = fixed_point_q(name, 1.4, 0.1)
    assert correlation_map(1.0, name, 1.4, 0.1) == pytest.approx(1.0, abs=1e-12)
    assert chi_c(name, 1.4, 0.1, c=1.0) == pytest.approx(chi1(name, 1.4, 0.1), abs=1e-12)
    h = 1e-4
    fd = (correlation_map(1.0, name, 1.4, 0.1) - correlation_map(1 - h, name, 1.4, 0.1)) / h
    assert fd == pytest.approx(chi1(name, 1.4, 0.1, q=q), rel=2e-2)  # one-sided difference


def test_chaotic_correlation_fixed_point():
    c_star = fixed_point_c("tanh", 3.0, 0.05)
    assert 0 < c_star < 1
    assert correlation_map(c_star, "tanh", 3.0, 0.05) == pytest.approx(c_star, abs=1e-10)
    assert chi_c("tanh", 3.0, 0.05, c=c_star) < 1  # stable
    assert fixed_point_c("tanh", 2.0, 0.0) == 0.0  # odd phi, no bias: C(0) = 0
    assert fixed_point_c("tanh", 1.5, 0.05) == 1.0  # ordered


def test_xi_c_diverges_at_the_edge_from_both_sides():
    crit = critical_sigma_w2("tanh", 0.05)
    below = [xi_c("tanh", crit - d, 0.05) for d in (0.3, 0.1, 0.01)]
    above = [xi_c("tanh", crit + d, 0.05) for d in (0.3, 0.1, 0.01)]
    assert below == sorted(below) and above == sorted(above)
    assert below[-1] > 50 and above[-1] > 50 and below[0] < 25 and above[0] < 25
    assert xi_c("relu", 2.0, 0.0) == math.inf
    assert max_trainable_depth("tanh", crit - 0.1, 0.05) == pytest.approx(6 * below[1])


def test_xi_values():
    assert xi_c("relu", 1.5, 0.1) == pytest.approx(-1 / math.log(0.75), rel=1e-12)
    assert xi_q("relu", 1.5, 0.1) == pytest.approx(-1 / math.log(0.75), rel=1e-12)
    assert xi_q("relu", 2.0, 0.0) == math.inf
    assert xi_q("tanh", 0.5, 0.0) == pytest.approx(-1 / math.log(0.5), rel=1e-9)
    assert xi_c("relu", 3.0, 0.0) == pytest.approx(1 / math.log(1.5))  # q* = inf convention


def test_predicted_variances_tanh_std_005_decays_and_relu_he_is_constant():
    fan_in = 256
    q = predicted_variances("tanh", 0.05**2 * fan_in, 0.0, depth=20, q0=1.0)
    assert q.shape == (20,)
    assert np.all(np.diff(q) < 0) and q[-1] < 1e-3 * q[0]
    r = predicted_variances("relu", 2.0, 0.0, depth=20, q0=1.0)
    np.testing.assert_allclose(r, 2.0, rtol=1e-12)  # q_1 = sigma_w² q0, then L(q) = q
    rb = predicted_variances("relu", 2.0, 0.1, depth=5, q0=1.0)
    np.testing.assert_allclose(rb, 2.1 + 0.1 * np.arange(5), rtol=1e-12)
    assert predicted_variances("relu", 2.0, 0.0, 2, 1.0, raw_input=False)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ALL)
def test_analyze_every_activation_is_json_ready(name):
    result = analyze(name, 1.5, 0.05)
    keys = {"q_star", "chi1", "xi_q", "xi_c", "critical_sigma_w2", "max_trainable_depth"}
    assert keys | {"phase", "c_star", "chi_c"} <= set(result)
    assert result["phase"] in {"ordered", "chaotic", "critical", "exploding"}
    assert all(isinstance(result[k], float) for k in keys)
    assert json.loads(json.dumps(result))["phase"] == result["phase"]


def test_analyze_diverging_case():
    result = analyze("relu", 3.0, 0.0)
    assert result["q_star"] == math.inf and result["c_star"] is None
    # no fixed point: ReLU's correlation map does not depend on sigma_w2, so it is not chaos
    assert result["chi1"] == pytest.approx(1.5) and result["phase"] == "exploding"
    assert analyze("linear", 1.5, 0.0)["phase"] == "exploding"
    # ReLU below its edge at sigma_b2 = 0: q* = 0, chi_c(1) = 1 at every q, only the scale vanishes
    assert analyze("relu", 1.5, 0.0)["phase"] == "vanishing"


def test_bad_inputs():
    with pytest.raises(UnknownNameError):
        chi1("tanhh", 1.0, 0.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(InitlabError):
            fixed_point_q("tanh", bad, 0.0)
        with pytest.raises(InitlabError):
            analyze("tanh", 1.0, bad)
    with pytest.raises(InitlabError):
        predicted_variances("tanh", 1.0, 0.0, depth=0)
    with pytest.raises(InitlabError):
        predicted_variances("tanh", 1.0, 0.0, depth=3, q0=-1.0)
    with pytest.raises(InitlabError):
        correlation_map(1.5, "tanh", 1.0, 0.05)
    with pytest.raises(InitlabError):
        correlation_map(0.5, "relu", 3.0, 0.0)  # q* = inf
