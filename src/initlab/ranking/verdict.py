"""The sentence under a ranking (:func:`verdict`): the winner when the statistics support
one, else which groups tie with the best and about how many seeds would tell them apart, or
why there is no verdict at all (too few finished seeds, constant scores)."""

from __future__ import annotations

import math

import pandas as pd

from initlab.errors import option, some_names
from initlab.ranking.stats import SEEDS_SEARCHED, seeds_needed

ROUNDING = 1e-12
"""A gap between two means within this fraction of their size is rounding, not a gap: the
same per-seed accuracies summed in another order differ in the last bits."""


SEEDS_TWO = (
    "; with 2 seeds in a group the test rests on one difference per spread and on normal "
    "noise it cannot check: confirm with 3 or more"
)
"""Said after a winner's test when a group it compared has two runs: at n = 2 Welch's test
has about one degree of freedom, and a pair of seeds that happened to agree closely makes
a small gap "significant" (a user's GRU at p = 0.025; the doctor warns likewise)."""


def _beaten(
    winner: str, rest: pd.DataFrame, alpha: float, stuck_phrase: str, winner_n: int = 3
) -> str:
    """How ``winner`` beat the ``rest`` of the ranking: Welch's test (the worst Holm p) and,
    apart, the groups stuck in every run (``stuck_phrase``: at chance, or at the mean for
    regression) that only the stuck rule parts from it
    (not tied, yet ``p_holm >= alpha``: :func:`initlab.ranking.scores.parted_by_stuck`), whose p
    is no evidence to quote. Starts with its separator from the winner's name: ``, better
    than ...`` or, with stuck groups only, ``; zeros stuck ...`` (a comma there read as a
    list of winners)."""
    compared = rest[(rest["n"] >= 2) & rest["p_vs_best"].notna()]
    stuck = compared[~compared["tied_with_best"].astype(bool) & (compared["p_holm"] >= alpha)]
    tested = compared.drop(stuck.index)
    said = []
    if len(tested):
        them = "the other group" if len(tested) == 1 else f"each of the {len(tested)} others"
        if len(stuck):
            them = some_names(list(tested["group"]))
        worst = float(tested["p_holm"].max())
        said.append(f"better than {them} (Welch's t-test, Holm-adjusted p ≤ {worst:.2g})")
        if min(winner_n, *tested["n"]) == 2:
            said[-1] += SEEDS_TWO
    if len(stuck):
        said.append(
            f"{some_names(list(stuck['group']))} {stuck_phrase} in every run while {winner} "
            f"learned (too few seeds for Welch's test to say so: Holm-adjusted p ≥ {alpha:g})"
        )
    return (", " if len(tested) else "; ") + "; ".join(said)


def verdict(
    ranked: pd.DataFrame,
    alpha: float = 0.05,
    power: float = 0.8,
    lost: dict[str, list[str]] | None = None,
    unfinished: bool = False,
    stuck_phrase: str = "stuck at chance",
) -> str:
    """One sentence on :func:`rank_groups`'s table: the winner when the best group beats every
    other one (``p_holm < alpha`` for each) and lost no run (:func:`_held_back`), else the
    groups it cannot be told from, those the stuck rule parted from it, and about how many
    seeds per group would separate it from the tied group that needs the most
    (:func:`_seeds_to_tell`); when the best two lack two
    finite scores each, why (:func:`_too_few_scores`, naming how their runs were ``lost``:
    group → statuses, and with ``unfinished``, a study with planned runs not in the store
    yet, saying to finish it rather than to add seeds; ``stuck_phrase``: how a stuck group
    is described, :meth:`initlab.ranking.scores.Score.stuck_phrase`). Empty for fewer than two
    groups."""
    if len(ranked) < 2:
        return ""
    best, runner = ranked.iloc[0], ranked.iloc[1]
    if best["n"] < 2 or runner["n"] < 2:
        return _too_few_scores(ranked, lost or {}, unfinished)
    if pd.isna(runner["p_vs_best"]):  # the deciding comparison is undefined
        return _constant_scores(ranked)
    tied = ranked["group"][ranked["tied_with_best"]].tolist()[1:]
    if not tied and (held := _held_back(ranked, lost or {})):
        return held
    if not tied:
        rest = ranked.iloc[1:]
        beaten = _beaten(best["group"], rest, alpha, stuck_phrase, int(best["n"]))
        text = f"winner: {best['group']}{beaten}"
        short = list(rest["group"][rest["n"] < 2])
        if short:
            text += (
                f"; {some_names(short)} not compared: fewer than two finished seeds (a single "
                "run, or the others diverged or failed)"
            )
        flat = rest[(rest["n"] >= 2) & rest["p_vs_best"].isna()]
        if len(flat):
            text += f"; {some_names(list(flat['group']))} scored the same on every seed, as "
            text += f"{best['group']} did: Welch's test cannot compare them"
        return text
    names = some_names(tied)
    counts = ranked["n"][ranked["n"] >= 2].astype(int)
    seeds = f"{counts.min()}–{counts.max()}" if counts.min() != counts.max() else f"{counts.min()}"
    text = (
        f"no winner at {seeds} seeds: {best['group']} cannot be told from {names} "
        f"(Holm-adjusted p ≥ {alpha:g})"
    )
    parted = ranked.iloc[1:][~ranked["tied_with_best"].iloc[1:].astype(bool)]
    stuck = parted[(parted["n"] >= 2) & (parted["p_holm"] >= alpha)]  # the stuck rule's
    if len(stuck):
        text += f"; {some_names(list(stuck['group']))} {stuck_phrase} in every run"
    return text + _seeds_to_tell(ranked, alpha, power, int(counts.min()), int(counts.max()))


