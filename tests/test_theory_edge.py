"""Where chi1 crosses 1 and where it jumps across it; the gradients' depth scale xi_grad.

``initlab theory --activation gelu`` said "edge of chaos at sigma_w² = 2.352 (chi_1 = 1)" above
a row at 2.352 with chi1 = 1.072: for gelu and silu no sigma_w² has chi1 = 1 (q* jumps from 0
to inf, docs/theory.md, "Activation notes")."""

from __future__ import annotations

import math

import pytest

from initlab import activations, theory
from initlab.cli import main

JUMPS = ("gelu", "silu")


@pytest.mark.parametrize("sigma_b2", [0.0, 0.05])
@pytest.mark.parametrize("name", activations.names())
def test_the_edge_is_a_crossing_except_for_gelu_and_silu(name, sigma_b2):
    edge = theory.edge_of_chaos(name, sigma_b2)
    assert edge.sigma_w2 == theory.critical_sigma_w2(name, sigma_b2)
    assert edge.chi1_below < 1 < edge.chi1_above
    if name in JUMPS:
        assert edge.jump and abs(edge.chi1_at - 1) > 0.01
        assert edge.chi1_above - edge.chi1_below > 0.3  # a jump, not a steep crossing
        assert edge.q_above == math.inf and edge.q_below < 1 < edge.q_above
    else:
        assert not edge.jump and edge.chi1_at == pytest.approx(1.0, abs=1e-9)


def test_gelus_jump_is_where_the_length_map_fixes_q0():
    edge = theory.edge_of_chaos("gelu", 0.0)
    assert edge.sigma_w2 == pytest.approx(theory.numeric_gain("gelu") ** 2, rel=1e-9)  # L(1) = 1
    assert edge.q_at == pytest.approx(1.0, rel=1e-9) and edge.q_below == 0.0
    # below: q* = 0, chi1 = sigma_w² gelu'(0)² = sigma_w² / 4; above: q* = inf, sigma_w² / 2
    assert edge.chi1_below == pytest.approx(edge.sigma_w2 / 4, rel=1e-5)
    assert edge.chi1_above == pytest.approx(edge.sigma_w2 / 2, rel=1e-5)
    assert edge.chi1_at == pytest.approx(theory.analyze("gelu", edge.sigma_w2)["chi1"])


