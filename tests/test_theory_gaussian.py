"""Gaussian expectations: exact for kinked activations, against closed forms and scipy.quad."""

import math

import numpy as np
import pytest
from scipy import integrate

from initlab import activations
from initlab.errors import InitlabError, UnknownNameError
from initlab.theory import chi1, gaussian_expectation, gaussian_expectation_2d
from initlab.theory.gaussian import activation_fn, derivative_jump

relu, drelu = activation_fn("relu"), activation_fn("relu", 1)


@pytest.mark.parametrize("q", [0.0, 1e-6, 0.37, 1.0, 5.0, 1e4])
def test_second_moments_closed_form(q):
    assert gaussian_expectation(lambda x: x**2, q) == pytest.approx(q, rel=1e-13, abs=1e-300)
    assert gaussian_expectation(lambda x: relu(x) ** 2, q) == pytest.approx(q / 2, rel=1e-13)


def test_relu_derivative_moment_is_exactly_half():
    assert gaussian_expectation(lambda x: drelu(x) ** 2, 1.0) == pytest.approx(0.5, abs=1e-14)
    assert abs(chi1("relu", 2.0, 0.0) - 1.0) < 1e-9


def test_a_plain_hermite_rule_would_fail_here():
    """The reason for the split rule: Gauss–Hermite converges slowly across the kink."""
    x, w = np.polynomial.hermite_e.hermegauss(41)
    w = w / math.sqrt(2 * math.pi)
    exact_mean = 1 / math.sqrt(2 * math.pi)  # E[relu(z)]
    assert abs(np.dot(w, relu(x)) - exact_mean) > 1e-3  # 41 nodes: 8e-3 off
    assert abs(np.dot(w, drelu(x) ** 2) - 0.5) > 1e-2  # node at the kink: 0.097 off
    assert gaussian_expectation(relu, 1.0) == pytest.approx(exact_mean, abs=1e-15)


def _quad_reference(f, q):
    def integrand(z):
        return f(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    left = integrate.quad(integrand, -np.inf, 0, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
    right = integrate.quad(integrand, 0, np.inf, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
    return left + right


@pytest.mark.parametrize("q", [0.05, 1.0, 2.5, 30.0])
def test_tanh_moments_against_scipy_quad(q):
    def tanh2(x):
        return math.tanh(x) ** 2

    def dtanh2(x):
        return (1 - math.tanh(x) ** 2) ** 2

    t = activation_fn("tanh")
    assert gaussian_expectation(lambda x: t(x) ** 2, q) == pytest.approx(
        _quad_reference(tanh2, q), rel=1e-11
    )
    dt = activation_fn("tanh", 1)
    assert gaussian_expectation(lambda x: dt(x) ** 2, q) == pytest.approx(
        _quad_reference(dtanh2, q), rel=1e-11
    )


def test_vectorized_over_q():
    q = np.array([[0.5, 1.0], [2.0, 4.0]])
    got = gaussian_expectation(lambda x: relu(x) ** 2, q)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, q / 2, rtol=1e-13)


@pytest.mark.parametrize("c", [-0.9, 0.0, 0.4, 0.95, 0.9999, 1.0])
def test_relu_2d_matches_arc_cosine_kernel(c):
    q = 1.7
    kernel = q / (2 * math.pi) * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c)
    assert gaussian_expectation_2d(relu, q, q, c * q) == pytest.approx(kernel, abs=1e-13)
    step = (math.pi - math.acos(c)) / (2 * math.pi)  # E[relu'(u1) relu'(u2)]
    assert gaussian_expectation_2d(drelu, q, q, c * q) == pytest.approx(step, abs=1e-13)


def test_2d_unequal_variances_against_dblquad():
    q1, q2, c = 2.0, 0.7, 0.6
    s = math.sqrt(1 - c * c)

    def integrand(z2, z1):
        u2 = math.sqrt(q2) * (c * z1 + s * z2)
        return math.tanh(math.sqrt(q1) * z1) * math.tanh(u2) * math.exp(-(z1**2 + z2**2) / 2)

    ref = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-13)[0] / (2 * math.pi)
    got = gaussian_expectation_2d(activation_fn("tanh"), q1, q2, c * math.sqrt(q1 * q2))
    assert got == pytest.approx(ref, abs=1e-11)


def test_2d_at_full_correlation_reduces_to_1d():
    t = activation_fn("tanh")
    assert gaussian_expectation_2d(t, 1.3, 1.3, 1.3) == pytest.approx(
        gaussian_expectation(lambda x: t(x) ** 2, 1.3), abs=1e-14
    )


@pytest.mark.parametrize("name", activations.names())
def test_autograd_derivatives_match_finite_differences(name):
    x = np.array([-2.3, -0.7, -0.01, 0.02, 0.6, 1.9])
    phi, d1, d2 = (activation_fn(name, k) for k in range(3))
    h = 1e-5
    np.testing.assert_allclose(d1(x), (phi(x + h) - phi(x - h)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(d2(x), (d1(x + h) - d1(x - h)) / (2 * h), atol=1e-6)


def test_derivative_jumps_at_the_kink():
    assert derivative_jump("relu") == pytest.approx(1.0)
    assert derivative_jump("leaky_relu") == pytest.approx(0.99)
    assert derivative_jump("selu") == pytest.approx(1.0507009873554805 * (1 - 1.6732632423543772))
    for smooth in ("tanh", "sigmoid", "gelu", "silu", "softplus", "elu", "softsign", "linear"):
        assert derivative_jump(smooth) == 0.0


def test_bad_inputs():
    with pytest.raises(InitlabError):
        gaussian_expectation(np.square, -1.0)
    with pytest.raises(InitlabError):
        gaussian_expectation(np.square, math.inf)
    with pytest.raises(InitlabError):
        gaussian_expectation_2d(np.tanh, 1.0, 1.0, 1.5)  # |c| > 1
    with pytest.raises(InitlabError):
        gaussian_expectation_2d(np.tanh, -1.0, 1.0, 0.0)
    with pytest.raises(UnknownNameError):
        activation_fn("tanhh")
