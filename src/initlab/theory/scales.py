"""Depth scales, phases and the one-call summary :func:`analyze` (Schoenholz et al. 2017).

Near the fixed points, deviations decay exponentially with depth l::

    |q_l - q*| ~ exp(-l / xi_q),  xi_q = -1 / log L'(q*),
        L'(q) = sigma_w² E[phi'(sqrt(q) z)² + phi''(sqrt(q) z) phi(sqrt(q) z)]        (eq. 5)
    |c_l - c*| ~ exp(-l / xi_c),  xi_c = -1 / log chi_c(c*)

(``L'`` follows from Stein's lemma.) In the ordered phase ``c* = 1`` and ``chi_c(c*) = chi1``,
so ``xi_c = -1 / log chi1``, which diverges at the edge of chaos (``chi1 = 1``) from both
sides. Random networks are trainable up to a depth of roughly ``6 xi_c``.

Back-propagated gradients (Schoenholz et al. §4): their mean square is multiplied by chi1 per
layer (their std by ``sqrt(chi1)``), so over ``n`` layers by ``chi1**n``, depth scale
``xi_grad = 1 / |log chi1|`` (:func:`xi_grad`; ``inf`` at the edge of chaos). In the ordered
phase ``xi_grad = xi_c``; in the chaotic phase the two differ, and for tanh ``xi_grad`` is
the shorter (5.24 against 12.1 layers at sigma_w² = 2.78, sigma_b² = 0): the gradients
explode before the inputs' correlations are forgotten.

``q* = 0`` (``sigma_b² = 0``, ``phi(0) = 0`` and ``chi1 < 1``: ReLU with ``sigma_w² < 2``,
tanh with ``sigma_w² < 1``) is the exception: the signal shrinks to where phi acts as its
linearization at 0, a positively homogeneous map (ReLU itself; the identity for tanh), whose
correlation map does not depend on q and has ``chi_c(1) = 1``. Correlations then approach 1
only polynomially (ReLU) or freeze (tanh), ``xi_c = inf``; what vanishes exponentially is the
scale, the variance forward and the gradients backward, by ``chi1`` per layer: depth scale
``xi_q = xi_grad = -1 / log chi1``. The phase is then ``"vanishing"`` (the mirror of
``"exploding"``, chi1 > 1 with ``q* = inf``).

**Trainable depth.** :func:`max_trainable_depth` is Schoenholz et al.'s ``6 xi_c`` wherever
``0 < q* < inf`` (the scale the rule was measured on, in both phases; the ``schoenholz2017``
study tests it), and ``6 xi_grad`` where ``q*`` is 0 or inf: there ``xi_c`` is infinite or
undefined and the scale itself is lost exponentially, at the gradients' rate. The advice of
``initlab diagnose`` compares a network's depth with ``6 xi_grad`` for every activation and
phase (its findings measure gradients): the same number except in the chaotic phase with a
finite ``q*`` (tanh at sigma_w² = 2.78: 31.5 against 72.6 layers).
"""

from __future__ import annotations

import math

import numpy as np

from initlab.errors import InitlabError
from initlab.theory import _checks
from initlab.theory.correlation import chi_c, fixed_point_c
from initlab.theory.gaussian import (
    activation_fn,
    derivative_at_infinity,
    derivative_jump,
    gaussian_expectation,
)
from initlab.theory.meanfield import Q_MAX, chi1, critical_sigma_w2, fixed_point_q

CRITICAL_TOL = 1e-8
"""``|chi1 - 1| <= CRITICAL_TOL`` is the edge of chaos ("critical")."""
SLOPE_RTOL = 1e-12
"""Slopes within this of 1 count as marginal (depth scale ``inf``)."""
TRAINABLE_DEPTH_FACTOR = 6.0
"""Schoenholz et al. (2017): networks train up to depth ≈ 6 xi_c."""