def _seeds_to_tell(ranked: pd.DataFrame, alpha: float, power: float, least: int, most: int) -> str:
    """About how many seeds per group would tell the best from the tied group that needs
    the most (:func:`seeds_needed` at ``alpha / (k (k - 1) / 2)``, the strictest Holm level
    over every pair, with the two groups' own spreads): no winner can be named before
    then. A group already told apart from the best is no such group, whatever its rank.
    ``""`` when a tied group's mean equals the best's but for rounding, or no estimate
    exists."""
    best = ranked.iloc[0]
    pairs = len(ranked) * (len(ranked) - 1) // 2  # Holm's family: every pair of the k groups
    hardest = None
    for _, other in ranked.iloc[1:][ranked["tied_with_best"].iloc[1:].astype(bool)].iterrows():
        gap = best["mean"] - other["mean"]
        if other["n"] < 2 or abs(gap) <= ROUNDING * max(abs(best["mean"]), abs(other["mean"])):
            return ""  # equal means but for rounding (k/n accuracies summed in another order)
        seeds = seeds_needed(gap, best["std"], alpha / pairs, power, std_b=other["std"])
        if seeds is None:
            return ""
        if hardest is None or seeds > hardest[0]:
            hardest = (seeds, other, gap)
    if hardest is None:
        return ""
    seeds, other, gap = hardest
    spread = math.sqrt((best["std"] ** 2 + other["std"] ** 2) / 2)
    about = (
        f"; telling it from {other['group']} (gap {abs(gap):.3g}, seed-to-seed std {spread:.3g})"
    )
    if seeds > least:
        count = _rounded(seeds)
        count = count if count.startswith("more") else f"about {count}"
        return f"{about} takes {count} seeds per group at {power:.0%} power"
    return (
        f"{about}: {seeds} seeds per group would find a gap this size {power:.0%} of the time, "
        f"so these seeds may have been unlucky; {most + 2} or more should settle it"
    )


def _rounded(seeds: int) -> str:
    """A seed count as precise as its estimate: exact below 100, else two significant
    figures (``15,000``, not ``15186``: the stds behind it come from a few seeds)."""
    if seeds < 100:
        return str(seeds)
    if seeds >= SEEDS_SEARCHED:
        return f"more than {SEEDS_SEARCHED:,}"
    return f"{round(seeds, 2 - len(str(seeds))):,}"


def has_winner(ranked: pd.DataFrame) -> bool:
    """Whether :func:`verdict` names a winner: the best group and the runner-up each have
    two finite scores, the test against the best is defined, no group is tied with it, and
    nothing holds it back (:func:`_held_back`: it lost runs, or a single run beat it)."""
    if len(ranked) < 2:
        return False
    best, runner = ranked.iloc[0], ranked.iloc[1]
    if best["n"] < 2 or runner["n"] < 2 or pd.isna(runner["p_vs_best"]):
        return False
    return not ranked["tied_with_best"].iloc[1:].any() and not _held_back(ranked, {})


