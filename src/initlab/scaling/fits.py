"""Slopes with honest uncertainty: one fit's CI and p-value, and Holm over a check's fits.

One fit (:func:`fit`): the ordinary least-squares slope ``b`` of ``log(value)`` on ``x``
(log width, depth or log depth) over every point, and its variance from the **spread of the
seeds at each x** rather than from one pooled residual variance, since the seeds' log-noise
differs between widths (the smallest width's is often twice the others'). With ``x̄`` the
mean of all ``n`` points, ``Sxx = Σᵢ (xᵢ − x̄)²`` and, per distinct ``x_w`` with ``n_w``
points, their sample variance ``s_w²``:

    b = Σ_w n_w (x_w − x̄) ȳ_w / Sxx
    Var(b) = Σ_w g_w s_w²,   g_w = n_w (x_w − x̄)² / Sxx²
    df = Var(b)² / Σ_w (g_w s_w²)² / (n_w − 1)        (Welch–Satterthwaite)

and the 95% CI ``b ± t(0.975, df) · √Var(b)``, the two-sided p-value of ``b = 0`` from the
same t. This is Welch's unequal-variance t for the contrast of the per-x means that the slope
is. It needs :data:`PER_X_VALUES` values at every x: with 2 (two seeds) each ``s_w²`` has one
degree of freedom, ``df`` drops to 1–3 and the CI becomes too wide to flag anything. With
fewer, the fit takes one pooled residual variance for every x (ordinary least squares,
:func:`scipy.stats.linregress`, ``n − 2`` degrees of freedom), which assumes the same noise
at every width. A slope weighted by the inverse per-width variances is not used: with 3–4
seeds a width's variance estimate is too noisy to weight by.

A check makes many fits (every module × step × metric); Holm's adjustment of their p-values
(:func:`initlab.ranking.stats.holm_adjust`) keeps the chance of flagging **any** fit whose true
slope is 0 at most 5% over the whole family (Holm 1979; valid whatever the dependence between
the fits). The family counts **hypotheses, not names**: a series that enters under two names
(the ``(logits)`` std is the readout's own output std when the readout's output is the
model's) is one hypothesis (:func:`holm_distinct`, :func:`series_key`), so that it does not
dilute every other fit's adjusted p-value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

from initlab.errors import InitlabError, option
from initlab.ranking.stats import holm_adjust

MIN_VALUES = 3
"""The fewest values a fit takes: a line has two parameters, and its standard error (so its
CI) needs at least one degree of freedom beyond them. A check therefore needs widths × seeds
≥ 3 (:func:`check_design`)."""
PER_X_VALUES = 3
"""The fewest values at every x (seeds, at every width) for the per-x variance; the pooled
one below that."""
CONFIDENCE = 0.95
"""The level of each fit's CI, and ``1 −`` the family-wise error rate of Holm's adjustment."""


def check_sizes(name: str, sizes: Sequence[int]) -> None:
    """:class:`InitlabError` unless ``sizes`` are ≥ 2 positive, strictly increasing ints
    (``name``: the option as the user spells it, :func:`initlab.errors.option`)."""
    if len(sizes) < 2:
        raise InitlabError(
            f"{name} needs at least two sizes to fit a slope, got {list(sizes)} "
            f"(e.g. {option('64,128,256,512,1024', '[64, 128, 256, 512, 1024]')})"
        )
    if any(int(s) != s or s < 1 for s in sizes):
        raise InitlabError(f"{name} must be positive integers, got {list(sizes)}")
    if any(b <= a for a, b in itertools.pairwise(sizes)):
        raise InitlabError(f"{name} must be strictly increasing, got {list(sizes)}")


def check_design(name: str, sizes: Sequence[int], seeds: int) -> None:
    """:class:`InitlabError` unless ``sizes × seeds`` gives a fit its
    :data:`MIN_VALUES` values: with fewer, no slope gets a CI and
    the check could judge nothing (``name``: the option as the user spells it)."""
    if len(sizes) * seeds >= MIN_VALUES:
        return
    need, more_seeds = -(-MIN_VALUES // seeds), -(-MIN_VALUES // len(sizes))
    noun, plural = name.removeprefix("--"), "s" if seeds > 1 else ""
    raise InitlabError(
        f"{name} needs at least {need} {noun} with {seeds} seed{plural} (got {len(sizes)}), "
        f"or use {option(f'--seeds {more_seeds}')}: a slope's 95% CI needs {MIN_VALUES} "
        f"values ({noun} × seeds)"
    )


class Fit(NamedTuple):
    """A slope with its 95% CI, number of values, two-sided p-value and degrees of freedom."""

    slope: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float
    df: float


def _t_fit(slope: float, se: float, df: float, n: int) -> Fit | None:
    """The CI and p-value of ``slope`` with standard error ``se`` on ``df`` degrees of
    freedom (``se == 0``: a slope known exactly; its p-value 0, or 1 when it is 0)."""
    if not (math.isfinite(se) and math.isfinite(slope)):
        return None
    if se == 0:
        return Fit(slope, slope, slope, n, 0.0 if slope else 1.0, math.inf)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    p = float(2 * stats.t.sf(abs(slope) / se, df))
    return Fit(slope, slope - half, slope + half, n, p, df)


def _per_x_fit(x: np.ndarray, y: np.ndarray) -> Fit | None:
    """The slope with the per-x (Welch–Satterthwaite) variance of the module docstring;
    ``None`` when some x has fewer than :data:`PER_X_VALUES` values."""
    levels, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    if counts.min() < PER_X_VALUES:
        return None
    centred = x - x.mean()
    sxx = float(centred @ centred)
    slope = float(centred @ y) / sxx
    means = np.bincount(inverse, weights=y) / counts
    s2 = np.bincount(inverse, weights=(y - means[inverse]) ** 2) / (counts - 1)
    parts = counts * (levels - x.mean()) ** 2 / sxx**2 * s2
    var = float(parts.sum())
    df = var**2 / float((parts**2 / (counts - 1)).sum()) if var > 0 else math.inf
    return _t_fit(slope, math.sqrt(var), df, len(y))


def fit(x: np.ndarray, y: np.ndarray) -> Fit | None:
    """The :class:`Fit` of ``log(y)`` on ``x`` (module docstring); ``None`` when it cannot be
    made: fewer than :data:`MIN_VALUES` positive finite values, or fewer than 2 distinct x.
    Values ≤ 0 or not finite are left out."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(y) & (y > 0) & np.isfinite(x)
    x, y = x[keep], np.log(y[keep])
    if len(y) < MIN_VALUES or len(np.unique(x)) < 2:
        return None
    found = _per_x_fit(x, y)
    if found is not None:
        return found
    res = stats.linregress(x, y)
    return _t_fit(float(res.slope), float(res.stderr), len(y) - 2, len(y))


