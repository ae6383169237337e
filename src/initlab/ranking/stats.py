"""Statistics across seeds: means, spreads, confidence intervals, comparisons.

Pure functions of pandas/numpy data; every function states its formula.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

ALPHA = 0.05
"""The significance level the tables mark a difference at: pairs whose (Holm-adjusted) Welch
p-value is below it."""


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, std, half_width)`` of the Student-t confidence interval for the mean.

    ``std`` is the sample standard deviation (ddof=1); the interval is
    ``mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n)``. NaNs are ignored; with one value the
    std and half-width are NaN; identical values give exactly their value and std 0.
    """
    from scipy import stats as sps  # scipy.stats costs ~0.7 s to import

    x = np.asarray([v for v in values if v == v], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan, math.nan
    mean, var = _moments(x)
    std = math.sqrt(var)
    t = float(sps.t.ppf((1 + confidence) / 2, len(x) - 1))
    return mean, std, t * std / math.sqrt(len(x))


def first_epoch_reaching(curve: pd.Series, target: float) -> float:
    """The first epoch (index of ``curve``) whose value is ``>= target``; NaN if never."""
    hit = curve[curve >= target]
    return float(hit.index[0]) if len(hit) else math.nan


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test for equal means (NaN with < 2 values per side).

    Both sides constant (standard error 0): 1 for equal values (nothing to tell apart), NaN
    for different ones — the test is undefined, not infinitely sure (every seed scoring the
    same usually means a test set too small to vary, e.g. one example). The one pair of
    :func:`pairwise_welch`."""
    return float(pairwise_welch([a, b])[0, 1])


def pairwise_welch(groups: Sequence[Sequence[float]]) -> np.ndarray:
    """``[k, k]`` two-sided p-values of Welch's test between every two of ``groups`` over
    their finite values (:func:`_welch`'s ``se`` and Welch–Satterthwaite ``df``; NaN with
    < 2 finite values a side or both sides constant at different values, 1 for equal
    constants), in one vectorized pass: ranking 400 groups over their 79,800 pairs one test
    at a time took 6 s."""
    from scipy import stats as sps  # scipy.stats costs ~0.7 s to import

    finite = [np.asarray([v for v in g if v == v], dtype=float) for g in groups]
    n = np.array([len(g) for g in finite], dtype=float)
    moments = [_moments(g) if len(g) >= 2 else (math.nan, math.nan) for g in finite]
    mean = np.array([m for m, _ in moments], dtype=float)
    var = np.array([s2 for _, s2 in moments], dtype=float)
    v = var / n  # s²/n per group
    diff = mean[:, None] - mean[None, :]
    se = np.sqrt(v[:, None] + v[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        df = se**4 / (v[:, None] ** 2 / (n[:, None] - 1) + v[None, :] ** 2 / (n[None, :] - 1))
        p = 2 * sps.t.sf(np.abs(diff) / se, df)
    p = np.where(se == 0, np.where(diff == 0, 1.0, np.nan), p)
    p[(n[:, None] < 2) | (n[None, :] < 2)] = np.nan
    return p


def _welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float] | None:
    """``(mean(a) - mean(b), se, df)`` of Welch's test over the finite values: ``se² =
    s_a²/n_a + s_b²/n_b``, ``df = se⁴ / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``
    (Welch–Satterthwaite; ``nan`` when ``se`` is 0); ``None`` with < 2 values a side.
    Computed here rather than by ``scipy.stats.ttest_ind``, which warns on near-identical
    seeds: silencing it per call (``catch_warnings``) reset every module's warning registry,
    so initlab's one-time notes printed again."""
    a = np.asarray([v for v in a if v == v], dtype=float)
    b = np.asarray([v for v in b if v == v], dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    (mean_a, var_a), (mean_b, var_b) = _moments(a), _moments(b)
    va, vb = var_a / len(a), var_b / len(b)
    se = math.sqrt(va + vb)
    df = se**4 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else math.nan
    return mean_a - mean_b, se, df


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and sample variance of ``x``; exactly ``(x[0], 0)`` when every value is the same
    (runs stuck at chance): the computed mean and variance of 7 copies of 0.345 are off by
    rounding (~1e-17), and two such groups would differ 'significantly' (p = 0.002)."""
    if np.ptp(x) == 0:
        return float(x[0]), 0.0
    return float(x.mean()), float(x.var(ddof=1))


# -- comparing groups of runs (a config group = the swept settings except the seed) --------


def group_label(key: object) -> str:
    """A group key as text: ``("he_normal", "relu")`` → ``"he_normal / relu"``."""
    parts = key if isinstance(key, tuple) else (key,)
    return " / ".join(display_value(p) for p in parts)


def display_value(value: object) -> str:
    """A setting as a short label: hidden widths ``"128-128-...-128"`` (3 or more equal
    layers) become ``"128×32"``; a setting a run does not use (NaN or ``None``: the
    ``output_init`` of ``init = default``, the ``momentum`` of Adam) ``"—"``; anything else
    is ``str(value)``."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    text = str(value)
    widths = text.split("-")
    if len(widths) >= 3 and all(w.isdigit() for w in widths) and len(set(widths)) == 1:
        return f"{widths[0]}×{len(widths)}"
    return text


def _groups(
    runs: pd.DataFrame, group_by: Sequence[str], metric: str
) -> list[tuple[tuple, np.ndarray]]:
    """``(key, finite values of metric)`` per group, in order of first appearance."""
    out = []
    for key, frame in runs.groupby(list(group_by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
        out.append((key, values[np.isfinite(values)]))
    return out


def group_stats(
    runs: pd.DataFrame,
    group_by: Sequence[str],
    metric: str = "test_accuracy",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per group: ``runs``, ``n`` (runs with a finite metric), ``mean``, ``std`` and the
    Student-t interval ``ci_low``/``ci_high`` (half-width ``ci``) of :func:`mean_ci`.

    Runs whose metric is NaN (diverged, failed) count in ``runs`` but not in ``n``.
    """
    rows = []
    sizes = runs.groupby(list(group_by), sort=False, dropna=False).size().tolist()
    for (key, values), size in zip(_groups(runs, group_by, metric), sizes, strict=True):
        mean, std, half = mean_ci(values, confidence)
        rows.append(
            {
                **dict(zip(group_by, key, strict=True)),
                "group": group_label(key),
                "runs": size,
                "n": len(values),
                "mean": mean,
                "std": std,
                "ci": half,
                "ci_low": mean - half if half == half else math.nan,
                "ci_high": mean + half if half == half else math.nan,
            }
        )
    return pd.DataFrame(rows)


def welch_diff_ci(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> tuple[float, float]:
    """Welch's interval of ``mean(a) - mean(b)``: ``diff ± t_{df, (1+confidence)/2} · se``,
    ``se² = s_a²/n_a + s_b²/n_b`` with the Welch–Satterthwaite degrees of freedom
    ``df = se⁴ / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``: the interval of the test in
    :func:`welch_t_test`, so it excludes 0 exactly when that p-value is below
    ``1 - confidence``, and it is honest at 2 or 3 seeds, where a percentile bootstrap of
    so few runs is far too narrow. NaN with < 2 values per side, and where the test is
    undefined (both sides constant, different values); ``(0, 0)`` for equal constants."""
    from scipy import stats as sps  # scipy.stats costs ~0.7 s to import

    parts = _welch(a, b)
    if parts is None:
        return math.nan, math.nan
    diff, se, df = parts
    if se == 0:
        return (diff, diff) if diff == 0 else (math.nan, math.nan)
    half = float(sps.t.ppf((1 + confidence) / 2, df)) * se
    return diff - half, diff + half


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values: with the ``m`` finite p-values sorted, ``p_(1) ≤ …
    ≤ p_(m)``, ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))``; rejecting every
    hypothesis with ``p̃ < α`` keeps the chance of any false rejection ≤ α. NaNs are left
    out of the family and stay NaN."""
    p = np.asarray(p_values, dtype=float)
    order = [i for i in np.argsort(p) if p[i] == p[i]]
    adjusted, running = np.full(len(p), math.nan), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def pairwise_comparisons(
    runs: pd.DataFrame,
    group_by: Sequence[str],
    metric: str = "test_accuracy",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every pair of groups ``(a, b)``: ``mean_a``, ``mean_b``, ``diff = mean_a - mean_b``,
    Welch's two-sided ``p_value`` (:func:`pairwise_welch`), ``p_holm`` (Holm-adjusted over
    all pairs) and Welch's interval ``diff_low``/``diff_high`` (:func:`welch_diff_ci`).
    Pairs are in group order (a before b)."""
    groups = _groups(runs, group_by, metric)
    p = pairwise_welch([values for _, values in groups])
    rows = []
    for i, (key_a, a) in enumerate(groups):
        for j, (key_b, b) in enumerate(groups[i + 1 :], i + 1):
            low, high = welch_diff_ci(a, b, confidence)
            mean_a = float(a.mean()) if len(a) else math.nan
            mean_b = float(b.mean()) if len(b) else math.nan
            rows.append(
                {
                    "group_a": group_label(key_a),
                    "group_b": group_label(key_b),
                    "mean_a": mean_a,
                    "mean_b": mean_b,
                    "diff": mean_a - mean_b,
                    "p_value": float(p[i, j]),
                    "diff_low": low,
                    "diff_high": high,
                }
            )
    frame = pd.DataFrame(rows, columns=_PAIR_COLUMNS)
    frame.insert(6, "p_holm", holm_adjust(frame["p_value"].tolist()) if rows else [])
    return frame


_PAIR_COLUMNS = ["group_a", "group_b", "mean_a", "mean_b", "diff", "p_value"]
_PAIR_COLUMNS += ["diff_low", "diff_high"]


def rank_groups(
    runs: pd.DataFrame,
    group_by: Sequence[str],
    metric: str = "test_accuracy",
    higher_is_better: bool = True,
    alpha: float = 0.05,
    confidence: float = 0.95,
    stuck: Collection[str] = (),
) -> pd.DataFrame:
    """:func:`group_stats` sorted best first, with ``rank``, ``p_vs_best`` (Welch's test of
    each group against the best one), ``p_holm`` (its Holm adjustment over every pair of
    groups, k(k - 1)/2 of them: the best is the largest mean, picked after seeing the data,
    and Holm over its k - 1 comparisons alone called some group "worse than the best" in 17%
    of 20 groups drawn from one distribution; over every pair, the claims hold at 5%
    whichever group comes out best) and ``tied_with_best`` (``p_holm >= alpha``: the data
    cannot tell it from the best). Groups with fewer than two finite values rank after those
    with two or more (one lucky run is no best: it cannot be tested), groups without any
    last. A group labelled in ``stuck`` (stuck at chance in every run) that a group of one
    finite value scores better than ranks among those, by mean: two stuck seeds are no
    "best" over one seed that learned; otherwise groups of two or more rank by mean alone
    (a stuck group that scores better than a learning one stays above it: the status and
    the score can disagree, and a ranking against its own means named the lower group
    the winner). Where Welch's test is undefined (fewer than two values, or
    both groups constant at different values) ``p_vs_best`` is NaN: left out of Holm's
    family, never tied, and :func:`initlab.ranking.verdict.verdict` names no winner over
    it."""
    stats = group_stats(runs, group_by, metric, confidence)
    if stats.empty:
        return stats
    untested = stats["n"] < 2
    best_single = (
        stats["mean"][untested].max() if higher_is_better else stats["mean"][untested].min()
    )
    beaten = stats["mean"] < best_single if higher_is_better else stats["mean"] > best_single
    demote = stats["group"].isin(list(stuck)) & ~untested & beaten
    tier = (untested | demote).astype(int) + 4 * stats["mean"].isna()
    stats = stats.assign(_tier=tier).sort_values(
        ["_tier", "mean"], ascending=[True, not higher_is_better], kind="stable"
    )
    stats = stats.drop(columns="_tier").reset_index(drop=True)
    values = {group_label(k): v for k, v in _groups(runs, group_by, metric)}
    labels = list(stats["group"])
    p = pairwise_welch([values[g] for g in labels])
    upper = np.triu_indices(len(labels), 1)  # every pair once, row-major: (0, 1), (0, 2)...
    adjusted = np.full_like(p, np.nan)
    adjusted[upper] = holm_adjust(p[upper].tolist())
    p_best = [math.nan, *p[0, 1:].tolist()]
    p_holm = [math.nan, *adjusted[0, 1:].tolist()]
    stats.insert(0, "rank", range(1, len(stats) + 1))
    stats["p_vs_best"] = p_best
    stats["p_holm"] = p_holm
    stats["tied_with_best"] = [True] + [p == p and p >= alpha for p in p_holm[1:]]
    return stats


SEEDS_SEARCHED = 100_000
"""Where :func:`seeds_needed` stops searching: it returns the normal approximation (at least
this many) beyond."""


def seeds_needed(
    gap: float,
    std: float,
    alpha: float = 0.05,
    power: float = 0.8,
    std_b: float | None = None,
) -> int | None:
    """Seeds per group for Welch's two-sided test at level ``alpha`` to detect a difference
    ``gap`` between means with probability ``power``, the two groups' runs having standard
    deviations ``std`` and ``std_b`` (default: ``std``): the smallest ``n`` with ``P(|T| >
    t_{1-alpha/2, ν}) >= power``, ``T`` noncentral t with Welch's ``ν = (n - 1) (s_a² +
    s_b²)² / (s_a⁴ + s_b⁴)`` degrees of freedom (``2n - 2`` for equal stds, ``n - 1`` when
    one group is constant) and noncentrality ``gap / sqrt((s_a² + s_b²) / n)``, searched
    upward from the normal approximation ``(z_{1-alpha/2} + z_power)² (s_a² + s_b²) /
    gap²``. ``None`` when ``gap`` or both stds are zero or not finite."""
    from scipy import stats as sps  # scipy.stats costs ~0.7 s to import

    var_a, var_b = std**2, (std if std_b is None else std_b) ** 2
    total = var_a + var_b
    if not (math.isfinite(gap) and math.isfinite(total)) or gap == 0 or total == 0:
        return None
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n = max(2, math.ceil(z**2 * total / gap**2))
    while n < SEEDS_SEARCHED:
        df, shift = (n - 1) * total**2 / (var_a**2 + var_b**2), abs(gap) / math.sqrt(total / n)
        critical = sps.t.ppf(1 - alpha / 2, df)
        # P(T < -c) as P(T' > c) with T' of noncentrality -shift: scipy's nct.cdf far in
        # the lower tail can be NaN (nct.cdf(-4.77, 4.1, 8) in scipy 1.17), which skipped n
        lower = sps.nct.sf(critical, df, -shift)
        if sps.nct.sf(critical, df, shift) + (lower if math.isfinite(lower) else 0.0) >= power:
            break
        n += 1
    return n
