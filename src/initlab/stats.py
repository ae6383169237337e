"""Statistics across seeds: means, spreads, confidence intervals, comparisons.

Pure functions of pandas/numpy data; every function states its formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, std, half_width)`` of the Student-t confidence interval for the mean.

    ``std`` is the sample standard deviation (ddof=1); the interval is
    ``mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n)``. NaNs are ignored; with one value the
    std and half-width are NaN.
    """
    x = np.asarray([v for v in values if v == v], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan, math.nan
    std = float(x.std(ddof=1))
    t = float(sps.t.ppf((1 + confidence) / 2, len(x) - 1))
    return float(x.mean()), std, t * std / math.sqrt(len(x))


def first_epoch_reaching(curve: pd.Series, target: float) -> float:
    """The first epoch (index of ``curve``) whose value is ``>= target``; NaN if never."""
    hit = curve[curve >= target]
    return float(hit.index[0]) if len(hit) else math.nan


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test for equal means (NaN with < 2 values per side)."""
    a = [v for v in a if v == v]
    b = [v for v in b if v == v]
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)