def length_map_slope(q: float, activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """``L'(q) = sigma_w² (E[phi'(sqrt(q) z)² + phi''(sqrt(q) z) phi(sqrt(q) z)] + delta term)``.

    Where phi' jumps by ``J`` at 0 (ReLU, leaky ReLU, SELU), phi'' holds ``J δ(x)`` and adds
    ``J phi(0) / sqrt(2π q)`` — zero for every registry activation since their phi(0) = 0.
    ``q = inf`` gives the limit ``sigma_w² (phi'(-inf)² + phi'(inf)²) / 2``.
    """
    name = _checks.canonical(activation)
    q = float(_checks.nonnegative("q", q, allow_inf=True))
    sw = float(_checks.nonnegative("sigma_w2", sigma_w2))
    _checks.nonnegative("sigma_b2", sigma_b2)
    if math.isinf(q):
        return sw * float(np.mean(np.square(derivative_at_infinity(name))))
    phi, d1, d2 = (activation_fn(name, k) for k in (0, 1, 2))
    q = max(q, 1e-300)  # q -> 0+: one-sided limits at the kink
    smooth = gaussian_expectation(lambda x: d1(x) ** 2 + d2(x) * phi(x), q)
    jump = derivative_jump(name) * float(phi(np.zeros(1))[0])
    delta = jump / math.sqrt(2.0 * math.pi * q) if jump else 0.0
    return sw * (smooth + delta)


def _depth_scale(slope: float) -> float:
    """``-1 / log(slope)`` for ``0 <= slope < 1``; ``inf`` when ``slope >= 1 - 1e-12`` (no
    exponential decay; the margin absorbs quadrature round-off, e.g. ReLU's ``L' = 1``)."""
    if slope >= 1.0 - SLOPE_RTOL:
        return math.inf
    if slope <= 0.0:
        return 0.0
    return -1.0 / math.log(slope)


def xi_q(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """``xi_q = -1 / log L'(q*)``; ``inf`` when q does not converge exponentially (``L' >= 1``:
    a marginal map such as ReLU at ``sigma_w2 = 2``, or a diverging one with ``q* = inf``)."""
    q = float(fixed_point_q(activation, sigma_w2, sigma_b2))
    return _depth_scale(length_map_slope(q, activation, sigma_w2, sigma_b2))


def phase(chi1_value: float) -> str:
    """``"ordered"`` (chi1 < 1), ``"chaotic"`` (chi1 > 1) or ``"critical"`` (within 1e-8)."""
    if abs(chi1_value - 1.0) <= CRITICAL_TOL:
        return "critical"
    return "ordered" if chi1_value < 1.0 else "chaotic"


def _correlation_fixed_point(
    activation: str, sigma_w2: float, sigma_b2: float
) -> tuple[float | None, float | None, float]:
    """``(c*, chi_c(c*), xi_c)``; see :func:`xi_c` for the cases."""
    q = float(fixed_point_q(activation, sigma_w2, sigma_b2))
    x1 = float(chi1(activation, sigma_w2, sigma_b2, q=q))
    if vanishing(activation, sigma_w2, sigma_b2, q, x1):
        return 1.0, 1.0, math.inf  # chi_c(1) at q -> 0+: the linearization's map (docstring)
    if phase(x1) != "chaotic":
        return 1.0, x1, (math.inf if phase(x1) == "critical" else _depth_scale(x1))
    if math.isinf(q):
        return None, None, 1.0 / math.log(x1)
    c_star = fixed_point_c(activation, sigma_w2, sigma_b2, q=q)
    slope = chi_c(activation, sigma_w2, sigma_b2, c=c_star, q=q)
    return c_star, slope, _depth_scale(slope)


def vanishing(activation: str, sigma_w2: float, sigma_b2: float, q: float, x1: float) -> bool:
    """The ``"vanishing"`` case (module docstring): ``q* = 0`` and ``chi1 < 1``, where phi acts
    as its linearization at 0 (ReLU with ``sigma_w² < 2``, tanh with ``sigma_w² < 1``, both
    at ``sigma_b² = 0``). ``activation`` and ``sigma_b2`` are not needed (``q* = 0`` implies
    ``sigma_b² = 0`` and ``phi(0) = 0``); they keep the predicates' common signature."""
    return q == 0.0 and sigma_w2 > 0.0 and phase(x1) == "ordered"


VANISHING_NOTE = (
    "q* = 0: the signal shrinks to where phi acts as its linearization at 0 (a homogeneous "
    "map: ReLU itself, the identity for tanh), whose correlation map does not depend on q and "
    "has chi_c(1) = 1, so correlations are not ordered exponentially (xi_c = inf); the "
    "variance and the gradients' mean square shrink by chi1 per layer (depth scale xi_q = "
    "xi_grad = -1/log chi1), and max_trainable_depth is 6 xi_grad"
)


def xi_c(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """The correlation depth scale ``xi_c = -1 / log chi_c(c*)``.

    * ordered (chi1 < 1): ``c* = 1``, ``xi_c = -1 / log chi1``;
    * critical (``|chi1 - 1| <= 1e-8``): ``inf``;
    * chaotic with finite ``q*``: ``c* < 1`` and ``chi_c(c*) < 1`` (Schoenholz et al.);
    * vanishing (:func:`vanishing`, ``q* = 0``: ReLU with ``sigma_w2 < 2``, tanh with
      ``sigma_w2 < 1``, ``sigma_b2 = 0``): ``inf``, since ``chi_c(1) = 1`` as q -> 0+;
    * exploding, chi1 > 1 with ``q* = inf`` (e.g. ReLU, ``sigma_w2 > 2``): no fixed point to
      linearize around; initlab reports the gradient-explosion depth ``1 / log chi1`` (the
      depth over which gradient norms grow by e) so that ``6 xi_c`` stays a trainability bound.
    """
    return _correlation_fixed_point(activation, sigma_w2, sigma_b2)[2]


def max_trainable_depth(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """The trainable depth (module docstring): ``6 xi_c`` (Schoenholz et al. 2017; inf when
    critical) where ``0 < q* < inf``; ``6 xi_grad = 6 / |log chi1|`` where ``q*`` is 0
    (:func:`vanishing`) or inf (exploding, where :func:`xi_c` is that same ``1 / log chi1``)."""
    q = float(fixed_point_q(activation, sigma_w2, sigma_b2))
    x1 = float(chi1(activation, sigma_w2, sigma_b2, q=q))
    if vanishing(activation, sigma_w2, sigma_b2, q, x1):
        return TRAINABLE_DEPTH_FACTOR * _depth_scale(x1)
    return TRAINABLE_DEPTH_FACTOR * xi_c(activation, sigma_w2, sigma_b2)


def gradient_scale(chi1_value: float) -> float:
    """``xi_grad = 1 / |log chi1|``: over ``xi_grad`` layers the back-propagated gradients'
    mean square changes by a factor e (it is multiplied by chi1 per layer; Schoenholz et al.
    §4). ``inf`` at the edge of chaos (``|chi1 - 1| <= 1e-8``, :func:`phase`), 0 at chi1 = 0."""
    if phase(chi1_value) == "critical":
        return math.inf
    if chi1_value <= 0.0:
        return 0.0
    return 1.0 / abs(math.log(chi1_value))


def xi_grad(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """:func:`gradient_scale` at ``chi1(activation, sigma_w2, sigma_b2)``: ``-1 / log chi1``
    in the ordered phase (``= xi_c`` there), ``1 / log chi1`` in the chaotic phase (for tanh
    shorter than ``xi_c``: the gradients explode before the correlations are forgotten)."""
    return gradient_scale(float(chi1(activation, sigma_w2, sigma_b2)))


def gradient_factor(chi1_value: float, layers: float) -> float:
    """``chi1 ** (layers / 2)``: the factor by which mean field multiplies the std of the
    back-propagated gradients (``dL/dz``) over ``layers`` layers, from the last to the first
    (their mean square: ``chi1 ** layers``)."""
    if layers == 0:
        return 1.0
    return float(chi1_value) ** (0.5 * layers)


RESOLVED_MAX = Q_MAX / 10
"""The largest ``sigma_w2 + sigma_b2`` :func:`analyze` answers: a bounded activation's q* is
about ``sigma_w2 + sigma_b2``, and a q* beyond :data:`Q_MAX` would read as no fixed point
(``inf``, chi1 0, 'ordered' at sigma_w2 = 1e20 where 1e12 is deeply chaotic)."""


def analyze(activation: str, sigma_w2: float, sigma_b2: float = 0.0) -> dict:
    """Everything mean-field theory says about one (activation, sigma_w², sigma_b²).

    Keys: ``activation, sigma_w2, sigma_b2, q_star, chi1, c_star, chi_c, xi_q, xi_c,
    xi_grad, critical_sigma_w2, max_trainable_depth, phase, note`` (``xi_grad``:
    :func:`gradient_scale`; ``max_trainable_depth``: :func:`max_trainable_depth`). ``phase``
    is :func:`phase` of chi1, except ``"vanishing"`` (:func:`vanishing`; ``note`` says why)
    and ``"exploding"`` where chi1 > 1 and ``q* = inf``: the signal's length diverges and
    there is no correlation fixed point to be chaotic about (ReLU with ``sigma_w2 > 2``, whose
    correlation map does not depend on ``sigma_w2`` at all; linear with ``sigma_w2 > 1``).
    Values are Python floats (or str); the diverging ones are ``float('inf')``
    (``json.dumps`` writes ``Infinity``, strict JSON writers must map it to a string or
    null); ``c_star`` and ``chi_c`` are ``None`` when ``q* = inf`` (no fixed point of the
    length map, so no correlation map to linearize).
    """
    name = _checks.canonical(activation)
    sw = float(_checks.nonnegative("sigma_w2", sigma_w2))
    sb = float(_checks.nonnegative("sigma_b2", sigma_b2))
    if sw + sb > RESOLVED_MAX:
        raise InitlabError(
            f"sigma_w2 + sigma_b2 = {sw + sb:g} is beyond what the mean-field computation "
            f"resolves (q* is searched up to {Q_MAX:g}): give at most {RESOLVED_MAX:g}"
        )
    q = float(fixed_point_q(name, sw, sb))
    x1 = float(chi1(name, sw, sb, q=q))
    c_star, slope, scale = _correlation_fixed_point(name, sw, sb)
    gone = vanishing(name, sw, sb, q, x1)
    exploding = math.isinf(q) and phase(x1) == "chaotic"
    return {
        "activation": name,
        "sigma_w2": sw,
        "sigma_b2": sb,
        "q_star": q,
        "chi1": x1,
        "c_star": c_star,
        "chi_c": slope,
        "xi_q": _depth_scale(length_map_slope(q, name, sw, sb)),
        "xi_c": scale,
        "xi_grad": gradient_scale(x1),
        "critical_sigma_w2": critical_sigma_w2(name, sb),
        "max_trainable_depth": TRAINABLE_DEPTH_FACTOR * (_depth_scale(x1) if gone else scale),
        "phase": "vanishing" if gone else "exploding" if exploding else phase(x1),
        "note": VANISHING_NOTE if gone else "",
    }


def unstable_fixed_point(
    activation: str,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    around: tuple[float, float] = (0.1, 10.0),
) -> tuple[float, float] | None:
    """``(q_u, L'(q_u))`` for the fixed point ``q_u = L(q_u)`` in ``around`` nearest ``q = 1``
    (in log scale) that repels (``L'(q_u) > 1``), else None: a variance that starts off
    ``q_u`` drifts away from it by ``L'(q_u)`` per layer, in either direction, to the next
    fixed point (0, a small attracting ``q*`` when ``sigma_b² > 0``, or inf).

    The gain rule's ``sigma_w² = 1 / E[phi(z)²]`` makes ``q = 1`` a fixed point at zero
    biases. It attracts where ``E[phi(sqrt(q) z)²] / q`` falls with q (tanh, ELU, softsign,
    SELU) and repels where it rises: gelu and silu (from 1/4 at q → 0 to 1/2 at q → inf),
    ``L'(1) = 1.144`` and ``1.173`` at zero biases, so no weight scale alone holds a deep
    plain gelu or silu net's variance steady. ReLU's map is marginal (``L' = 1``): None.
    Repelling points are the upward crossings of ``L(q) - q`` on a log grid of ``around``.
    """
    from scipy.optimize import brentq

    from initlab.theory.meanfield import length_map

    def excess(q: float) -> float:
        return float(length_map(q, activation, sigma_w2, sigma_b2)) - q

    grid = np.geomspace(*around, 97)  # q = 1 is a grid point
    values = np.asarray(length_map(grid, activation, sigma_w2, sigma_b2)) - grid
    ups = [i for i in range(len(grid) - 1) if values[i] < 0 <= values[i + 1]]
    if not ups:
        return None
    i = min(ups, key=lambda k: abs(math.log(grid[k] * grid[k + 1])))
    low, high = float(grid[i]), float(grid[i + 1])
    q_u = high if values[i + 1] == 0 else float(brentq(excess, low, high, xtol=1e-12, rtol=1e-10))
    slope = length_map_slope(q_u, activation, sigma_w2, sigma_b2)
    return (q_u, slope) if slope > 1.0 + 1e-6 else None
