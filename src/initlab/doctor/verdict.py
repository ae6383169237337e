"""The statistics of the trials and the verdict they support.

Per run: ``final`` = the validation loss after the last epoch; ``area`` = the mean of the
validation-loss curve over its epochs (trapezoid rule over the training steps, divided by
their number: the area under the curve per step, lower = learned sooner). A run that
diverged has no final loss and counts as a failure of its candidate.

**Paired tests.** Candidate c and the reference r are paired by run cell (init seed i, data
seed j): ``d_ij = final_c(i, j) - final_r(i, j)``. Cells that share an init seed (or a data
order) share that seed's luck, so the N² cells are not N² independent pairs: ``p`` and the
95% interval of ``mean(d)`` come from the crossed random-effects design ``d_ij = mu + a_i +
b_j + e_ij`` (:mod:`initlab.doctor.crossed`: variance of the mean from the two-way
mean squares, Satterthwaite's degrees of freedom), whose interval excludes 0 exactly when
its ``p`` (before Holm) is below 0.05. Treating the cells as independent (the paired t-test
over cells, used until 2026-12-03) rejected a true null up to 39% of the time in simulation
when init seeds moved the difference. With a cell missing (a diverged run), Student's t over
the per-init-seed mean differences (the crossed test on a non-square remainder can reject a
true null 9% of the time).
Wilcoxon's signed-rank test of the per-init-seed mean differences is reported beside it
(with 3 init seeds its smallest p is 0.25). ``p`` is Holm-adjusted over the
candidates compared with the same reference.

**Verdict.** The winner is the candidate with the lowest mean final loss among those whose
Holm-adjusted ``p < ALPHA``, whose interval lies below 0, whose gain ``-mean(d)``
exceeds the seed noise (the standard deviation, ddof 1, of the reference's final losses over
its runs: a gain smaller than the spread between two seeds does not matter in practice) and
which never diverged; if there is none, the reference stays.

**Variance split** (two-way ANOVA without replication, per candidate, I init × J data seeds,
``y_ij`` the final loss, ``ȳ`` means): ``SS_init = J Σ_i (ȳ_i. - ȳ)²``, ``SS_data = I Σ_j
(ȳ_.j - ȳ)²``, ``SS_inter = Σ_ij (y_ij - ȳ_i. - ȳ_.j + ȳ)²`` (the interaction, confounded
with noise). Random-effect components from the mean squares ``MS = SS/df`` (df ``I-1``,
``J-1``, ``(I-1)(J-1)``): ``σ²_inter = MS_inter``, ``σ²_init = max(0, (MS_init -
MS_inter)/J)``, ``σ²_data = max(0, (MS_data - MS_inter)/I)``; each is reported as a share of
their sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from initlab.doctor.crossed import crossed_mean_test
from initlab.doctor.learned import caveat, lowest_loss
from initlab.errors import option
from initlab.ranking.stats import holm_adjust, mean_ci
from initlab.run_status import OK, STUCK
from initlab.train.result import RunResult

ALPHA = 0.05


def curve_area(epochs: Sequence[dict]) -> float:
    """Mean validation loss per step (trapezoid over equally spaced epochs; one epoch:
    its value)."""
    values = [e["val_loss"] for e in epochs]
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan
    if len(values) == 1:
        return float(values[0])
    return float(np.trapezoid(values) / (len(values) - 1))


def run_table(names: Sequence[str], results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: ``candidate, seed, data_seed, status, final, lowest, area, message``
    (``lowest``: its lowest validation loss over the epochs, :mod:`initlab.doctor.learned`;
    ``message``: a failed run's error, a diverged run's step). ``stuck`` (a test accuracy
    at chance) does not apply: the trials never test (their test split is one validation
    example), so such a run is ``ok``."""
    rows = []
    for name, result in zip(names, results, strict=True):
        final = result.epochs[-1]["val_loss"] if result.epochs else math.nan
        ok = result.status not in ("diverged", "failed") and math.isfinite(final)
        rows.append(
            {
                "candidate": name,
                "seed": result.config.seed,
                "data_seed": result.config.data_seed,
                "status": OK if result.status == STUCK else result.status,
                "final": final if ok else math.nan,
                "lowest": lowest_loss(result.epochs) if ok else math.nan,
                "area": curve_area(result.epochs) if ok else math.nan,
                "message": result.message,
            }
        )
    return pd.DataFrame(rows)


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its 95% Student-t interval ``mean ± t_{0.975, n-1}
    s / sqrt(n)`` (:func:`initlab.ranking.stats.mean_ci`); ``low = high = mean`` with fewer than two
    values or identical ones. For paired differences it is the paired t-test's interval, so
    it excludes 0 exactly when that test's p < 0.05 (a percentile bootstrap, used until
    2026-12-03, is too narrow at the 4-9 cells of a short trial)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean, _, half = mean_ci(values)
    if not math.isfinite(half):
        return mean, mean, mean
    return mean, mean - half, mean + half


def ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Per candidate, best first: mean and interval of ``final`` and ``area``
    (:func:`candidate_interval`), runs, runs without a final loss (``diverged``: diverged or
    ``failed``; ``failed`` counts the latter alone), and the rank by area. Candidates
    that never diverged come first, by mean final loss; then those with diverged runs, fewest
    first (a mean over the survivors alone flatters them: a diverged run is a failure)."""
    rows = []
    for name, frame in table.groupby("candidate", sort=False):
        final = candidate_interval(frame, "final")
        area = candidate_interval(frame, "area")
        rows.append(
            {
                "candidate": name,
                "final": final[0],
                "final_low": final[1],
                "final_high": final[2],
                "lowest": float(frame["lowest"].mean()) if "lowest" in frame else math.nan,
                "area": area[0],
                "area_low": area[1],
                "area_high": area[2],
                "runs": len(frame),
                "diverged": int(frame["final"].isna().sum()),
                "failed": int((frame["status"] == "failed").sum()),
            }
        )
    ranked = pd.DataFrame(rows).sort_values(
        ["diverged", "final"], na_position="last", kind="stable"
    )
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    ranked["rank_by_area"] = ranked["area"].rank(method="min", na_option="bottom").astype(int)
    return ranked.reset_index(drop=True)


def candidate_interval(frame: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """``(mean, low, high)`` of one candidate's ``metric`` over its init seed × data seed
    grid: the crossed design's interval for a complete grid (the cells share their seeds'
    luck, so they are not independent: :func:`~initlab.doctor.crossed.crossed_mean_test`),
    else Student's t over the per-init-seed means (the independent units). A loss is never
    negative: ``low`` is cut at 0 (a wide interval read ``-3.5`` for a cross-entropy)."""
    grid = frame.pivot(index="seed", columns="data_seed", values=metric)
    if grid.shape[0] >= 2 and grid.shape[1] >= 2 and grid.notna().all().all():
        mean, half, _ = crossed_mean_test(grid.to_numpy(float))
        low, high = mean - half, mean + half
    else:
        mean, low, high = mean_interval(grid.mean(axis=1).dropna().to_numpy(float))
    return mean, max(low, 0.0), high  # NaN stays NaN: 0.0 > NaN is False


def paired_tests(table: pd.DataFrame, reference: str, metric: str = "final") -> pd.DataFrame:
    """Every other candidate against ``reference``, paired by (seed, data_seed): ``n``,
    ``diff`` (mean of candidate - reference), ``diff_low``/``diff_high``, ``p`` (paired t),
    ``p_wilcoxon`` and ``p_holm``."""
    keyed = table.set_index(["seed", "data_seed"])
    ref = keyed[keyed["candidate"] == reference][metric]
    rows = []
    for name in dict.fromkeys(table["candidate"]):
        if name == reference:
            continue
        mine = keyed[keyed["candidate"] == name][metric]
        both = pd.concat([mine, ref], axis=1, keys=["c", "r"]).dropna()
        rows.append({"candidate": name, "reference": reference, **_paired(both["c"], both["r"])})
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm_adjust(frame["p"].tolist()) if rows else []
    return frame


def _paired(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """The test of ``a - b`` (indexed by ``(seed, data_seed)``, complete pairs only): the
    crossed design's (module docstring) when every cell is there; else (a diverged run left a
    hole) Student's t over the per-init-seed mean differences, the init seeds being the
    independent units (the crossed test on what remains, a non-square grid, can reject a
    true null 9% of the time, or give an interval of ±1e32); NaN with fewer than two init
    seeds."""
    grid = (a - b).unstack("data_seed")
    full = grid if grid.shape[0] >= 2 and grid.shape[1] >= 2 and grid.notna().all().all() else None
    if full is not None:
        mean, half, p = crossed_mean_test(full.to_numpy(float))
        w = _wilcoxon(full.mean(axis=1).to_numpy(float))
        n = full.size
        return dict(n=n, diff=mean, diff_low=mean - half, diff_high=mean + half, p=p, p_wilcoxon=w)
    rows = grid.mean(axis=1).dropna().to_numpy(float)
    n = int(grid.notna().to_numpy().sum())
    mean, low, high = mean_interval(rows)
    if len(rows) < 2:
        return dict(n=n, diff=mean, diff_low=low, diff_high=high, p=math.nan, p_wilcoxon=math.nan)
    if np.ptp(rows) == 0:
        p = 1.0 if rows[0] == 0 else 0.0
        return dict(n=n, diff=mean, diff_low=low, diff_high=high, p=p, p_wilcoxon=p)
    p = float(sps.ttest_1samp(rows, 0.0).pvalue)
    return dict(n=n, diff=mean, diff_low=low, diff_high=high, p=p, p_wilcoxon=_wilcoxon(rows))


def _wilcoxon(d: np.ndarray) -> float:
    """Wilcoxon's signed-rank p-value of ``d`` (1 when every value is 0)."""
    return float(sps.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0


def seed_noise(table: pd.DataFrame, reference: str) -> float:
    """The standard deviation (ddof 1) of ``reference``'s final losses over its runs."""
    values = table.loc[table["candidate"] == reference, "final"].dropna()
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def variance_split(table: pd.DataFrame) -> pd.DataFrame:
    """Per candidate (every cell finite): the shares of init seed, data order and their
    interaction in the variance of the final loss (module docstring)."""
    rows = []
    for name, frame in table.groupby("candidate", sort=False):
        y = frame.pivot(index="seed", columns="data_seed", values="final").to_numpy(float)
        if y.shape[0] < 2 or y.shape[1] < 2 or not np.isfinite(y).all():
            continue
        rows.append({"candidate": name, **_components(y)})
    return pd.DataFrame(rows)


def _components(y: np.ndarray) -> dict[str, float]:
    n_i, n_j = y.shape
    grand, rows, cols = y.mean(), y.mean(axis=1), y.mean(axis=0)
    ss_init = n_j * float(((rows - grand) ** 2).sum())
    ss_data = n_i * float(((cols - grand) ** 2).sum())
    ss_inter = float(((y - rows[:, None] - cols[None, :] + grand) ** 2).sum())
    ms_inter = ss_inter / ((n_i - 1) * (n_j - 1))
    init = max(0.0, (ss_init / (n_i - 1) - ms_inter) / n_j)
    data = max(0.0, (ss_data / (n_j - 1) - ms_inter) / n_i)
    total = init + data + ms_inter
    share = (lambda v: v / total) if total > 0 else (lambda v: math.nan)
    return {
        "var_total": total,
        "init_seed": share(init),
        "data_order": share(data),
        "interaction": share(ms_inter),
        "ss_init": ss_init,
        "ss_data": ss_data,
        "ss_inter": ss_inter,
    }


def _no_winner(
    tests: pd.DataFrame, runs: pd.DataFrame, label: str, steps: int, design: str, noise: float
) -> str:
    """Why no candidate wins, by the candidate that came closest: a confirmed gain above
    the seed noise in a candidate that diverged in some runs, a gain above the noise the test
    cannot confirm (more seeds or steps would tell), a confirmed gain below the noise (not worth
    switching), or neither. ``runs``: per candidate, ``diverged`` and ``runs``."""
    after = f"after {steps} steps ({design})"
    gains = tests.assign(gain=-tests["diff"]).sort_values("gain", ascending=False)
    unstable = gains[(gains["candidate"].map(runs["diverged"]) > 0)]
    unstable = unstable[(unstable["p_holm"] < ALPHA) & (unstable["gain"] > noise)]
    if len(unstable):
        top = unstable.iloc[0]
        lost = runs.loc[top["candidate"]]
        of = f"/{int(lost['runs'])}" if lost["runs"] == lost["runs"] else " run(s)"
        return (
            f"{top['candidate']} beats {label} by {top['gain']:.3g} (p = {top['p_holm']:.2g}) "
            f"{after} in the runs that finished, but diverged in {int(lost['diverged'])}{of}: "
            f"keep {label}, or retry it with a smaller {option('--lr')}"
        )
    clean = runs.index[runs["diverged"] == 0]
    gains = gains[gains["candidate"].isin(clean)]
    unsure = gains[(gains["gain"] > noise) & ~(gains["p_holm"] < ALPHA)]
    small = gains[(gains["p_holm"] < ALPHA) & (gains["diff_high"] < 0)]
    if len(unsure):
        top = unsure.iloc[0]
        return (
            f"{top['candidate']} looks better than {label} by {top['gain']:.3g}, more than "
            f"the seed noise ({noise:.2g}), but the trials cannot tell it from chance "
            f"{after}: p = {top['p_holm']:.2g}; more seeds (a larger {option('--trials')}) or "
            f"more steps (a larger {option('--budget')}) would decide: keep {label} until then"
        )
    if len(small):
        top = small.iloc[0]
        return (
            f"{top['candidate']} beats {label} by {top['gain']:.3g} (p = {top['p_holm']:.2g}) "
            f"{after}, less than the seed noise ({noise:.2g}): not worth switching, "
            f"keep {label}"
        )
    worse = _worse(tests)
    if worse:
        return (
            f"no candidate beats {label} by more than the seed noise {after}; {worse}: keep {label}"
        )
    return f"no candidate differs from {label} by more than the seed noise {after}: keep {label}"


def confirmed_worse(tests: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``tests`` whose candidate the test confirms worse than the reference."""
    return tests[(tests["p_holm"] < ALPHA) & (tests["diff_low"] > 0)]


def _worse(tests: pd.DataFrame) -> str:
    """``orthogonal is worse (by 0.327, p = 0.0017)``: the candidates the test confirms
    are worse than the reference, the worst first; ``""`` when none is."""
    worse = confirmed_worse(tests)
    if worse.empty:
        return ""
    rows = worse.sort_values("diff", ascending=False)
    named = [f"{r.candidate} (by {r.diff:.3g}, p = {r.p_holm:.2g})" for r in rows.itertuples()]
    return f"{', '.join(named)} {'is' if len(named) == 1 else 'are'} worse"


def decide(
    ranked: pd.DataFrame,
    tests: pd.DataFrame,
    reference: str,
    steps: int,
    design: str,
    noise: float,
    error: str = "",
    chance: float = math.nan,
) -> dict[str, Any]:
    """The verdict: ``winner`` (a name or ``None``), ``message``, and the numbers behind it;
    ``noise``: the seed noise of the reference (module docstring); ``error``: the first
    failed run's message, quoted when no trial finished; ``chance``: the labels' chance
    loss (:func:`~initlab.doctor.learned.chance_loss`): when no candidate got below it, or
    every candidate overfit, the message says so and ``at_chance`` or ``overfit`` is true,
    whatever the winner (:func:`initlab.doctor.learned.caveat`)."""
    decision = _decide(ranked, tests, reference, steps, design, noise, error)
    decision["at_chance"], decision["overfit"], said = caveat(ranked, chance)
    decision["message"] += said
    return decision


def _decide(
    ranked: pd.DataFrame,
    tests: pd.DataFrame,
    reference: str,
    steps: int,
    design: str,
    noise: float,
    error: str = "",
) -> dict[str, Any]:
    """:func:`decide` without the chance check."""
    label = "the model as built (default)" if reference == "default" else reference
    clean = set(ranked.loc[ranked["diverged"] == 0, "candidate"])
    good = tests[(tests["p_holm"] < ALPHA) & (tests["diff_high"] < 0)]
    good = good[good["candidate"].isin(clean) & (-good["diff"] > noise)]
    worse = confirmed_worse(tests)["candidate"].tolist()
    base = {"reference": reference, "steps": steps, "alpha": ALPHA, "worse": worse}
    base["seed_noise"] = noise
    if ranked.empty or not ranked["final"].notna().any():
        why = f"the first run failed with: {error}" if error else "see each run's message"
        message = f"no trial finished ({design}): nothing to compare; {why}"
        return {**base, "winner": None, "message": message}
    if good.empty:
        runs = ranked.set_index("candidate").reindex(columns=["diverged", "runs"])
        message = _no_winner(tests, runs, label, steps, design, noise)
        return {**base, "winner": None, "message": message}
    order = ranked.set_index("candidate")["final"]
    best = good.loc[good["candidate"].map(order).idxmin()]
    half = (best["diff_high"] - best["diff_low"]) / 2
    message = (
        f"{best['candidate']} beats {label} by {-best['diff']:.3g} ± {half:.2g} validation "
        f"loss after {steps} steps (p = {best['p_holm']:.2g}, {design})"
    )
    lower = [  # clean ones only: a diverged candidate's mean is of its survivors
        c
        for c, loss in order.items()
        if loss < order[best["candidate"]] and c != reference and c in clean
    ]
    if lower:  # ranked above the winner, yet not told apart from the reference
        message += (
            f"; {', '.join(lower)} had a lower mean loss but could not be told from {label} "
            f"(more seeds or a larger {option('--budget')} may)"
        )
    return {
        **base,
        "winner": best["candidate"],
        "message": message,
        "diff": float(best["diff"]),
        "diff_low": float(best["diff_low"]),
        "diff_high": float(best["diff_high"]),
        "p_holm": float(best["p_holm"]),
        "p": float(best["p"]),
    }