def series_key(x: np.ndarray, y: np.ndarray) -> tuple[bytes, bytes]:
    """What makes two fits the same hypothesis: the same ``x`` and the same values ``y``
    (bit for bit, in the same order). Two names for one series (the readout's std and the
    logits' std) have the same key; two different series practically never do."""
    return np.asarray(x, float).tobytes(), np.asarray(y, float).tobytes()


def holm_distinct(p_values: Sequence[float], keys: Sequence[Hashable]) -> list[float]:
    """Holm-adjusted p-values (:func:`initlab.ranking.stats.holm_adjust`) over the **distinct**
    keys: entries with the same key are one hypothesis, adjusted once in a family of ``m`` =
    number of distinct keys (with the first such entry's p-value), and each entry gets its
    key's adjusted value. Testing one hypothesis under two names adds no chance of error, so
    it must not widen the family."""
    first: dict[Hashable, int] = {}
    for k, key in enumerate(keys):
        first.setdefault(key, k)
    adjusted = holm_adjust([p_values[k] for k in first.values()])
    by_key = dict(zip(first, adjusted, strict=True))
    return [by_key[key] for key in keys]


def residual_ss(x: np.ndarray, y: np.ndarray) -> float:
    """The residual sum of squares of the least-squares line of ``log(y)`` on ``x``, over the
    positive finite ``y`` (``inf`` with fewer than 3 of them or one distinct x): how well
    ``y = a·exp(b·x)`` fits. Comparing it between ``x = depth`` and ``x = log(depth)`` on the
    same values compares an exponential law with a power law (same number of parameters)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(y) & (y > 0) & np.isfinite(x)
    x, y = x[keep], np.log(y[keep])
    if len(y) < MIN_VALUES or len(np.unique(x)) < 2:
        return math.inf
    centred = x - x.mean()
    slope = float(centred @ (y - y.mean())) / float(centred @ centred)
    return float(((y - y.mean() - slope * centred) ** 2).sum())


LAWS = {"depth": "exponential", "log_depth": "power"}
"""The law a depth fit's axis stands for: ``log y = a + b·depth`` (``y ∝ exp(b·depth)``) or
``log y = a + b·log(depth)`` (``y ∝ depth^b``)."""


def depth_law(depth: np.ndarray, values: np.ndarray) -> tuple[str, str]:
    """``(axis, law)`` of the one law a depth series is tested under: the axis of
    :data:`LAWS` whose least-squares line leaves the smaller residual sum of squares of
    ``log(values)`` (:func:`~initlab.scaling.fits.residual_ss`; both have two parameters).
    With fewer than three depths holding a positive finite value both lines go through the
    means and cannot be told apart, nor when their residuals agree to 1e-9 relative: the
    power law, ``undetermined`` (its p-value is then the exponential's too)."""
    depth, values = np.asarray(depth, float), np.asarray(values, float)
    usable = np.isfinite(values) & (values > 0)
    if len(np.unique(depth[usable])) < 3:  # a diverged depth's NaN leaves two
        return "log_depth", "undetermined"
    exp_rss = residual_ss(depth, values)
    power_rss = residual_ss(np.log(depth), values)
    if math.isclose(exp_rss, power_rss, rel_tol=1e-9, abs_tol=1e-12):
        return "log_depth", "undetermined"
    axis = "depth" if exp_rss < power_rss else "log_depth"
    return axis, LAWS[axis]
