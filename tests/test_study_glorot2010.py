"""The glorot2010 study: end to end at tiny scale, and its checks on hand-made results."""

import itertools

import pandas as pd
import pytest

from initlab.results import ResultSet
from initlab.studies import Expectation, StudyContext, get, run_named_study
from initlab.studies import glorot2010 as g


def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("glorot2010", scale="tiny", out=tmp_path, workers=1)
    assert len(outcome.results.runs) == 6  # 3 activations × 2 inits × 1 lr × 1 seed
    assert len(outcome.expectations) == 4
    for e in outcome.expectations:
        assert isinstance(e, Expectation) and e.claim and e.evidence
    assert (tmp_path / "report.html").is_file()
    for name in ("glorot2010-histograms", "glorot2010-sigmoid", "glorot2010-test-error"):
        assert (tmp_path / f"{name}.png").is_file(), name
    assert outcome.expectations[0].reproduced is True  # gradients at init: exact, no training


def test_specs_follow_the_paper_protocol():
    study = get("glorot2010")
    for scale in ("tiny", "default", "full"):
        spec = study.spec(scale)
        assert spec.fixed["batch_size"] == 10 and spec.fixed["optimizer"] == "sgd"
        assert spec.fixed["bias"] == "zeros" and spec.fixed["output_init"] is None
        assert len(spec.fixed["hidden"]) == 5
    assert study.spec("full").fixed["hidden"] == (1000,) * 5


def ctx_of(runs: pd.DataFrame, layer_stats: pd.DataFrame | None = None) -> StudyContext:
    results = ResultSet(runs, pd.DataFrame(), ("activation", "init", "lr"), layer_stats)
    return StudyContext(results, "tiny")


def make_runs(errors: dict[str, float], lrs=(0.1,), seeds=(0, 1)) -> pd.DataFrame:
    """Runs whose test accuracy is 1 − error/100 (± 0.001 per seed) for each Table-1 name."""
    rows = []
    for (name, err), lr, seed in itertools.product(errors.items(), lrs, seeds):
        activation, _, normalized = name.partition(" ")
        acc = 1 - err / 100 + 0.001 * (seed - 0.5)
        rows.append(
            {
                "run_id": f"{name}-{lr}-{seed}",
                "dataset": "digits",
                "activation": activation.lower(),
                "init": g.NORMALIZED if normalized else g.STANDARD,
                "lr": lr,
                "seed": seed,
                "status": "ok",
                "test_accuracy": acc,
                "final_val_accuracy": acc,
            }
        )
    return pd.DataFrame(rows)


PAPER_ORDER = {"Softsign": 15, "Softsign N": 15.5, "Tanh": 17, "Tanh N": 14, "Sigmoid": 30}


def test_test_error_checks_on_the_paper_order():
    errors = g.error_table(ctx_of(make_runs(PAPER_ORDER)))
    assert errors.loc["Tanh N", "err"] == pytest.approx(14, abs=0.01)
    assert g.tanh_normalized_helps(errors).reproduced is True
    assert g.sigmoid_worst(errors).reproduced is True
    assert "Tanh N 14.00" in g.tanh_normalized_helps(errors).evidence


def test_test_error_checks_fail_on_the_wrong_order():
    wrong = {**PAPER_ORDER, "Tanh N": 18, "Sigmoid": 16}
    errors = g.error_table(ctx_of(make_runs(wrong)))
    assert g.tanh_normalized_helps(errors).reproduced is False
    assert g.sigmoid_worst(errors).reproduced is False


def test_one_seed_leaves_the_tanh_gap_undecided():
    """One seed per group has no standard error: a gap of any size is no evidence ('2 se =
    0.00' and 'reproduced' were printed for it)."""
    errors = g.error_table(ctx_of(make_runs(PAPER_ORDER, seeds=(0,))))
    verdict = g.tanh_normalized_helps(errors)
    assert verdict.reproduced is None and "one seed" in verdict.evidence
    worst = g.sigmoid_worst(errors)  # the same evidence standard for every outcome
    assert worst.reproduced is None and "one seed" in worst.evidence