@pytest.mark.parametrize("name", JUMPS)
def test_the_theory_header_does_not_claim_chi1_is_1_at_a_jump(name, capsys):
    assert main(["theory", "--activation", name]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    header = out.split("mean-field predictions")[0]
    edge = theory.edge_of_chaos(name)
    assert "(chi_1 = 1)" not in header and "edge of chaos at" not in header
    assert "no sigma_w² gives chi_1 = 1" in header
    assert f"at sigma_w² = {edge.sigma_w2:.4g}" in header
    assert f"chi_1 jumps from {edge.chi1_below:.3g} to {edge.chi1_above:.3g}" in header
    assert f"({edge.chi1_at:.4g} at that sigma_w² itself" in header  # the table's row at 1×


def test_the_theory_header_of_a_crossing(capsys):
    assert main(["theory", "--activation", "tanh", "--sigma-b2", "0.05"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "edge of chaos at sigma_w² = 1.761 (chi_1 = 1)" in out and "jump" not in out
    assert "xi_grad" in out


def test_xi_grad_and_the_gradient_factor():
    x1 = theory.chi1("tanh", 25 / 9)
    assert theory.xi_grad("tanh", 25 / 9) == pytest.approx(1 / math.log(x1), rel=1e-12)
    assert theory.gradient_factor(x1, 49) == pytest.approx(x1**24.5, rel=1e-12)
    assert theory.gradient_factor(0.25, 4) == pytest.approx(1 / 16, rel=1e-12)
    assert theory.gradient_factor(3.0, 0) == 1.0
    assert theory.gradient_scale(1.0) == math.inf and theory.gradient_scale(0.0) == 0.0
    assert theory.xi_grad("relu", 4.0, 0.0) == pytest.approx(1 / math.log(2.0), rel=1e-12)
    assert theory.xi_grad("relu", 2.0, 0.0) == math.inf


def test_xi_grad_is_xi_c_where_ordered_and_shorter_where_chaotic():
    ordered = theory.analyze("tanh", 1.2, 0.05)
    assert ordered["phase"] == "ordered"
    assert ordered["xi_grad"] == pytest.approx(ordered["xi_c"], rel=1e-9)
    chaotic = theory.analyze("tanh", 25 / 9, 0.0)
    assert chaotic["phase"] == "chaotic" and chaotic["xi_grad"] < chaotic["xi_c"]
    assert chaotic["max_trainable_depth"] == pytest.approx(6 * chaotic["xi_c"])  # Schoenholz
    exploding = theory.analyze("relu", 4.0, 0.0)  # q* = inf: both are 1 / ln chi1
    assert exploding["max_trainable_depth"] == pytest.approx(6 * exploding["xi_grad"])


def _slope_by_quad(name: str, sigma_w2: float, q: float, h: float = 1e-4) -> float:
    """L'(q) by a central difference of L(q) = sigma_w² E[phi(sqrt(q) z)²] with scipy's quad,
    independent of initlab's quadrature (error ~h² + quad's 1e-10)."""
    import numpy as np
    from scipy.integrate import quad
    from scipy.special import expit, ndtr

    phi = {"gelu": lambda x: x * ndtr(x), "silu": lambda x: x * expit(x)}[name]

    def length(q: float) -> float:
        integrand = lambda z: phi(math.sqrt(q) * z) ** 2 * np.exp(-z * z / 2)  # noqa: E731
        return sigma_w2 * quad(integrand, -40, 40, epsabs=1e-13)[0] / math.sqrt(2 * math.pi)

    return (length(q + h) - length(q - h)) / (2 * h)


@pytest.mark.parametrize("name", JUMPS)
def test_the_gain_rules_variance_repels_for_gelu_and_silu(name):
    """A doctor's gelu plan at the gain rule still vanished over 30 layers: q = 1 is a fixed
    point there, but L'(1) > 1, so any deviation grows layer after layer."""
    sigma_w2 = theory.numeric_gain(name) ** 2
    q_u, slope = theory.scales.unstable_fixed_point(name, sigma_w2)
    assert q_u == pytest.approx(1.0, abs=1e-9)
    assert slope == pytest.approx(_slope_by_quad(name, sigma_w2, 1.0), abs=1e-5)
    assert slope > 1.1  # 1.144 (gelu), 1.173 (silu)
    low, high = (
        theory.predicted_variances(name, sigma_w2, 0.0, 30, q0=q0, raw_input=False)[-1]
        for q0 in (0.95, 1.05)
    )
    assert low < 0.1 and high > 4  # 5% off q_u at the input: far off it at layer 30


@pytest.mark.parametrize("name", [a for a in activations.names() if a not in JUMPS])
def test_other_activations_have_no_repelling_point_at_the_gain_rule(name):
    sigma_w2 = theory.numeric_gain(name) ** 2
    assert theory.scales.unstable_fixed_point(name, sigma_w2) is None
    assert theory.scales.unstable_fixed_point(name, sigma_w2, 0.05) is None


@pytest.mark.parametrize(("name", "factor", "sigma_b2"), [("gelu", 0.9, 0.0), ("silu", 1.1, 0.01)])
def test_a_repelling_point_off_q_1_is_found_too(name, factor, sigma_b2):
    """Measured weights are a little off the gain rule: the repelling point moves (gelu at
    0.9× the rule's sigma_w²: q = 2.74; silu at 1.1× with sigma_b² = 0.01: q = 0.50), out of
    a bracket of (0.5, 2) that missed them; it is the upward crossing of L(q) - q."""
    sigma_w2 = factor * theory.numeric_gain(name) ** 2
    q_u, slope = theory.scales.unstable_fixed_point(name, sigma_w2, sigma_b2)
    assert float(theory.length_map(q_u, name, sigma_w2, sigma_b2)) == pytest.approx(q_u, rel=1e-8)
    assert slope > 1 and not 0.5 < q_u < 2
