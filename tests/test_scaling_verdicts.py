"""Slopes of log(metric) against log(width): CI coverage, the flag rule, the sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from initlab.scaling.evidence import not_judged
from initlab.scaling.sentences import sentence
from initlab.scaling.verdicts import (
    PRACTICAL_SLOPE,
    depth_verdicts,
    fit,
    is_flagged,
    width_verdicts,
)

WIDTHS = np.array([64, 128, 256, 512, 1024], dtype=float)


def frame(slope: float, noise: float, seeds: int = 3, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    rows = []
    for w in WIDTHS:
        for s in range(seeds):
            value = 0.3 * w**slope * np.exp(noise * rng.standard_normal())
            rows.append(("sp", int(w), 2, s, 1, "blocks.1.fc", "l1", value))
    return pd.DataFrame(
        rows, columns=["param", "width", "depth", "seed", "step", "module", "metric", "value"]
    )


def test_exact_power_law_gives_its_exponent():
    slope, low, high, n, *_ = fit(np.log(WIDTHS), 2.0 * WIDTHS**0.49)
    assert n == 5
    assert slope == pytest.approx(0.49, abs=1e-9)
    assert low <= slope <= high and high - low < 1e-6


def test_the_95_percent_ci_covers_the_true_slope_about_95_percent_of_the_time():
    trials = 400
    hits = 0
    for k in range(trials):
        v = width_verdicts(frame(0.3, noise=0.2, rng_seed=k))[0]
        hits += v.ci_low <= 0.3 <= v.ci_high
    # binomial(400, 0.95): sd 1.1%; 4 sd either side
    assert 0.95 - 0.045 <= hits / trials <= 0.95 + 0.045


def test_flag_rule_needs_significance_and_a_practical_size():
    assert is_flagged(0.5, 0.4, 0.6)
    assert not is_flagged(0.5, -0.1, 1.1)  # CI includes 0
    small = PRACTICAL_SLOPE / 2
    assert not is_flagged(small, small - 1e-3, small + 1e-3)  # significant but tiny
    assert is_flagged(-0.5, -0.6, -0.4)
    assert width_verdicts(frame(0.0, noise=0.05))[0].flagged is False
    assert width_verdicts(frame(0.5, noise=0.05))[0].flagged is True


def test_zeros_and_too_few_points_give_no_verdict():
    assert fit(np.log(WIDTHS), np.zeros(5)) is None
    assert fit(np.log(WIDTHS[:2]), np.ones(2)) is None
    zeros = frame(0.5, 0.0).assign(value=0.0)
    assert width_verdicts(zeros) == []


def test_the_sentence_says_module_size_direction_step_and_ci():
    v = width_verdicts(frame(0.49, noise=0.0))[0]
    text = sentence(v, "sp", "adam", "hidden")
    assert text.startswith("`blocks.1.fc` mean |output| grows as width^0.49 by step 1 (95% CI ")
    assert "updates too large for this width under SP with Adam" in text
    assert text.endswith("muP scales this layer's learning rate by 1/width")


def test_a_power_of_depth_is_fitted_against_log_depth_only():
    rows = []
    for d in (2, 4, 8):
        for s in range(3):
            rows.append(("sp", 64, d, s, 0, "head", "l1", float(d) ** 0.5 * (1 + 0.01 * s)))
    coords = pd.DataFrame(
        rows, columns=["param", "width", "depth", "seed", "step", "module", "metric", "value"]
    )
    (only,) = depth_verdicts(coords)  # one law per series: the power law, which fits
    assert (only.axis, only.law) == ("log_depth", "power")
    assert only.slope == pytest.approx(0.5, abs=0.01)
    assert only.at == 64 and only.flagged


def test_fits_that_cannot_be_made_are_listed_unless_the_metric_is_zero_everywhere():
    """A fit left out for NaNs (a diverged run) or too few positive values is listed; a
    metric that is exactly 0 at every width (a zero readout at step 0) is flat, not missing."""
    judged = frame(0.3, noise=0.1)
    diverged = frame(0.3, noise=0.1).assign(module="blocks.2.fc")
    diverged.loc[diverged.index[2:], "value"] = np.nan  # 2 finite values of 15 are left
    zero = frame(0.3, noise=0.0).assign(module="output", value=0.0)
    sparse = frame(0.3, noise=0.1).assign(module="blocks.3.fc")
    sparse.loc[sparse.index[1:], "value"] = 0.0
    coords = pd.concat([judged, diverged, zero, sparse], ignore_index=True)
    missing = {m["module"]: m for m in not_judged(coords)}
    assert set(missing) == {"blocks.2.fc", "blocks.3.fc"}
    assert missing["blocks.2.fc"]["reason"].startswith("13 of 15 values not finite")
    assert missing["blocks.3.fc"]["reason"].startswith("1 of 15 values positive")
    assert {v.module for v in width_verdicts(coords)} == {"blocks.1.fc"}
