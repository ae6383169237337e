"""Statistics over config groups (mean, CI, Welch, ranking) and cost estimates."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from initlab.config import RunConfig
from initlab.ranking.stats import (
    group_stats,
    holm_adjust,
    pairwise_comparisons,
    rank_groups,
    seeds_needed,
    welch_diff_ci,
)
from initlab.ranking.verdict import verdict
from initlab.sweep.estimate import calibrate, cost_table, forward_flops, run_cost, split_sizes

RUNS = pd.DataFrame(
    {
        "init": ["he"] * 4 + ["glorot"] * 4 + ["zeros"] * 3,
        "activation": ["relu"] * 11,
        "seed": [0, 1, 2, 3] * 2 + [0, 1, 2],
        "test_accuracy": [0.85, 0.86, 0.84, 0.85, 0.80, 0.83, 0.81, 0.82, 0.1, 0.1, math.nan],
    }
)


def test_group_stats_mean_std_and_t_interval():
    stats = group_stats(RUNS, ["init", "activation"]).set_index("init")
    he = [0.85, 0.86, 0.84, 0.85]
    assert stats.loc["he", "mean"] == pytest.approx(np.mean(he))
    assert stats.loc["he", "std"] == pytest.approx(np.std(he, ddof=1))
    half = sps.t.ppf(0.975, 3) * np.std(he, ddof=1) / 2
    assert stats.loc["he", "ci"] == pytest.approx(half)
    assert stats.loc["he", "ci_low"] == pytest.approx(np.mean(he) - half)
    assert stats.loc["zeros", "runs"] == 3 and stats.loc["zeros", "n"] == 2  # NaN: not a value
    assert stats.loc["he", "group"] == "he / relu"


def test_pairwise_welch_holm_and_interval():
    pairs = pairwise_comparisons(RUNS, ["init"])
    assert list(pairs[["group_a", "group_b"]].itertuples(index=False, name=None)) == [
        ("he", "glorot"),
        ("he", "zeros"),
        ("glorot", "zeros"),
    ]
    first = pairs.iloc[0]
    expected = sps.ttest_ind([0.85, 0.86, 0.84, 0.85], [0.80, 0.83, 0.81, 0.82], equal_var=False)
    assert first["p_value"] == pytest.approx(expected.pvalue)
    assert first["diff"] == pytest.approx(0.035)
    assert first["diff_low"] < 0.035 < first["diff_high"] and first["diff_low"] > 0
    if hasattr(expected, "confidence_interval"):  # scipy >= 1.11: its own Welch interval
        low, high = expected.confidence_interval(0.95)
        assert (first["diff_low"], first["diff_high"]) == pytest.approx((low, high))
    assert (pairs["p_holm"] >= pairs["p_value"]).all()
    assert holm_adjust([0.01, 0.04, math.nan, 0.03]) == pytest.approx(
        [0.03, 0.06, math.nan, 0.06], nan_ok=True
    )
    assert all(math.isnan(v) for v in welch_diff_ci([1.0], [2.0, 3.0]))


def test_the_interval_excludes_zero_exactly_when_welch_rejects():
    """Two seeds a side, as the report that printed a bootstrap interval of [+0.02, +0.21]
    beside p = 0.269: Welch's interval agrees with its own test, whatever the sample."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = rng.normal(0.1, 0.1, 2), rng.normal(0.0, 0.1, rng.integers(2, 5))
        low, high = welch_diff_ci(a, b)
        p = sps.ttest_ind(a, b, equal_var=False).pvalue
        assert (low > 0 or high < 0) == (p < 0.05), (a, b, p)


