"""Mean-field signal propagation through a deep random network (Poole et al. 2016).

Layers ``z_l = W_l phi(z_{l-1}) + b_l`` with ``W_ij ~ (0, sigma_w² / fan_in)`` and
``b_i ~ (0, sigma_b²)`` iid. For infinite width every pre-activation is Gaussian with variance
``q_l``, which obeys the *length map*::

    q_l = L(q_{l-1}) = sigma_w² E_z[phi(sqrt(q_{l-1}) z)²] + sigma_b²,    z ~ N(0, 1)

The map is iterated to its fixed point ``q* = L(q*)``; the slope of the correlation map at
``c = 1`` — equivalently the mean squared singular value of the layer Jacobian — is::

    chi1 = sigma_w² E_z[phi'(sqrt(q*) z)²]

``chi1 < 1``: ordered phase (nearby inputs converge, gradients vanish like chi1**depth);
``chi1 > 1``: chaotic phase (nearby inputs decorrelate, gradients explode); ``chi1 = 1``: the
edge of chaos, reached at :func:`critical_sigma_w2`. Expectations use
:mod:`initlab.theory.gaussian`. Every function is vectorized over its float arguments
(numpy broadcasting) and returns a float when all of them are scalars.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from initlab.theory import _checks
from initlab.theory.gaussian import activation_fn, derivative_at_infinity, gaussian_expectation

Q_MAX = 1e12
"""Fixed points beyond this variance are reported as ``math.inf`` (the length map diverges)."""
Q_GRID = np.concatenate([[0.0], np.logspace(-12.0, 12.0, 241)])
"""Variances on which the length map is scanned for a sign change of ``L(q) - q``."""
MARGINAL_RTOL = 1e-12
"""``|L(q0) - q0| <= MARGINAL_RTOL * q0`` makes ``q0`` itself the fixed point (marginal maps)."""
_TINY_Q = 1e-300  # phi' at sqrt(q) z with q -> 0+: the one-sided limit, not phi'(0)


def second_moment(activation: str, q: float | np.ndarray) -> float | np.ndarray:
    """``V(q) = E_z[phi(sqrt(q) z)²]``; ``q = inf`` gives the limit (inf for unbounded phi)."""
    name = _checks.canonical(activation)
    qa = _checks.nonnegative("q", q, allow_inf=True)
    phi = activation_fn(name)
    out = np.empty(qa.shape)
    finite = np.isfinite(qa)
    out[finite] = gaussian_expectation(lambda x: phi(x) ** 2, qa[finite])
    if not finite.all():
        slopes = derivative_at_infinity(name)
        ends = phi(np.array([-1e6, 1e6]))
        out[~finite] = math.inf if any(slopes) else float(np.mean(ends**2))
    return _checks.scalar_or_array(out, q)


def derivative_moment(activation: str, q: float | np.ndarray) -> float | np.ndarray:
    """``E_z[phi'(sqrt(q) z)²]``; ``q = 0`` and ``q = inf`` give the one-sided limits.

    At ``q -> 0+`` a kinked phi contributes ``(phi'(0-)² + phi'(0+)²) / 2`` (ReLU: 1/2, not
    ``relu'(0)² = 0``); at ``q -> inf`` the asymptotic slopes ``(phi'(-inf)² + phi'(inf)²) / 2``.
    """
    name = _checks.canonical(activation)
    qa = _checks.nonnegative("q", q, allow_inf=True)
    dphi = activation_fn(name, 1)
    out = np.empty(qa.shape)
    finite = np.isfinite(qa)
    q_safe = np.maximum(qa[finite], _TINY_Q)
    out[finite] = gaussian_expectation(lambda x: dphi(x) ** 2, q_safe)
    out[~finite] = float(np.mean(np.square(derivative_at_infinity(name))))
    return _checks.scalar_or_array(out, q)


def length_map(
    q: float | np.ndarray, activation: str, sigma_w2: float, sigma_b2: float = 0.0
) -> float | np.ndarray:
    """``L(q) = sigma_w² E_z[phi(sqrt(q) z)²] + sigma_b²``: the next layer's variance."""
    sw = _checks.nonnegative("sigma_w2", sigma_w2)
    sb = _checks.nonnegative("sigma_b2", sigma_b2)
    out = sw * np.asarray(second_moment(activation, q)) + sb
    return _checks.scalar_or_array(out, q, sigma_w2, sigma_b2)


def _grid_moments_at(name: str, q: np.ndarray) -> np.ndarray:
    return np.asarray(second_moment(name, q)).reshape(q.shape)


@functools.cache
def _grid_moments(name: str) -> np.ndarray:
    return np.asarray(second_moment(name, Q_GRID))


def _illinois(
    g: Callable[[np.ndarray, np.ndarray], np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    rtol: float = 1e-14,
    maxiter: int = 200,
) -> np.ndarray:
    """Vectorized Illinois (modified regula falsi) root of ``g(x, idx)`` in brackets ``[a, b]``.

    ``g(x, idx)`` evaluates the functions of rows ``idx`` at ``x``; each bracket must contain a
    sign change. Stops when the bracket is ``rtol``-narrow or ``g(b) == 0``; returns ``b``.
    """
    a, b = a.astype(np.float64).copy(), b.astype(np.float64).copy()
    everyone = np.arange(a.size)
    fa, fb = g(a, everyone), g(b, everyone)
    for _ in range(maxiter):
        active = (fb != 0) & (np.abs(b - a) > rtol * np.maximum(np.abs(a), np.abs(b)) + 1e-300)
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        ai, bi, fai, fbi = a[idx], b[idx], fa[idx], fb[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = bi - fbi * (bi - ai) / (fbi - fai)
        inside = (c > np.minimum(ai, bi)) & (c < np.maximum(ai, bi))
        c = np.where(inside, c, 0.5 * (ai + bi))
        fc = g(c, idx)
        flip = np.sign(fc) != np.sign(fbi)
        a[idx], fa[idx] = np.where(flip, bi, ai), np.where(flip, fbi, 0.5 * fai)
        b[idx], fb[idx] = c, fc
    return b


def _brackets(
    name: str, sw: np.ndarray, sb: np.ndarray, q0: np.ndarray, g0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brackets ``[lo, hi]`` of the fixed point the iteration from ``q0`` converges to.

    L is nondecreasing in q for every registry activation, so ``q_l`` moves monotonically
    toward the first zero of ``g(q) = L(q) - q`` on the side where ``g(q0)`` points; that zero
    is found on :data:`Q_GRID`. Returns ``(lo, hi, settled)`` where ``settled`` holds a final
    value (``inf``: no zero below :data:`Q_MAX`; a grid zero) or NaN where a root-find remains.
    """
    grid = sw[:, None] * _grid_moments(name)[None, :] + sb[:, None] - Q_GRID[None, :]
    n, last = q0.size, Q_GRID.size - 1
    lo, hi, settled = np.zeros(n), np.zeros(n), np.full(n, np.nan)
    up_hits = (Q_GRID[None, :] > q0[:, None]) & (grid <= 0)
    j_up = np.argmax(up_hits, axis=1)
    down_hits = (Q_GRID[None, :] < q0[:, None]) & (grid >= 0)
    j_down = last - np.argmax(down_hits[:, ::-1], axis=1)
    up, down = g0 > 0, g0 < 0
    settled[up & ~up_hits.any(axis=1)] = math.inf
    hi[up], lo[up] = Q_GRID[j_up[up]], np.maximum(q0[up], Q_GRID[np.maximum(j_up[up] - 1, 0)])
    lo[down] = Q_GRID[j_down[down]]
    hi[down] = np.minimum(q0[down], Q_GRID[np.minimum(j_down[down] + 1, last)])
    exact = down & (grid[np.arange(n), j_down] == 0)
    settled[exact] = lo[exact]
    settled[~up & ~down] = q0[~up & ~down]
    return lo, hi, settled


def fixed_point_q(
    activation: str, sigma_w2: float, sigma_b2: float = 0.0, q0: float = 1.0
) -> float | np.ndarray:
    """The fixed point ``q* = L(q*)`` that the length map reaches when iterated from ``q0``.

    Found robustly, not by iterating: the monotone map ``L`` sends ``q0`` toward the first
    zero of ``L(q) - q`` in the direction of ``L(q0) - q0``; that zero is bracketed on a log
    grid of q and polished by a vectorized Illinois root-find (relative accuracy ~1e-14).
    Conventions: ``math.inf`` when the map diverges (no fixed point up to :data:`Q_MAX`, e.g.
    ReLU with ``sigma_w2 > 2``); ``q0`` itself when ``|L(q0) - q0| <= 1e-12 q0`` — the
    marginal case where every q is fixed (ReLU at ``sigma_w2 = 2, sigma_b2 = 0``; linear at
    ``sigma_w2 = 1, sigma_b2 = 0``). Vectorized over all three float arguments.
    """
    name = _checks.canonical(activation)
    sw, sb, q = np.broadcast_arrays(
        _checks.nonnegative("sigma_w2", sigma_w2),
        _checks.nonnegative("sigma_b2", sigma_b2),
        _checks.nonnegative("q0", q0),
    )
    shape = sw.shape
    sw, sb, q = (np.ascontiguousarray(x).reshape(-1) for x in (sw, sb, q))
    lq = sw * _grid_moments_at(name, q) + sb
    g0 = np.where(np.abs(lq - q) <= MARGINAL_RTOL * q, 0.0, lq - q)
    lo, hi, settled = _brackets(name, sw, sb, q, g0)
    todo = np.flatnonzero(np.isnan(settled))
    if todo.size:

        def g(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
            rows = todo[idx]
            return sw[rows] * _grid_moments_at(name, x) + sb[rows] - x

        settled[todo] = _illinois(g, lo[todo], hi[todo])
    return _checks.scalar_or_array(settled.reshape(shape), sigma_w2, sigma_b2, q0)


def chi1(
    activation: str, sigma_w2: float, sigma_b2: float = 0.0, q: float | None = None
) -> float | np.ndarray:
    """``chi1 = sigma_w² E_z[phi'(sqrt(q) z)²]`` at ``q = q*`` (or at the given ``q``).

    ``q*`` is :func:`fixed_point_q` from ``q0 = 1``. Where ``q* = inf`` the ``q -> inf``
    limit is used (ReLU: ``sigma_w² / 2`` for every q). ``chi1(relu, 2, 0) == 1``.
    """
    if q is None:
        q = fixed_point_q(activation, sigma_w2, sigma_b2)
    sw = _checks.nonnegative("sigma_w2", sigma_w2)
    _checks.nonnegative("sigma_b2", sigma_b2)
    out = sw * np.asarray(derivative_moment(activation, q))
    return _checks.scalar_or_array(out, sigma_w2, sigma_b2, q)


SIGMA_W2_SCAN = np.logspace(-2.0, 4.0, 121)
"""The sigma_w² values scanned for the first crossing of ``chi1 = 1``."""


@functools.lru_cache(maxsize=4096)
def _critical(name: str, sigma_b2: float) -> float:
    chis = np.asarray(chi1(name, SIGMA_W2_SCAN, sigma_b2))
    above = np.flatnonzero(chis >= 1.0)
    if above.size == 0:
        return math.inf
    k = int(above[0])
    if k == 0 or chis[k] == 1.0:
        return float(SIGMA_W2_SCAN[k])
    lo, hi = float(SIGMA_W2_SCAN[k - 1]), float(SIGMA_W2_SCAN[k])
    root = brentq(lambda s: float(chi1(name, s, sigma_b2)) - 1.0, lo, hi, xtol=1e-14, rtol=1e-14)
    return float(root)


def critical_sigma_w2(activation: str, sigma_b2: float = 0.0) -> float:
    """The edge of chaos: the smallest ``sigma_w²`` with ``chi1(sigma_w², sigma_b²) = 1``.

    The scan :data:`SIGMA_W2_SCAN` (1e-2 ... 1e4) brackets the first crossing, Brent's method
    polishes it (~1e-13). ``math.inf`` if chi1 stays below 1 on the scan. Reference values:
    tanh 1 at ``sigma_b2 = 0`` and ≈ 1.7609 at 0.05 (Schoenholz et al. 2017); ReLU 2 for
    every ``sigma_b2``; linear 1. ``sqrt`` of it is :func:`initlab.theory.critical_gain`.
    Where chi1 jumps across 1 instead (gelu, silu: ``q*`` jumps from a finite value to inf),
    no sigma_w² has chi1 = 1 and this is the jump's position: :func:`edge_of_chaos` says which.
    """
    name = _checks.canonical(activation)
    sb = float(_checks.nonnegative("sigma_b2", sigma_b2))
    return _critical(name, sb)


JUMP_TOL = 1e-6
"""chi1 at :func:`critical_sigma_w2` farther than this from 1 means chi1 jumps there."""
JUMP_STEP = 1e-6
""":func:`edge_of_chaos` reads chi1 and q* this relative step below and above the edge."""


@dataclass(frozen=True)
class Edge:
    """Where the order-to-chaos transition of an activation sits (:func:`edge_of_chaos`).

    ``sigma_w2``: :func:`critical_sigma_w2` (inf: none up to 1e4). ``jump``: chi1 does not
    cross 1 continuously but jumps across it there (no sigma_w² has chi1 = 1). ``chi1_below``,
    ``chi1_above``, ``q_below``, ``q_above``: chi1 and ``q*`` (from ``q0 = 1``) a relative
    :data:`JUMP_STEP` below and above; ``chi1_at``, ``q_at``: at ``sigma_w2`` itself."""

    sigma_w2: float
    jump: bool
    chi1_below: float = math.nan
    chi1_at: float = math.nan
    chi1_above: float = math.nan
    q_below: float = math.nan
    q_at: float = math.nan
    q_above: float = math.nan


def edge_of_chaos(activation: str, sigma_b2: float = 0.0) -> Edge:
    """The transition at :func:`critical_sigma_w2`, and whether chi1 crosses 1 there.

    A continuous crossing has ``chi1 = 1`` at the returned sigma_w² (to ~1e-12; tanh, ReLU,
    sigmoid...). For gelu and silu the length map has an unstable fixed point, so the ``q*``
    reached from ``q0 = 1`` jumps (gelu at ``sigma_b² = 0``: from 0 to inf at sigma_w² =
    2.3517, where ``L(1) = 1``) and chi1 with it (0.588 → 1.18; 1.072 at the point itself,
    where ``q* = 1``): ``|chi1 - 1| > JUMP_TOL`` there marks the jump."""
    name = _checks.canonical(activation)
    sb = float(_checks.nonnegative("sigma_b2", sigma_b2))
    crit = _critical(name, sb)
    if not math.isfinite(crit):
        return Edge(sigma_w2=crit, jump=False)
    sides = np.array([crit * (1 - JUMP_STEP), crit, crit * (1 + JUMP_STEP)])
    qs = np.asarray(fixed_point_q(name, sides, sb))
    chis = np.asarray(chi1(name, sides, sb, q=qs))
    return Edge(
        sigma_w2=crit,
        jump=bool(abs(chis[1] - 1.0) > JUMP_TOL),
        chi1_below=float(chis[0]),
        chi1_at=float(chis[1]),
        chi1_above=float(chis[2]),
        q_below=float(qs[0]),
        q_at=float(qs[1]),
        q_above=float(qs[2]),
    )


def predicted_variances(
    activation: str,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    depth: int = 10,
    q0: float = 1.0,
    *,
    raw_input: bool = True,
) -> np.ndarray:
    """Pre-activation variances ``[q_1, ..., q_depth]`` of a finite-depth network.

    Convention (``raw_input=True``): the first layer is fed the raw input x, not phi(x), so
    ``q_1 = sigma_w² q0 + sigma_b²`` with ``q0 = mean_j(x_j²)`` (the per-coordinate second
    moment of the input); then ``q_l = L(q_{l-1})``. With ``raw_input=False`` ``q0`` is a
    pre-activation variance and ``q_1 = L(q0)``. Pre-activation "variance" is the second
    moment ``E[z²]`` over weights (and inputs): compare it with ``mean(z**2)`` over units.
    """
    depth = _checks.positive_int("depth", depth)
    sw = float(_checks.nonnegative("sigma_w2", sigma_w2))
    sb = float(_checks.nonnegative("sigma_b2", sigma_b2))
    q = float(_checks.nonnegative("q0", q0))
    out = np.empty(depth)
    out[0] = sw * q + sb if raw_input else length_map(q, activation, sw, sb)
    for layer in range(1, depth):
        out[layer] = length_map(out[layer - 1], activation, sw, sb)
    return out
