"""Gaussian expectations of (possibly non-smooth) activation functions.

Everything in :mod:`initlab.theory` reduces to two integrals::

    E_1[f](q)            = E_{z~N(0,1)}[ f(sqrt(q) z) ]
                         = ∫ f(sqrt(q) z) exp(-z²/2) / sqrt(2π) dz
    E_2[f, g](q11, q22, q12) = E[ f(u1) g(u2) ],   (u1, u2) ~ N(0, [[q11, q12], [q12, q22]])
                         with u1 = sqrt(q11) z1, u2 = sqrt(q22) (c z1 + sqrt(1 - c²) z2),
                         c = q12 / sqrt(q11 q22), z1, z2 iid N(0, 1).

Quadrature. Every activation of the registry is smooth except at x = 0 (the kink of ReLU /
leaky ReLU, the jump of phi' of SELU, of phi'' of ELU and softsign), so each integral is split
at the kink and each piece is integrated with composite Gauss–Legendre on panels:

* geometrically graded panels next to the kink (``1e-10 ... 1``, ratio ``10**(1/3)``), so
  that the O(1)-wide features of phi stay resolved when ``sqrt(q)`` is large (relative error
  ~1e-15 checked up to q = 1e14);
* unit-width panels out to ``|z| = 10`` for the Gaussian weight (the mass beyond is 1.5e-23).

A plain Gauss–Hermite rule would put nodes straddling the kink and converge only
algebraically; this rule is exact to ~1e-15 for ReLU-like integrands (e.g. ``E[relu'(z)²]``
is 1/2 to machine precision, so ``chi1(relu, 2, 0) == 1``).

Activations are evaluated with the registry's own torch functions on float64 tensors built
from numpy (``torch.from_numpy``), so theory and models can never disagree on phi. The
derivatives phi', phi'' come from ``torch.autograd`` (double backward) in float64 as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

import initlab.activations as activations
from initlab.errors import InitlabError

ArrayFn = Callable[[np.ndarray], np.ndarray]

Z_MAX = 10.0
"""Integration range in standard-normal units: P(|z| > 10) = 1.5e-23."""
GL_ORDER = 10
"""Gauss–Legendre nodes per panel."""
_GRADED = np.logspace(-10.0, 0.0, 31)  # panel breaks next to the kink
_UNIFORM = np.arange(2.0, Z_MAX + 0.5, 1.0)  # unit panels out to Z_MAX
_CHUNK = 2_000_000  # max quadrature points evaluated in one call of f


def _gl_panels(breaks: np.ndarray, order: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes/weights on the panels ``breaks[..., k:k+2]``.

    ``breaks`` has shape ``(..., P + 1)`` and is sorted along the last axis; the result has
    shape ``(..., P * order)``. Zero-length panels get zero weight.
    """
    x, w = np.polynomial.legendre.leggauss(order or GL_ORDER)
    lo, hi = breaks[..., :-1, None], breaks[..., 1:, None]
    half = (hi - lo) / 2.0
    nodes = (lo + hi) / 2.0 + half * x
    weights = half * w
    shape = (*breaks.shape[:-1], -1)
    return nodes.reshape(shape), np.broadcast_to(weights, nodes.shape).reshape(shape)


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