def test_tanh_gap_within_the_noise_is_undecided():
    runs = make_runs({"Tanh": 17, "Tanh N": 16.99})
    assert g.tanh_normalized_helps(g.error_table(ctx_of(runs))).reproduced is None


def test_the_learning_rate_is_chosen_on_validation():
    runs = make_runs({"Tanh": 17, "Tanh N": 14}, lrs=(0.01, 0.1))
    bad = (runs["lr"] == 0.1) & (runs["init"] == g.STANDARD)
    runs.loc[bad, ["final_val_accuracy", "test_accuracy"]] = 0.5  # worse at 0.1
    errors = g.error_table(ctx_of(runs))
    assert errors.loc["Tanh", "lr"] == 0.01 and errors.loc["Tanh", "err"] < 20


def test_diverged_runs_count_as_chance():
    runs = make_runs({"Sigmoid": 10, "Tanh": 17})
    runs.loc[runs["activation"] == "sigmoid", ["test_accuracy", "final_val_accuracy"]] = None
    errors = g.error_table(ctx_of(runs))
    assert errors.loc["Sigmoid", "err"] == pytest.approx(90.0)
    assert g.sigmoid_worst(errors).reproduced is True


def test_gradient_ratio_check():
    ok = g.gradients_shrink_expectation({g.STANDARD: 0.1, g.NORMALIZED: 0.7})
    assert ok.reproduced is True and "0.100" in ok.evidence
    assert g.gradients_shrink_expectation({g.STANDARD: 0.6, g.NORMALIZED: 0.7}).reproduced is False
    assert g.gradients_shrink_expectation({g.STANDARD: 0.1, g.NORMALIZED: 0.2}).reproduced is False
    assert g.gradients_shrink_expectation({g.STANDARD: 0.1}).reproduced is None


def sigmoid_stats(top: list[float], first: list[float], steps_per_epoch: int = 2) -> pd.DataFrame:
    """post_mean rows of a 3-hidden-layer sigmoid run (middle layer constant)."""
    rows = []
    for i, (t, f) in enumerate(zip(top, first, strict=True)):
        epoch = 0 if i == 0 else (i - 1) // steps_per_epoch + 1
        for layer, value in ((0, f), (1, 0.5), (2, t)):
            rows.append(
                {
                    "run_id": "sig",
                    "epoch": epoch,
                    "step": i * 10,
                    "layer": f"blocks.{layer}.linear",
                    "metric": "post_mean",
                    "value": value,
                }
            )
    return pd.DataFrame(rows)


def sigmoid_ctx(stats: pd.DataFrame) -> StudyContext:
    runs = make_runs({"Sigmoid": 90}, seeds=(0,)).assign(run_id="sig")
    return ctx_of(runs, stats)


def test_sigmoid_saturation_reproduced_when_the_top_layer_falls_early():
    stats = sigmoid_stats([0.5, 0.3, 0.15, 0.08, 0.05, 0.04], [0.5] * 6)
    e = g.sigmoid_saturation(sigmoid_ctx(stats))
    assert e.reproduced is True and "→ 0.050" in e.evidence


def test_sigmoid_saturation_not_reproduced():
    slow = sigmoid_stats([0.5, 0.45, 0.4, 0.35, 0.3, 0.05], [0.5] * 6)  # only in epoch 3
    assert g.sigmoid_saturation(sigmoid_ctx(slow)).reproduced is False
    all_move = sigmoid_stats([0.5, 0.3, 0.05, 0.04, 0.03, 0.03], [0.5, 0.4, 0.3, 0.3, 0.3, 0.3])
    assert g.sigmoid_saturation(sigmoid_ctx(all_move)).reproduced is False
    assert g.sigmoid_saturation(sigmoid_ctx(pd.DataFrame())).reproduced is None
