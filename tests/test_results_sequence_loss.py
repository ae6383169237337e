"""Sequence runs (language models) are ranked by test loss, lower first: token accuracy only
counts the top token, and two inits can share it while their perplexities differ 3-fold."""

import math

import pandas as pd
import pytest

from initlab.ranking.summary_format import format_summary
from initlab.report import assemble_report
from initlab.results import ResultSet

# Per group: token accuracies that Welch's test cannot separate, losses that it can.
GROUPS = {
    "default": ([0.30, 0.20, 0.25], [4.62, 4.96, 4.80]),  # perplexity ~120
    "glorot_uniform": ([0.21, 0.29, 0.24], [3.46, 3.47, 3.46]),  # perplexity ~32
}


def _results(task: str = "sequence", with_loss: bool = True) -> ResultSet:
    rows = []
    for group, (scores, losses) in GROUPS.items():
        for seed, (score, loss) in enumerate(zip(scores, losses, strict=True)):
            row = {
                "run_id": f"{group}{seed}",
                "init": group,
                "seed": seed,
                "status": "ok",
                "resolved_task": task,
                "test_accuracy": score,
                "final_train_loss": loss,
            }
            rows.append({**row, "test_loss": loss} if with_loss else row)
    runs = pd.DataFrame(rows)
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_loss=1.0, val_accuracy=0.25)
    return ResultSet(runs, epochs)


def test_sequence_runs_are_ranked_and_judged_by_test_loss():
    results = _results()
    ranked = results.ranking()
    assert list(ranked["group"]) == ["glorot_uniform", "default"]
    assert ranked["mean"].iloc[0] == pytest.approx(3.4633, abs=1e-4)  # the loss, not accuracy
    assert not ranked["tied_with_best"].iloc[1]
    assert results.verdict().startswith("winner: glorot_uniform, better than the other group")


def test_the_summary_shows_test_loss_and_perplexity_for_sequence_runs():
    summary = _results().summary().set_index("init")
    mean = (4.62 + 4.96 + 4.80) / 3
    assert summary.loc["default", "test_loss"] == pytest.approx(mean)
    assert summary.loc["default", "perplexity"] == pytest.approx(math.exp(mean))
    shown = format_summary(_results().summary())
    assert {"test_loss", "perplexity"} <= set(shown.columns)
    assert "test_loss_std" not in shown.columns


def test_classification_runs_are_still_ranked_by_accuracy_without_loss_columns():
    results = _results(task="classification")
    ranked = results.ranking()
    assert list(ranked["group"]) == ["default", "glorot_uniform"]  # higher accuracy first
    assert ranked["tied_with_best"].all()  # the accuracies cannot be told apart
    assert "test_loss" not in results.summary()


def test_sequence_runs_recorded_without_a_loss_fall_back_to_token_accuracy():
    ranked = _results(with_loss=False).ranking()
    assert list(ranked["group"]) == ["default", "glorot_uniform"]
    assert "test_loss" not in _results(with_loss=False).summary()


def test_the_report_ranks_and_compares_sequence_runs_by_loss():
    summary, pairwise = assemble_report(_results(), title="lm").sections[:2]
    assert "ranked by mean test loss (lower is better" in summary.intro
    table = summary.blocks[0].frame
    assert list(table["group"]) == ["glorot_uniform", "default"]
    assert list(table["test loss (mean ± std)"]) == ["3.4633 ± 0.0058", "4.7933 ± 0.1701"]
    pairs = pairwise.blocks[0].frame
    assert pairs["Δ loss (A − B)"].iloc[0].startswith("-1.33")