@functools.lru_cache(maxsize=1)
def standard_normal_rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``z`` and weights ``w`` with ``sum(w f(z)) ≈ E_{z~N(0,1)}[f(z)]``, split at 0.

    The panels are mirrored on both half-lines, so a function with a kink at 0 is smooth on
    every panel.
    """
    half = np.concatenate([[0.0], _GRADED, _UNIFORM])
    z, w = _gl_panels(half)
    z = np.concatenate([-z[::-1], z])
    w = np.concatenate([w[::-1], w]) * _normal_pdf(z)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def _check_variance(name: str, q: np.ndarray) -> None:
    if np.any(np.isnan(q)) or np.any(q < 0):
        raise InitlabError(f"{name} must be >= 0 (a variance), got {q}")


def gaussian_expectation(f: ArrayFn, q: float | np.ndarray = 1.0) -> float | np.ndarray:
    """``E_{z~N(0,1)}[f(sqrt(q) z)]``, vectorized over ``q``.

    ``f`` maps a float64 numpy array to an array of the same shape (elementwise). ``q`` is a
    variance (scalar or array, ``>= 0``); the result has the shape of ``q`` (a float for a
    scalar). ``q = inf`` is not integrable here: take the limit yourself.
    """
    qa = np.asarray(q, dtype=np.float64)
    _check_variance("q", qa)
    if np.any(np.isinf(qa)):
        raise InitlabError("q must be finite")
    z, w = standard_normal_rule()
    flat = qa.reshape(-1)
    out = np.empty(flat.shape)
    step = max(1, _CHUNK // z.size)
    for start in range(0, flat.size, step):
        s = np.sqrt(flat[start : start + step])[:, None]
        out[start : start + step] = np.asarray(f(s * z)) @ w
    return float(out[0]) if qa.ndim == 0 else out.reshape(qa.shape)


def _inner_breaks(t: np.ndarray) -> np.ndarray:
    """Panel breaks on [-Z_MAX, Z_MAX] for the inner variable: graded around the kink ``t``."""
    n = t.shape[0]
    graded = np.concatenate([-_GRADED[::-1], [0.0], _GRADED])
    uniform = np.arange(-Z_MAX, Z_MAX + 0.5, 1.0)
    breaks = np.concatenate(
        [t[:, None] + graded[None, :], np.broadcast_to(uniform, (n, uniform.size))], axis=1
    )
    return np.sort(np.clip(breaks, -Z_MAX, Z_MAX), axis=1)


def gaussian_expectation_2d(
    f: ArrayFn, q11: float, q22: float, q12: float, g: ArrayFn | None = None
) -> float:
    """``E[f(u1) g(u2)]`` for ``(u1, u2) ~ N(0, [[q11, q12], [q12, q22]])`` (``g`` defaults to f).

    Written as ``u1 = sqrt(q11) z1``, ``u2 = sqrt(q22) (c z1 + s z2)`` with
    ``c = q12 / sqrt(q11 q22)``, ``s = sqrt(1 - c²)``: the outer integral over z1 uses the
    split rule of :func:`standard_normal_rule`; for each z1 the inner integral over z2 is split
    at ``t = -c z1 / s``, where ``u2`` crosses the kink at 0, and graded around it.
    """
    g = f if g is None else g
    for name, v in (("q11", q11), ("q22", q22)):
        _check_variance(name, np.asarray(v, dtype=np.float64))
    if not (np.isfinite(q11) and np.isfinite(q22) and np.isfinite(q12)):
        raise InitlabError("the covariance (q11, q22, q12) must be finite")
    scale = np.sqrt(q11 * q22)
    c = 0.0 if scale == 0 else q12 / scale
    if abs(c) > 1.0 + 1e-12:
        raise InitlabError(f"|q12| must be <= sqrt(q11 q22) (a covariance), got c = {c}")
    c = min(1.0, max(-1.0, c))
    s = np.sqrt(max(0.0, 1.0 - c * c))
    z1, w1 = standard_normal_rule()
    t = np.clip(-c * z1 / s, -Z_MAX, Z_MAX) if s > 0 else np.where(c * z1 > 0, -Z_MAX, Z_MAX)
    z2, w2 = _gl_panels(_inner_breaks(t))
    w2 = w2 * _normal_pdf(z2)
    u2 = np.sqrt(q22) * (c * z1[:, None] + s * z2)
    inner = np.einsum("ij,ij->i", np.asarray(g(u2)), w2)
    return float(np.dot(np.asarray(f(np.sqrt(q11) * z1)) * inner, w1))


def _evaluate(fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, order: int) -> np.ndarray:
    """phi (order 0), phi' (1) or phi'' (2) of an elementwise torch function, on numpy float64."""
    t = torch.from_numpy(np.require(x, dtype=np.float64, requirements=["C", "W"]))
    if order == 0:
        with torch.no_grad():
            return fn(t).numpy()
    with torch.enable_grad():
        t.requires_grad_(True)
        (d1,) = torch.autograd.grad(fn(t).sum(), t, create_graph=order > 1)
        if order == 1:
            return d1.detach().numpy()
        if not d1.requires_grad:  # phi' constant (linear)
            return np.zeros_like(x, dtype=np.float64)
        (d2,) = torch.autograd.grad(d1.sum(), t, allow_unused=True)
    return np.zeros_like(x, dtype=np.float64) if d2 is None else d2.numpy()


@functools.cache
def activation_fn(name: str, derivative: int = 0) -> ArrayFn:
    """The registry activation ``name`` (or its 1st/2nd derivative) as a numpy function.

    ``derivative`` is 0 (phi), 1 (phi', autograd) or 2 (phi'', double autograd; 0 where phi
    is piecewise linear — a jump of phi' at 0 is a delta in phi'' that this function cannot
    return, see :func:`derivative_jump`). Unknown names raise ``UnknownNameError``.
    """
    act = activations.get(name)
    if derivative not in (0, 1, 2):
        raise InitlabError(f"derivative must be 0, 1 or 2, got {derivative}")
    return functools.partial(_evaluate, act.fn, order=derivative)


@functools.cache
def derivative_jump(name: str) -> float:
    """``J = phi'(0+) - phi'(0-)``: the weight of the delta ``J δ(x)`` in phi'' at the kink.

    Estimated by Richardson extrapolation of ``phi'(h) - phi'(-h)`` (h = 1e-6, 2e-6), which
    cancels the O(h) term of a smooth phi'; ``|J| < 1e-8`` is reported as 0. Values:
    SELU ``scale (1 - alpha) ≈ -0.7074``, ReLU 1, leaky ReLU 0.99, the rest 0.
    """
    d1 = activation_fn(name, 1)
    h = 1e-6
    jumps = d1(np.array([h, -h, 2 * h, -2 * h]))
    j = 2.0 * (jumps[0] - jumps[1]) - (jumps[2] - jumps[3])
    return 0.0 if abs(j) < 1e-8 else float(j)


@functools.cache
def derivative_at_infinity(name: str) -> tuple[float, float]:
    """``(phi'(-inf), phi'(+inf))``, evaluated at ``x = ∓1e6`` (the asymptotic slopes)."""
    d1 = activation_fn(name, 1)
    left, right = d1(np.array([-1e6, 1e6]))
    return float(left), float(right)