def test_ranking_best_first_with_ties():
    ranked = rank_groups(RUNS, ["init"])
    assert ranked["init"].tolist() == ["he", "glorot", "zeros"]
    assert ranked["rank"].tolist() == [1, 2, 3]
    assert math.isnan(ranked.loc[0, "p_vs_best"]) and ranked.loc[0, "tied_with_best"]
    assert ranked.loc[1, "p_vs_best"] < 0.05 and not ranked.loc[1, "tied_with_best"]
    loss = RUNS.assign(test_accuracy=1 - RUNS["test_accuracy"])
    assert rank_groups(loss, ["init"], higher_is_better=False)["init"].iloc[0] == "he"
    assert rank_groups(RUNS.iloc[:0], ["init"]).empty
    # p_holm: Holm over every pair of groups (the report's pairwise table: the same values)
    pairs = pairwise_comparisons(RUNS, ["init"]).set_index(["group_a", "group_b"])
    with_best = [
        pairs["p_holm"].get(("he", g), pairs["p_holm"].get((g, "he"))) for g in ("glorot", "zeros")
    ]
    assert ranked["p_holm"].iloc[1:].tolist() == pytest.approx(with_best)


def test_worse_than_best_claims_hold_their_5_percent_under_the_null():
    """k groups from one distribution: the best is the largest mean, and Holm over its k - 1
    comparisons alone flagged some group worse in 15% of trials at k = 12 (10 seeds).
    Over 400 trials the rate's 99.9% upper bound at a true 5% is 0.05 + 3.3·sqrt(.05·.95/400)
    = 0.086."""
    rng = np.random.default_rng(0)
    trials, flagged = 400, 0
    for _ in range(trials):
        runs = pd.DataFrame(
            {
                "init": np.repeat([f"g{i}" for i in range(12)], 10),
                "test_accuracy": rng.normal(0.9, 0.01, 120),
            }
        )
        flagged += bool((rank_groups(runs, ["init"])["p_holm"].iloc[1:] < 0.05).any())
    assert flagged / trials <= 0.05 + 3.3 * math.sqrt(0.05 * 0.95 / trials)


def _runs(groups: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(g, v) for g, values in groups.items() for v in values]
    return pd.DataFrame(rows, columns=["init", "test_accuracy"])


def test_a_winner_from_two_seeds_in_a_group_is_named_with_a_caution():
    """Two seeds that agree closely make a small gap 'significant' at about one degree of
    freedom (a user's GRU, p = 0.025): the winner is named, with the caution; at 3 seeds
    per group, without it."""
    two = _runs({"gru_he": [0.9100, 0.9102], "default": [0.9000, 0.9003]})
    said = verdict(rank_groups(two, ["init"]))
    assert said.startswith("winner: gru_he, better than the other group")
    assert said.endswith("with 2 seeds in a group the test rests on one difference per spread "
                         "and on normal noise it cannot check: confirm with 3 or more")  # fmt: skip
    three = _runs({"gru_he": [0.9100, 0.9102, 0.9101], "default": [0.9000, 0.9003, 0.9001]})
    said = verdict(rank_groups(three, ["init"]))
    assert said.startswith("winner: gru_he") and "2 seeds" not in said


def test_verdict_names_a_winner_only_when_it_beats_every_other_group():
    assert verdict(rank_groups(RUNS, ["init"])).startswith(
        "winner: he, better than each of the 2 others (Welch's t-test, Holm-adjusted p ≤ "
    )
    close = _runs({"a": [0.90, 0.92, 0.91], "b": [0.905, 0.915, 0.89], "c": [0.5, 0.51, 0.49]})
    ranked = rank_groups(close, ["init"])
    text = verdict(ranked)
    assert text.startswith("no winner at 3 seeds: a cannot be told from b (Holm-adjusted")
    # the seed count from the table's own means and stds (an integer: compared exactly only
    # when computed from the same floats as the verdict's)
    (mean_a, mean_b), (std_a, std_b) = ranked["mean"][:2], ranked["std"][:2]
    assert std_a == pytest.approx(0.01) and mean_a - mean_b == pytest.approx(0.91 - 2.71 / 3)
    needed = seeds_needed(mean_a - mean_b, std_a, 0.05 / 3, std_b=std_b)  # Holm: 3 pairs
    assert f"takes about {needed} seeds per" in text
    diverged = _runs({"a": [0.90, 0.91, 0.92], "b": [0.5, 0.52, 0.51], "c": [math.nan] * 3})
    text = verdict(rank_groups(diverged, ["init"]))
    assert text.startswith("winner: a, better than the other group (")
    assert text.endswith(
        "; c not compared: fewer than two finished seeds (a single run, or the others "
        "diverged or failed)"
    )
    one_seed = _runs({"a": [0.9], "b": [0.8]})
    assert "at least two finished seeds" in verdict(rank_groups(one_seed, ["init"]))
    assert verdict(rank_groups(_runs({"a": [0.9, 0.8]}), ["init"])) == ""


