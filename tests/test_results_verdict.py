"""The verdict and ranking when groups have no (or too few) finite scores: the reason is
named (diverged, failed, a single run), and a group without a score gets no rank."""

import pandas as pd

from initlab.report import assemble_report
from initlab.results import ResultSet


def _results(statuses: dict[str, list[str]], score: float = 0.5) -> ResultSet:
    rows = []
    for group, group_statuses in statuses.items():
        for seed, status in enumerate(group_statuses):
            value = float("nan") if status in ("diverged", "failed") else score + 0.01 * seed
            rows.append(
                {
                    "run_id": f"{group}{seed}",
                    "init": group,
                    "seed": seed,
                    "status": status,
                    "test_accuracy": value,
                    "final_train_loss": 1.0,
                }
            )
    runs = pd.DataFrame(rows)
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_loss=1.0, val_accuracy=0.5)
    return ResultSet(runs, epochs)


def test_every_run_diverged_names_divergence_and_ranks_nothing():
    results = _results({"he": ["diverged"] * 2, "orth": ["diverged"] * 2})
    text = results.verdict()
    assert "diverged" in text and "--seeds 3 or more" not in text
    assert "more seeds will not" in text
    ranked = results.ranking()
    assert ranked["rank"].isna().all() and not ranked["tied_with_best"].any()


def test_failed_group_has_no_rank_and_the_verdict_says_it_failed():
    results = _results({"he": ["ok", "ok"], "bad": ["failed", "failed"]})
    text = results.verdict()
    assert "bad has fewer" in text and "failed" in text and "--seeds 3 or more)" not in text
    ranked = results.ranking().set_index("group")
    assert ranked.loc["he", "rank"] == 1 and pd.isna(ranked.loc["bad", "rank"])
    assert not ranked.loc["bad", "tied_with_best"]


def test_single_seed_verdict_says_how_to_add_seeds_in_a_spec():
    text = _results({"he": ["ok"], "orth": ["ok"]}).verdict()
    assert "seeds = 3 or more in the spec" in text


def test_report_summary_gives_no_rank_to_groups_without_a_score():
    results = _results({"he": ["diverged"] * 2, "orth": ["diverged"] * 2})
    summary = assemble_report(results).sections[0]
    table = summary.blocks[0].frame
    assert set(table["rank"]) == {"—"} and "best" not in set(table["as good as best?"])
    assert "diverged" in summary.blocks[1].text


def test_enough_finite_scores_keep_the_usual_verdict():
    results = _results({"he": ["ok"] * 3, "orth": ["ok"] * 3})
    assert results.verdict().startswith(("winner:", "no winner at 3 seeds"))
    assert results.ranking()["rank"].tolist() == [1, 2]


def test_groups_that_never_learned_never_reach_90_percent_of_the_best():
    # every group at chance: each curve "reaches" 0.9 x a best that is itself chance, and
    # said "1 epoch" for all (a parity task where nothing learned)
    results = _results({"default": ["stuck", "stuck"], "tiny": ["stuck", "ok"]})
    summary = results.summary().set_index("init")
    assert pd.isna(summary.loc["default", "epochs_to_90"])
    assert summary.loc["tiny", "epochs_to_90"] == 1  # one run learned: the curve counts
