"""The correlation map: how two inputs' pre-activations (de)correlate with depth.

Two inputs whose pre-activations have variance q and correlation c at layer l have, at layer
l + 1 (Poole et al. 2016, Schoenholz et al. 2017)::

    c_{l+1} = C(c_l) = (sigma_w² E[phi(u1) phi(u2)] + sigma_b²) / L(q)
              (u1, u2) ~ N(0, q [[1, c], [c, 1]]),   L(q) = the length map (= q at q = q*)

``C(1) = 1`` always. By Price's theorem ``d/dc E[phi(u1) phi(u2)] = q E[phi'(u1) phi'(u2)]``,
so the slope is::

    chi_c(c) = C'(c) = sigma_w² q E[phi'(u1) phi'(u2)] / L(q),    chi_c(1) = chi1 at q = q*

``C`` is increasing and convex on [0, 1] (its Taylor coefficients in c are squared Hermite
coefficients), so it has at most one fixed point ``c* < 1`` there: none when chi1 <= 1
(``c* = 1`` attracts: inputs converge, the ordered phase), one stable ``c* < 1`` with
``chi_c(c*) < 1`` when chi1 > 1 (inputs decorrelate to c*, the chaotic phase).

A positively homogeneous activation (``phi(a x) = a phi(x)`` for ``a > 0``: relu, leaky relu,
linear) with ``sigma_b² = 0`` has ``E[phi(u1) phi(u2)] = q E[phi(z1) phi(z2)]`` and
``L(q) = sigma_w² q E[phi(z)²]``: ``C`` depends on neither q nor sigma_w², and
``chi_c(1) = E[phi'(z)²] / E[phi(z)²] = 1`` (ReLU: ½ / ½). Its map at ``q* = 0`` (sigma_w² < 2
for ReLU) is then the q → 0⁺ limit, the map at any q > 0 (:func:`scale_free`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from initlab.errors import InitlabError
from initlab.theory import _checks
from initlab.theory.gaussian import activation_fn, gaussian_expectation_2d
from initlab.theory.meanfield import fixed_point_q, length_map

C_SCAN = np.concatenate([[0.0, 0.5], 1.0 - np.logspace(-1.0, -8.0, 8)])
"""Correlations scanned (ascending) to bracket the chaotic fixed point c*."""


HOMOGENEITY_POINTS = np.array([-3.0, -1.0, -0.25, 0.25, 1.0, 3.0])
"""Where :func:`scale_free` checks ``phi(2x) = 2 phi(x)``."""


def scale_free(activation: str, sigma_b2: float) -> bool:
    """Whether the correlation map does not depend on q: ``sigma_b² = 0`` and phi positively
    homogeneous (``phi(2x) = 2 phi(x)`` on :data:`HOMOGENEITY_POINTS`; module docstring)."""
    if sigma_b2 != 0.0:
        return False
    phi = activation_fn(_checks.canonical(activation))
    x = HOMOGENEITY_POINTS
    return bool(np.allclose(phi(2.0 * x), 2.0 * phi(x), rtol=1e-12, atol=1e-15))


def _variance(activation: str, sigma_w2: float, sigma_b2: float, q: float | None) -> float:
    """``q`` (default ``q*``), checked to give a defined map: ``0 < q < inf`` and ``L(q) > 0``;
    ``q = 0`` of a map that does not depend on q (:func:`scale_free`) is its q → 0⁺ limit,
    computed at q = 1."""
    if q is None:
        q = float(fixed_point_q(activation, sigma_w2, sigma_b2))
    q = float(_checks.nonnegative("q", q, allow_inf=True))
    if q == 0.0 and sigma_w2 > 0.0 and scale_free(activation, sigma_b2):
        return 1.0
    if not math.isfinite(q):
        raise InitlabError(
            "the correlation map needs a finite variance: the length map diverges here "
            "(q* = inf); pass q explicitly"
        )
    if q == 0.0 or float(length_map(q, activation, sigma_w2, sigma_b2)) == 0.0:
        raise InitlabError("the correlation map is 0/0 at q = 0 (q* = 0 here); pass q > 0")
    return q


def _check_correlation(c: np.ndarray) -> None:
    if np.any(np.isnan(c)) or np.any(np.abs(c) > 1.0):
        raise InitlabError(f"a correlation must lie in [-1, 1], got {c}")


def correlation_map(
    c: float | np.ndarray,
    activation: str,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    q: float | None = None,
) -> float | np.ndarray:
    """``C(c) = (sigma_w² E[phi(u1) phi(u2)] + sigma_b²) / L(q)``, ``u ~ N(0, q [[1, c], [c, 1]])``.

    ``q`` defaults to the fixed point ``q*`` (then ``L(q) = q``). Vectorized over ``c``
    (a loop of 2-D quadratures, ~15 ms each). Raises when ``q* = 0`` or ``inf``.
    """
    q = _variance(activation, sigma_w2, sigma_b2, q)
    ca = np.asarray(c, dtype=np.float64)
    _check_correlation(ca)
    phi = activation_fn(_checks.canonical(activation))
    norm = float(length_map(q, activation, sigma_w2, sigma_b2))
    flat = [
        (sigma_w2 * gaussian_expectation_2d(phi, q, q, ci * q) + sigma_b2) / norm
        for ci in ca.reshape(-1)
    ]
    return _checks.scalar_or_array(np.array(flat).reshape(ca.shape), c)


def chi_c(
    activation: str,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    c: float = 1.0,
    q: float | None = None,
) -> float:
    """``chi_c(c) = sigma_w² q E[phi'(u1) phi'(u2)] / L(q)``: the slope of the correlation map.

    At ``c = 1`` and ``q = q*`` it equals :func:`initlab.theory.chi1`.
    """
    q = _variance(activation, sigma_w2, sigma_b2, q)
    _check_correlation(np.asarray(c, dtype=np.float64))
    dphi = activation_fn(_checks.canonical(activation), 1)
    norm = float(length_map(q, activation, sigma_w2, sigma_b2))
    return float(sigma_w2 * q * gaussian_expectation_2d(dphi, q, q, c * q) / norm)


def fixed_point_c(
    activation: str, sigma_w2: float, sigma_b2: float = 0.0, q: float | None = None
) -> float:
    """The stable fixed point ``c*`` of the correlation map in [0, 1].

    ``1.0`` in the ordered phase and at the edge of chaos (no crossing of ``C(c) = c`` below 1
    on :data:`C_SCAN`, i.e. none farther than 1e-8 from 1); otherwise the unique root of
    ``C(c) - c`` in [0, 1), bracketed on the scan and polished with Brent's method (``0.0``
    exactly when ``C(0) = 0``, e.g. tanh with ``sigma_b2 = 0``).
    """
    q = _variance(activation, sigma_w2, sigma_b2, q)
    previous = 0.0
    for k, c in enumerate(C_SCAN):
        gap = float(correlation_map(c, activation, sigma_w2, sigma_b2, q)) - c
        if gap <= 0.0:
            if k == 0 or gap == 0.0:
                return float(c)

            def excess(x: float) -> float:
                return float(correlation_map(x, activation, sigma_w2, sigma_b2, q)) - x

            return float(brentq(excess, previous, float(c), xtol=1e-13, rtol=1e-13))
        previous = float(c)
    return 1.0