def test_seeds_needed_never_falls_as_the_test_gets_stricter():
    """scipy's nct.cdf deep in the lower tail is NaN at some settings (cdf(-4.77, 4.1, 8) in
    scipy 1.17): the power read NaN, the search passed the n that had it, and alpha/6 asked
    for 7 seeds where alpha/8 asked for 5. Welch's test at alpha/6 with the n returned (and
    one fewer) on 20,000 simulated experiments: the power is reached at n, not at n - 1."""
    gap, std_a, std_b = 0.006771, 0.001881, 0.000208
    counts = [seeds_needed(gap, std_a, 0.05 / k, std_b=std_b) for k in (1, 6, 8, 28)]
    assert counts == sorted(counts), counts
    rng = np.random.default_rng(1)
    n = counts[1]
    rates = []
    for size in (n - 1, n):
        a, b = rng.normal(0.0, std_a, (20_000, size)), rng.normal(gap, std_b, (20_000, size))
        rates.append((sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05 / 6).mean())
    assert rates[0] < 0.8 <= rates[1] + 0.01, (n, rates)  # 0.01: 3 binomial sds of the rate


def test_seeds_needed_gives_the_promised_power():
    """Welch's test at the returned n rejects about 80% of the time when the gap is real:
    20,000 simulated experiments (binomial sd of the rate 0.003) at three effect sizes."""
    rng = np.random.default_rng(0)
    for gap in (0.5, 1.0, 2.0):
        n = seeds_needed(gap, 1.0, alpha=0.05, power=0.8)
        a = rng.normal(0.0, 1.0, (20_000, n))
        b = rng.normal(gap, 1.0, (20_000, n))
        rate = (sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05).mean()
        assert 0.785 <= rate <= 0.87, (gap, n, rate)  # n is the smallest with power >= 0.8
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(1.0, 0.0) is None
    assert seeds_needed(0.1, 0.2, alpha=0.05 / 4) > seeds_needed(0.1, 0.2)
    # one constant group (runs stuck at chance): Welch has n - 1 degrees of freedom, not 2n - 2
    n = seeds_needed(1.0, 0.0, alpha=0.05, power=0.8, std_b=1.0)
    a, b = np.zeros((20_000, n)), rng.normal(1.0, 1.0, (20_000, n))
    b[:, 0] += 1e-9  # keep ttest_ind off its exactly-constant special case
    rate = (sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05).mean()
    assert 0.785 <= rate <= 0.87, (n, rate)


def test_the_seed_estimate_never_asks_for_the_seeds_that_already_failed():
    """A constant group (stuck at chance) next to one that learned a little: 2 seeds could
    not tell them apart, and the estimate (pooled, 2n - 2 degrees of freedom) said 'about 2
    seeds per group'."""
    groups = {"normal": [0.30, 0.31], "zeros": [0.1, 0.1]}
    groups |= {f"x{i}": [0.09 - 0.01 * i] * 2 for i in range(4)}  # stuck too: Holm over 5
    runs = _runs(groups)
    text = verdict(rank_groups(runs, ["init"]))
    assert text.startswith("no winner at 2 seeds: normal cannot be told from zeros")
    found = re.search(r"takes about (\d+) seeds per group", text)
    assert found is None or int(found.group(1)) > 2, text


