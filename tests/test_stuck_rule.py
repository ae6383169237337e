"""The ``stuck`` rule: a classification run is stuck when its test accuracy is not
significantly above the majority class's share of the test labels (the best constant
prediction; one-sided binomial test, p >= 0.05) — not "below 1.5/classes", which flagged
good runs on noisy binary data and missed runs stuck at the majority class."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import initlab
from initlab.ranking.scores import ACCURACY, Score
from initlab.run_status import OK, STUCK, STUCK_R2_RULE
from initlab.train.result import (
    ENTROPY_MARGIN,
    Baseline,
    dataset_baseline,
    final_status,
    majority_baseline,
)
from initlab.train.tasks import Meter


def labels(counts: dict[int, int]) -> torch.Tensor:
    """Integer class labels with ``counts[c]`` examples of class ``c``."""
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in counts.items()])


def test_noisy_binary_runs_that_learned_are_not_stuck():
    # 30% label noise: the best possible accuracy is about 0.71, the old bar was 0.75
    baseline = majority_baseline(labels({0: 104, 1: 96}))
    assert baseline.share == pytest.approx(0.52) and baseline.n == 200
    assert [final_status(a, baseline) for a in (0.664, 0.696)] == [OK, OK]
    assert final_status(0.52, baseline) == STUCK  # the majority class's share: nothing learned


def test_a_run_at_the_majority_share_of_offset_labels_is_stuck():
    # labels 5..7 of an 8-output model: zeros predicts class 5 (36%), far above 1.5/8
    baseline = majority_baseline(labels({5: 36, 6: 34, 7: 30}))
    assert baseline.share == pytest.approx(0.36) and baseline.n == 100
    assert final_status(0.36, baseline) == STUCK
    assert final_status(0.60, baseline) == OK


def test_on_an_imbalanced_test_set_the_majority_baseline_is_stuck():
    baseline = majority_baseline(labels({0: 94, 1: 6}))
    assert final_status(0.94, baseline) == STUCK  # every example called class 0
    assert final_status(0.97, baseline) == STUCK  # 3 more right of 100: not significant
    assert final_status(0.99, baseline) == OK  # p = 0.015
    assert final_status(1.0, baseline) == OK


def test_the_classic_lab_zeros_is_stuck_and_he_normal_is_not():
    baseline = Baseline(share=0.1, n=10_000)  # Fashion-MNIST's test set: 1000 per class
    assert final_status(0.1, baseline) == STUCK
    assert final_status(0.8481, baseline) == OK


def test_a_regression_run_is_stuck_at_an_r2_of_zero_or_less_and_token_sequences_can_be():
    baseline = Baseline(share=0.5, n=100)
    assert final_status(0.1, baseline, "regression") == OK  # an R² above the mean's 0
    assert final_status(0.0, None, "regression") == STUCK  # the test mean's own R²
    assert final_status(-0.02, None, "regression") == STUCK  # the train mean: worse
    assert final_status(float("nan"), None, "regression") == OK  # diverged or undefined
    assert final_status(0.5, baseline, "sequence") == STUCK  # the most frequent token's share
    assert final_status(0.7, baseline, "sequence") == OK
    assert final_status(0.1, None) == OK  # no test labels known
    assert final_status(float("nan"), baseline) == OK
    assert majority_baseline(torch.zeros(0, dtype=torch.int64)).n == 0
    assert final_status(0.5, Baseline(float("nan"), 0)) == OK


def test_a_regression_r2_within_the_noise_of_the_test_examples_is_stuck():
    """A user's weak regression: R² 0.007 and 0.015 on 200 test points was "learned", so the
    stuck rule named a winner over zeros. Now R² must be significantly above 0."""
    assert final_status(0.01, None, "regression", improvement_p=0.3) == STUCK
    assert final_status(0.01, None, "regression", improvement_p=0.01) == OK
    assert final_status(-0.01, None, "regression", improvement_p=0.01) == STUCK  # R² decides
    assert final_status(0.2, None, "regression", improvement_p=float("nan")) == OK  # no test


def _improvement_p(predictions: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Meter.improvement_p of ``predictions [M, N]`` for targets ``y [N]``, in two batches."""
    meter = Meter("regression", predictions.shape[0], torch.device("cpu"), per_example=True)
    for part in (slice(0, len(y) // 2), slice(len(y) // 2, None)):
        rows = predictions[:, part]
        meter.add(rows[..., None], y[part].expand(len(predictions), -1))
    return meter.improvement_p()


def test_the_improvement_test_separates_a_model_from_noise_around_the_mean():
    g = torch.Generator().manual_seed(0)
    n = 400
    signal = torch.randn(n, generator=g)
    y = signal + torch.randn(n, generator=g)  # half the variance is explained by signal
    mean = y.mean()
    predictions = torch.stack([
        signal,  # R² ≈ 0.5: p tiny
        mean + 0.02 * torch.randn(n, generator=g),  # noise around the mean: R² ≤ 0, p large
        mean.expand(n),  # the mean itself (float32: d_i ≈ 0 up to rounding): p ≈ 0.5
        y,  # perfect: p = 0
    ])  # fmt: skip
    p = _improvement_p(predictions, y)
    assert p[0] < 1e-10 and p[1] > 0.05 and p[2] > 0.05 and p[3] < 1e-10
    # the test agrees with scipy's one-sided paired t-test on the same squared errors
    from scipy import stats

    y64, signal64 = y.double(), signal.double()  # the meter sums in float64
    expected = stats.ttest_rel(
        (y64 - y64.mean()) ** 2, (y64 - signal64) ** 2, alternative="greater"
    ).pvalue
    assert p[0] == pytest.approx(expected, rel=1e-4)
    # the test weighs evidence, not size: a faint but right deviation from the mean, R² of
    # 0.009, is still significant over 400 examples, where noise of any size is not
    faint = mean + 0.01 * (signal - signal.mean())
    (p_faint,) = _improvement_p(faint[None], y)
    r2 = 1 - ((y - faint) ** 2).sum() / ((y - mean) ** 2).sum()
    assert 0 < float(r2) < 0.05 and p_faint < 1e-6


def test_the_improvement_test_at_its_edges():
    """Constant targets (R² undefined) are never stuck; one example has no test; with two
    outputs each example's d sums over them, as the variance-weighted R² does."""
    constant = torch.full((50,), 3.0)
    g = torch.Generator().manual_seed(1)
    noisy = torch.stack([constant, constant + 0.1 * torch.randn(50, generator=g)])
    assert all(math.isnan(p) for p in _improvement_p(noisy, constant))
    assert final_status(float("nan"), None, "regression", improvement_p=1.0) == OK
    one = Meter("regression", 1, torch.device("cpu"), per_example=True)
    one.add(torch.zeros(1, 1, 1), torch.ones(1, 1))
    assert math.isnan(one.improvement_p()[0])
    y = torch.randn(200, 2, generator=g)
    both = Meter("regression", 1, torch.device("cpu"), per_example=True)
    both.add(y[None] + 0.3 * torch.randn(1, 200, 2, generator=g), y[None])
    d = (y - y.mean(0)).square().sum(1) - (both.errors[0][0])
    t = d.mean() / (d.std() / math.sqrt(200))
    assert both.improvement_p()[0] == pytest.approx(float(stats.t.sf(t, 199)), rel=1e-6)


def test_compare_marks_a_regression_run_stuck_when_its_improvement_is_not_significant(
    monkeypatch,
):
    """The engine reads each model's improvement_p from its test meter: an R² above 0 that
    the test cannot tell from the mean's is stuck, and the verdict names no winner."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0).astype("float32")
    data = (x[:300], y[:300], x[300:], y[300:])
    settings = dict(seeds=2, data=data, hidden=(16,), epochs=3, lr=0.01, optimizer="adam",
                    track="off", device="cpu")  # fmt: skip
    learned = initlab.compare(["he_normal", "glorot_normal"], **settings)
    assert (learned.runs["test_accuracy"] > 0.1).all() and set(learned.runs["status"]) == {OK}
    monkeypatch.setattr(Meter, "improvement_p", lambda self: [0.3] * self.models)
    noise = initlab.compare(["he_normal", "glorot_normal"], **settings)
    assert (noise.runs["test_accuracy"] > 0.1).all() and set(noise.runs["status"]) == {STUCK}
    assert noise.verdict().startswith("no winner: none of the 4 finished runs learned")


def test_a_loss_below_the_labels_entropy_is_learning_even_at_the_majority_accuracy():
    """A character model that learned more than letter frequencies (test loss 2.76 nats,
    below the 3.0 of predicting the frequencies) still guessed a space everywhere: its token
    accuracy sat at the space's share, and it was called stuck at chance."""
    baseline = majority_baseline(labels({0: 50, 1: 30, 2: 20}))
    entropy = -sum(p * np.log(p) for p in (0.5, 0.3, 0.2))
    assert baseline.entropy == pytest.approx(entropy, rel=1e-12)  # float64 sums of 3 terms
    assert final_status(0.5, baseline, "sequence", test_loss=0.9 * entropy) == OK
    assert final_status(0.5, baseline, test_loss=0.9 * entropy) == OK
    # predicting the shares (a zero-initialized model's output bias) is the entropy itself,
    # up to float32 rounding; a worse constant prediction is above it: both stuck
    for loss in (entropy, entropy * (1 - 1e-6), entropy * 1.5, float("nan")):
        assert final_status(0.5, baseline, test_loss=loss) == STUCK, loss
    assert majority_baseline(labels({3: 7})).entropy == 0.0  # one class: nothing below 0


def test_one_test_example_can_never_show_learning():
    assert final_status(1.0, majority_baseline(labels({1: 1}))) == STUCK


def test_the_baseline_is_computed_once_per_dataset(monkeypatch):
    import initlab.train.result as result

    calls = []
    real = result.majority_baseline
    monkeypatch.setattr(result, "majority_baseline", lambda y: calls.append(1) or real(y))

    class Data:
        y_test = labels({0: 3, 1: 1})

    data = Data()
    assert dataset_baseline(data) == dataset_baseline(data)
    assert dataset_baseline(data).share == 0.75 and dataset_baseline(data).n == 4
    assert len(calls) == 1


def test_the_rule_is_named_where_it_is_printed():
    rule = ACCURACY.stuck_rule()
    assert rule.startswith("stuck: test accuracy not above the majority-class share")
    assert "binomial" in rule and "1.5/classes" not in rule
    mixed = Score(("classification", "regression")).stuck_rule()
    assert mixed.startswith("stuck (classification runs): test accuracy not above")
    tokens = Score(("sequence",)).stuck_rule()
    assert tokens.startswith("stuck: token accuracy not above the most frequent target token")
    assert Score(("regression",)).stuck_rule() == "stuck: " + STUCK_R2_RULE
    assert "stuck (regression runs): test R² not significantly above 0" in mixed


def test_token_padding_is_no_label_of_the_baseline():
    """-100 (padding) would crash bincount, and counted, would be the 'majority token'."""
    targets = torch.tensor(
        [[3, 3, 3, -100, -100, -100, -100], [3, 5, -100, -100, -100, -100, -100]]
    )
    baseline = majority_baseline(targets)
    assert (baseline.share, baseline.n) == (0.8, 5)  # exact: 4 / 5
    assert baseline.entropy == pytest.approx(-(0.8 * np.log(0.8) + 0.2 * np.log(0.2)))


def test_a_constant_next_token_predictor_is_stuck():
    """A real report: three inits at 0.3691 ± 0, exactly the test share of the space token,
    carried no flag."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(64, 8))
    y = np.where(rng.random((64, 8)) < 0.6, 0, rng.integers(1, 6, size=(64, 8)))

    def lm():
        return torch.nn.Sequential(torch.nn.Embedding(6, 8), torch.nn.Linear(8, 6))

    results = initlab.compare(
        ["zeros"], seeds=1, model=lm, data=(x, y, x, y), task="sequence", epochs=1,
        output_init="same", track="off",
    )  # fmt: skip
    (run,) = results.runs.to_dict("records")
    assert run["status"] == "stuck" and "stuck" in str(results)


def test_compare_flags_a_zero_init_regression_mlp_that_learns_only_its_output_bias():
    """Zeros give every hidden unit the same zero output: only the output bias trains, to
    the train targets' mean, an R² at most 0 on the test set; it was never flagged."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0).astype("float32")
    data = (x[:300], y[:300], x[300:], y[300:])
    results = initlab.compare(
        ["zeros", "he_normal"], seeds=1, data=data, hidden=(16,), epochs=5, lr=0.01,
        optimizer="adam", track="off",
    )  # fmt: skip
    runs = results.runs.set_index("init")
    assert runs.loc["zeros", "test_accuracy"] <= 0 and runs.loc["zeros", "status"] == "stuck"
    assert runs.loc["he_normal", "test_accuracy"] > 0.5 and runs.loc["he_normal", "status"] == "ok"


def test_compare_flags_a_run_at_the_majority_share_of_an_imbalanced_test_set():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    x_test = np.concatenate([np.full((90, 4), -1.0), np.full((10, 4), 1.0)]).astype("float32")
    y_test = np.r_[np.zeros(90), np.ones(10)].astype("int64")  # majority share 0.9 > 1.5/2
    data = (x, y, x_test, y_test)
    results = initlab.compare(
        ["zeros", "he_normal"], seeds=1, data=data, hidden=(8,), epochs=3, lr=0.05,
        optimizer="adam", track="off",
    )  # fmt: skip
    runs = results.runs.set_index("init")
    assert runs.loc["zeros", "test_accuracy"] == pytest.approx(0.9, abs=1e-9)
    assert runs.loc["zeros", "status"] == "stuck"
    assert runs.loc["he_normal", "test_accuracy"] >= 0.99 - 1e-9
    assert runs.loc["he_normal", "status"] == "ok"


def test_the_report_states_the_rule_once_as_the_tables_do():
    import pandas as pd

    from initlab.report import assemble_report
    from initlab.report.html import render_html
    from initlab.results import ResultSet

    runs = pd.DataFrame(
        {
            "run_id": ["a0", "a1", "b0", "b1"],
            "init": ["zeros", "zeros", "he", "he"],
            "seed": [0, 1, 0, 1],
            "status": ["stuck", "stuck", "ok", "ok"],
            "test_accuracy": [0.1, 0.1, 0.84, 0.85],
            "final_train_loss": [2.3, 2.3, 0.4, 0.4],
        }
    )
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_loss=1.0, val_accuracy=0.5)
    report = assemble_report(ResultSet(runs, epochs))
    intro = report.sections[0].intro
    assert f"{ACCURACY.stuck_rule()}; failed: an error." in intro and "1.5" not in intro
    assert ACCURACY.stuck_rule() in render_html(report)


def test_a_test_set_too_small_for_significance_uses_the_majority_count():
    # 4 balanced labels: even 4 of 4 has p = 0.5**4 = 0.0625; the test called it stuck
    four = majority_baseline(labels({0: 2, 1: 2}))
    assert final_status(1.0, four) == OK and final_status(0.75, four) == OK
    assert final_status(0.5, four) == STUCK  # what predicting one class scores
    ten = majority_baseline(labels({0: 5, 1: 5}))  # 0.5**10 < 0.05: the binomial test
    assert final_status(0.8, ten) == STUCK and final_status(1.0, ten) == OK


def test_a_loss_just_below_the_entropy_on_few_examples_is_tested_not_taken():
    """A run at 7.5% accuracy on 200 examples (the majority share 14.5%) was 'ok' because
    its loss was 0.4% below the labels' entropy: noise of the size that 200 examples give.
    The classification meter now tests each example's cross-entropy against the label
    shares' (a paired t-test, as regression's squared errors are)."""
    g = torch.Generator().manual_seed(12)  # a draw whose loss is 0.24% below the entropy
    n, classes = 200, 10
    y = torch.randint(0, classes, (n,), generator=g)
    shares = torch.bincount(y, minlength=classes).double() / n
    constant = shares.clamp_min(1e-12).log().float()  # the best constant: the shares
    noisy = constant + 0.3 * torch.randn(n, classes, generator=g)  # about the entropy
    signal = constant + 3.0 * torch.nn.functional.one_hot(y, classes).float()  # learned
    meter = Meter("classification", 2, torch.device("cpu"), per_example=True)
    for part in (slice(0, n // 2), slice(n // 2, None)):
        meter.add(torch.stack([noisy[part], signal[part]]), y[part].expand(2, -1))
    (noise_loss, _), _ = meter.result()
    baseline = majority_baseline(y)
    assert noise_loss < baseline.entropy * (1 - ENTROPY_MARGIN)  # 'ok' by the margin alone
    p_noise, p_signal = meter.improvement_p()
    assert p_signal < 1e-10 and 0.2 < p_noise < 0.6  # 0.39 here: noise, not learning
    # the test is scipy's one-sided paired t-test on the same cross-entropies
    base = -shares.log()[y]
    ce = torch.nn.functional.cross_entropy(noisy.double(), y, reduction="none")
    expected = stats.ttest_rel(base, ce, alternative="greater").pvalue
    assert p_noise == pytest.approx(expected, rel=1e-4, abs=1e-6)
    below = baseline.entropy * 0.99  # below the margin, as the run's 0.4% was
    assert final_status(0.075, baseline, test_loss=below, improvement_p=p_noise) == STUCK
    assert final_status(0.075, baseline, test_loss=below, improvement_p=0.001) == OK
    assert final_status(0.075, baseline, test_loss=below) == OK  # no test (NaN): the margin


def _constant_sequences(right: int) -> tuple[torch.Tensor, torch.Tensor]:
    """40 test sequences of 50 tokens, each one token throughout (20 of 0s, 20 of 1s: share
    0.5), and logits that predict 0 everywhere but on ``right`` of the 1-sequences, a hair
    from uniform (their loss is the targets' entropy, ln 2)."""
    y = torch.cat([torch.zeros(20, 50), torch.ones(20, 50)]).long()
    logits = torch.tensor([1e-3, 0.0]).expand(40, 50, 2).clone()
    logits[20 : 20 + right] = torch.tensor([0.0, 1e-3])
    return logits.unsqueeze(0), y.unsqueeze(0)


def test_a_sequence_run_is_tested_over_its_sequences_not_its_correlated_tokens():
    """22 of 40 constant sequences right is 1,100 of 2,000 tokens: a binomial test over the
    tokens gives p ~ 4e-6 (``ok``), while the sequences are the independent units: paired
    with the constant's hits per sequence, 2 sequences better of 40 is p ~ 0.08, ``stuck``
    (NLP journey)."""
    out, y = _constant_sequences(right=2)
    meter = Meter("sequence", 1, torch.device("cpu"), per_example=True)
    meter.add(out, y)
    loss, score = meter.result()
    assert score[0] == pytest.approx(0.55)
    baseline = majority_baseline(y[0])
    p_tokens = stats.binomtest(1100, 2000, 0.5, alternative="greater").pvalue
    assert p_tokens < 1e-4  # the premise: the token test called this learning
    assert final_status(score[0], baseline, "sequence", loss[0]) == OK  # as it was
    [loss_p], [accuracy_p] = meter.improvement_p(), meter.accuracy_p()
    assert 0.05 < accuracy_p < 0.2 and loss_p > 0.05
    assert final_status(score[0], baseline, "sequence", loss[0], loss_p, accuracy_p) == STUCK
    # every sequence right: evidence over 40 sequences
    out, y = _constant_sequences(right=20)
    meter = Meter("sequence", 1, torch.device("cpu"), per_example=True)
    meter.add(out, y)
    loss, score = meter.result()
    [loss_p], [accuracy_p] = meter.improvement_p(), meter.accuracy_p()
    assert score[0] == 1.0 and accuracy_p < 1e-6
    assert final_status(score[0], baseline, "sequence", loss[0], loss_p, accuracy_p) == OK