def _held_back(ranked: pd.DataFrame, lost: dict[str, list[str]]) -> str:
    """Why a best group that beats every group tested against it is still no winner, or
    ``""``: it lost runs (``runs > n``: diverged or failed, ``lost`` says which), so the
    mean of its survivors flatters it, as the doctor says when it counts such a run as a
    failure; or a group with a single finished run scored beyond its mean, which no test
    can weigh."""
    best, runner = ranked.iloc[0], ranked.iloc[1]
    missing = int(best["runs"] - best["n"])
    if missing:
        how = "/".join(dict.fromkeys(lost.get(best["group"]) or [])) or "diverged or failed"
        return (
            f"no winner: {best['group']} scored best on its {int(best['n'])} finished seeds, "
            f"but {missing} of its {int(best['runs'])} runs {how}: a mean over the survivors "
            "flatters it; an init that loses runs is no safe choice (see those runs' flags)"
        )
    higher = best["mean"] > runner["mean"]
    single = ranked[ranked["n"] == 1]
    beyond = single[single["mean"] > best["mean"] if higher else single["mean"] < best["mean"]]
    if beyond.empty:
        return ""
    return (
        f"no winner: {some_names(list(beyond['group']))} scored beyond {best['group']} "
        f"({best['mean']:.4g}) in a single finished run, which no test can weigh; add seeds"
    )


def _constant_scores(ranked: pd.DataFrame) -> str:
    """Why there is no winner when Welch's test against the best is undefined (``p_vs_best``
    NaN with two or more scores a side: both groups scored the same on every seed); ``""``
    when every such test is defined."""
    rest = ranked.iloc[1:]
    flat = rest[(rest["n"] >= 2) & rest["p_vs_best"].isna()]
    if flat.empty:
        return ""
    best = ranked.iloc[0]
    names = some_names([f"{g} ({m:.4f})" for g, m in zip(flat["group"], flat["mean"], strict=True)])
    return (
        f"no winner: every seed scored the same in {best['group']} ({best['mean']:.4f}) and "
        f"in {names}, so Welch's t-test cannot compare them: the test set may be too small"
    )


def _too_few_scores(
    ranked: pd.DataFrame, lost: dict[str, list[str]], unfinished: bool = False
) -> str:
    """Why there is no verdict: the groups with fewer than two finite scores, whose runs
    were lost (``lost``: group → the statuses of its runs without a score, e.g. diverged,
    failed; more seeds will not change that), or which have a single run (add seeds)."""
    short = ranked[ranked["n"] < 2]
    found, total = [s for g in short["group"] for s in lost.get(g, [])], int(short["runs"].sum())
    single = int((short["runs"] < 2).sum())
    names = some_names(list(short["group"]))
    kinds = list(dict.fromkeys(found))
    reasons = [
        f"all {total} of their runs {s}"
        if found.count(s) == total
        else f"{found.count(s)} of their {total} runs {s}"
        for s in kinds
    ] + ([f"{single} with a single run"] if single else [])
    why = f" ({'; '.join(reasons)})" if reasons else ""
    if (ranked["n"] == 0).all():
        text = f"no verdict: no group has a single finite score{why}"
    else:
        verb = "has" if len(short) == 1 else "have"
        need = "a verdict needs at least two finished seeds per group"
        text = f"no winner: {need}; {names} {verb} fewer{why}"
    more = max(3, int(ranked["runs"].max()) + 2)  # beyond what ran: 3 seeds said at 3
    seeds = option(  # a study's seeds are its scale's: tiny runs one per group
        f"seeds = {more} or more in the spec, --seeds {more} with compare, --scale default "
        "with a study",
        f"seeds={more} or more with compare, seeds = {more} in a spec, scale='default' with "
        "a study",
    )
    if (ranked["n"] == 0).all() and set(kinds) == {"failed"}:  # seeds would fail the same way
        return f"{text}; fix the error the runs failed with (each run's message) first"
    if single and unfinished:
        again = option("run the same command again", "call it again with the same out=")
        failed = "failed" in kinds
        fix = " (a run that failed on an error fails again until it is fixed)" if failed else ""
        return f"{text}; the study is not finished: {again} to finish it first{fix}"
    if single:
        return f"{text}; add seeds ({seeds})"
    if (short["n"] == 0).all():
        return text + "; more seeds will not change that: see the diverged/failed flags"
    return f"{text}; more seeds ({seeds}) help only if those runs {'/'.join(kinds)} by chance"