def test_flops_are_counted_from_the_architecture():
    mlp = RunConfig()  # 784-300-100-10
    assert forward_flops(mlp) == 2 * (784 * 300 + 300 * 100 + 100 * 10)
    # CNN on MNIST-1D (1×40): conv 1→32 (k3) at 40 positions, pool, conv 32→64 at 20,
    # pool, dense 64·10→128, 128→10
    cnn = RunConfig(model="cnn", dataset="mnist1d")
    macs = 32 * 40 * 3 + 64 * 20 * 32 * 3 + 640 * 128 + 128 * 10
    assert forward_flops(cnn) == 2 * macs
    assert split_sizes(mlp) == (55_000, 5_000, 10_000)
    assert split_sizes(mlp.replace(val_size=10_000, limit_train=1000)) == (1000, 10_000, 10_000)
    cost = run_cost(mlp)
    forward = 2 * (784 * 300 + 300 * 100 + 100 * 10)
    assert cost.flops == forward * (3 * 55_000 * 5 + 5_000 * 5 + 10_000)
    assert cost.steps == math.ceil(55_000 / 32) * 5 and cost.model_epochs == 5
    assert 2 < cost.seconds() < 60  # ≈ 1.7 s per model-epoch on one thread


def test_user_data_is_sized_and_costed_once_it_is_read(tmp_path):
    from initlab.errors import InitlabError
    from initlab.sweep.estimate import check_buildable
    from initlab.sweep.footprint import NoEstimate, profile, user_data

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(250, 6, 2)).astype("float32"), rng.integers(0, 4, 250)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    config = RunConfig(dataset=str(path), hidden=(5,), epochs=3, val_size=40, limit_train=100)
    assert run_cost(config) is None  # not read: a dry run does not load user data
    with pytest.raises(NoEstimate):
        profile(config)
    size = profile(config, read_data=True)  # 12 inputs, 4 classes
    assert (size.parameters, size.macs) == (12 * 5 + 5 + 5 * 4 + 4, 12 * 5 + 5 * 4)
    assert split_sizes(config) == (100, 40, 50)
    assert user_data(config) is user_data(config)  # the run's own cached load: one copy
    cost = run_cost(config, read_data=True)
    assert cost.flops == 2 * size.macs * (3 * 100 * 3 + 40 * 3 + 50)
    assert cost.steps == math.ceil(100 / 32) * 3
    cnn = config.replace(model="cnn", hidden=RunConfig().hidden)  # hidden: as the cnn ignores it
    with pytest.raises(InitlabError, match="too small for 2 conv blocks"):
        check_buildable([cnn], read_data=True)
    check_buildable([cnn])  # unread: checked later


def test_cost_table_and_calibration():
    configs = [RunConfig(dataset="digits", hidden=(16,), seed=s) for s in (0, 1)]
    table = cost_table(configs, ["seed"], {configs[0].key(): "ok"})
    assert table.columns.tolist() == ["key", "seed", "epochs", "gflop", "seconds", "status"]
    assert table["status"].tolist() == ["ok", "pending"] and table["gflop"].iloc[0] > 0
    per_gflop, per_step = calibrate(seconds=0.05)
    assert 1e-4 < per_gflop < 1 and 1e-6 < per_step < 0.1


def test_welch_matches_scipy_and_stays_quiet_on_near_identical_seeds():
    """Welch's test is computed here (scipy's warns on near-identical samples, and silencing
    that per call reset the warning registries, so one-time notes printed again)."""
    import warnings

    from initlab.ranking.stats import welch_t_test

    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.normal(0, 1, rng.integers(2, 6)), rng.normal(0.5, 2, rng.integers(2, 6))
        expected = sps.ttest_ind(a, b, equal_var=False).pvalue
        assert welch_t_test(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert 0 <= welch_t_test([0.9, 0.9 + 1e-13, 0.9], [0.9, 0.9, 0.9 - 1e-13]) <= 1
        assert welch_t_test([0.5, 0.5], [0.5, 0.5]) == 1.0
        assert math.isnan(welch_t_test([0.5, 0.5], [0.4, 0.4]))  # undefined, not p = 0
    # identical scores in groups of unequal size (stuck runs): never a difference, though the
    # computed means of 7 and 10 copies of 0.345 differ by rounding
    for value in (0.345, 0.1135, 0.7):
        assert welch_t_test([value] * 7, [value] * 10) == 1.0
        assert welch_diff_ci([value] * 7, [value] * 10) == (0.0, 0.0)
    stuck = pd.DataFrame(
        {"init": ["a"] * 7 + ["b"] * 10, "seed": range(17), "test_accuracy": [0.1135] * 17}
    )
    said = verdict(rank_groups(stuck, ["init"]))
    assert said.startswith("no winner") and "takes about" not in said  # no seeds can separate


def test_the_verdict_names_the_range_of_seeds_when_groups_differ():
    runs = pd.DataFrame(
        {
            "init": ["a"] * 4 + ["b"] * 2,
            "seed": [0, 1, 2, 3, 0, 1],
            "test_accuracy": [0.80, 0.82, 0.81, 0.83, 0.79, 0.84],
        }
    )
    assert verdict(rank_groups(runs, ["init"])).startswith("no winner at 2–4 seeds")


def test_two_constant_groups_of_different_scores_name_no_winner():
    """A 1-example test set: every seed scores 1 or 0. Welch's standard error is 0, so the
    test is undefined (it said p = 0 and 'winner: default ... p ≤ 0')."""
    from initlab.ranking.stats import welch_t_test

    assert math.isnan(welch_t_test([1.0, 1.0], [0.0, 0.0]))
    assert all(math.isnan(v) for v in welch_diff_ci([1.0, 1.0], [0.0, 0.0]))
    assert welch_diff_ci([0.3, 0.3], [0.3, 0.3]) == (0.0, 0.0)  # equal constants: tied
    runs = pd.DataFrame(
        {"init": ["default"] * 2 + ["zeros"] * 2, "seed": [0, 1] * 2, "test_accuracy": [1, 1, 0, 0]}
    )
    ranked = rank_groups(runs, ["init"])
    assert math.isnan(ranked.loc[1, "p_vs_best"]) and math.isnan(ranked.loc[1, "p_holm"])
    assert ranked["tied_with_best"].tolist() == [True, False]
    text = verdict(ranked)
    assert text.startswith("no winner: every seed scored the same in default (1.0000)")
    assert "zeros (0.0000)" in text and "test set may be too small" in text
    assert "winner: default" not in text and "p ≤ 0" not in text
    pairs = pairwise_comparisons(runs, ["init"])
    assert math.isnan(pairs.loc[0, "p_value"]) and math.isnan(pairs.loc[0, "p_holm"])


def test_an_undefined_comparison_stays_out_of_holms_family():
    # best constant at 0.9; one group varies (tested), one constant below it (undefined)
    runs = pd.DataFrame(
        {
            "init": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "seed": [0, 1, 2] * 3,
            "test_accuracy": [0.9, 0.9, 0.9, 0.5, 0.52, 0.48, 0.1, 0.1, 0.1],
        }
    )
    ranked = rank_groups(runs, ["init"]).set_index("group")
    assert math.isnan(ranked.loc["c", "p_holm"])
    # the family: the two defined pairs, (a, b) and (b, c); (a, c) is undefined, left out
    pairs = pairwise_comparisons(runs, ["init"]).set_index(["group_a", "group_b"])["p_value"]
    assert math.isnan(pairs[("a", "c")])
    family = holm_adjust([pairs[("a", "b")], pairs[("b", "c")]])
    assert ranked.loc["b", "p_holm"] == pytest.approx(family[0])
    text = verdict(rank_groups(runs, ["init"]))  # the runner-up's test decides: a winner
    assert text.startswith("winner: a, better than the other group")
    assert "c scored the same on every seed" in text


def test_the_ranking_table_cuts_intervals_to_what_the_score_can_take():
    """compare printed 0.9960 ± 0.0508, an accuracy up to 1.047; the report cut it at 1."""
    from initlab.ranking.scores import ACCURACY, Score
    from initlab.results_console import ranking_table

    ranked = pd.DataFrame(
        dict(rank=[1, 2], group=["he", "zeros"], mean=[0.996, 0.02], ci=[0.0508, 0.05],
             n=[2, 2], runs=[2, 2], p_holm=[float("nan"), 0.001], tied_with_best=[True, False])
    )  # fmt: skip
    shown = ranking_table(ranked, "test accuracy", ACCURACY.ranked_range())
    cells = shown["test accuracy (mean [95% CI])"].tolist()
    assert cells == ["0.9960 [0.9452, 1.0000]", "0.0200 [0.0000, 0.0700]"]
    loss = ranking_table(ranked, "test loss", Score(("sequence",)).ranked_range())
    assert loss["test loss (mean [95% CI])"].tolist()[1] == "0.0200 [0.0000, 0.0700]"
    r2 = ranking_table(
        ranked.assign(mean=[0.2, -0.5]), "test R²", Score(("regression",)).ranked_range()
    )
    assert r2["test R² (mean [95% CI])"].tolist()[1] == "-0.5000 [-0.5500, -0.4500]"


def test_a_large_seed_estimate_is_said_to_two_significant_figures():
    """'takes about 15186 seeds per group' claimed a precision the few seeds behind its
    stds cannot give."""
    from initlab.ranking.verdict import _rounded

    assert [_rounded(n) for n in (7, 99, 151, 15186)] == ["7", "99", "150", "15,000"]
    close = _runs({"a": [0.9000, 0.9100, 0.9200], "b": [0.9001, 0.9099, 0.9195]})
    text = verdict(rank_groups(close, ["init"]))
    found = re.search(r"takes about ([\d,]+) seeds per group", text)
    assert found is not None and found.group(1).endswith(",000"), text
    tie = _runs({"a": [0.9000, 0.9100, 0.9200], "b": [0.9000, 0.9100, 0.92001]})
    text = verdict(rank_groups(tie, ["init"]))  # not 'takes about more than 100,000'
    assert "takes more than 100,000 seeds per group" in text, text


def test_the_ranking_says_worse_or_undecided_never_tied():
    """'tied: yes' read as 'as good as' (a gap of 0.2 over two seeds), and 'tied' is weight
    tying to a language-model user; a group shown worse had an empty cell."""
    from initlab.ranking.scores import ACCURACY
    from initlab.results_console import ranking_table

    ranked = pd.DataFrame(
        dict(rank=[1, 2, 3, 4], group=["he", "lecun", "zeros", "ones"], mean=[0.9, 0.7, 0.1, 0.1],
             ci=[0.1] * 4, n=[2, 2, 2, 1], runs=[2] * 4, p_holm=[math.nan, 0.2, 0.001, math.nan],
             tied_with_best=[True, True, False, False])
    )  # fmt: skip
    shown = ranking_table(ranked, "test accuracy", ACCURACY.ranked_range())
    assert shown["vs best"].tolist() == ["best", "undecided", "worse", ""]
    assert "tied" not in shown.columns


def test_pairwise_welch_is_scipys_welch_for_every_pair():
    """The vectorized pass (ranking 400 groups one test at a time took 6 s) gives every
    pair scipy's Welch p, and the undefined and constant cases their documented values."""
    from initlab.ranking.stats import pairwise_welch

    rng = np.random.default_rng(1)
    groups = [rng.normal(0.9, 0.01, int(rng.integers(0, 6))).tolist() for _ in range(25)]
    groups += [[0.5] * 3, [0.5] * 3, [0.6] * 3, [math.nan, 0.3, 0.31], [1.0], []]
    p = pairwise_welch(groups)
    finite = [[v for v in g if v == v] for g in groups]
    for i, a in enumerate(finite):
        for j, b in enumerate(finite):
            if i == j:
                continue
            if min(len(a), len(b)) < 2:
                assert math.isnan(p[i, j]), (i, j)
            elif np.ptp(a) == 0 and np.ptp(b) == 0:  # both constant: 1 if equal, else NaN
                assert p[i, j] == 1.0 if a[0] == b[0] else math.isnan(p[i, j]), (i, j)
            else:
                expected = sps.ttest_ind(a, b, equal_var=False).pvalue
                assert p[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-12), (i, j)
