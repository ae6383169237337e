import math

import numpy as np
import pandas as pd
import pytest

import initlab
from initlab.compare import comparison_configs
from initlab.errors import InitlabError

EPS = float(np.finfo(np.float64).eps)
TINY = dict(dataset="digits", hidden=(32,), epochs=3, lr=0.1)


@pytest.fixture(scope="module")
def results():
    return initlab.compare(["zeros", "he_normal"], seeds=2, **TINY)


def test_compare_returns_tidy_tables(results):
    assert len(results.runs) == 4
    assert {"init", "seed", "test_accuracy", "final_train_loss", "status", "train_seconds"} <= set(
        results.runs.columns
    )
    assert len(results.epochs) == 4 * 3
    assert set(results.epochs["epoch"]) == {1, 2, 3}


def test_summary_shows_mean_std_and_flags_stuck_runs(results):
    summary = results.summary().set_index("init")
    assert summary.loc["zeros", "stuck"] == 2
    assert summary.loc["he_normal", "test_accuracy"] > 0.8
    std = summary.loc["he_normal", "test_accuracy_std"]
    he = results.runs.loc[results.runs["init"] == "he_normal", "test_accuracy"]
    # the sample std (n − 1) of the two seeds; float64 sums of n = 2 terms of scale ≤ 1
    assert not math.isnan(std) and std == pytest.approx(he.std(ddof=1), abs=50 * EPS * 2**0.5)
    assert summary.loc["he_normal", "epochs_to_90"] in (1.0, 2.0, 3.0)
    assert pd.isna(summary.loc["zeros", "epochs_to_90"])
    text = str(results)
    assert "stuck 2/2" in text and "±" in text
    assert "<table" in results._repr_html_()


def test_save_writes_csvs_and_curves(results, tmp_path):
    paths = results.save(tmp_path)
    assert {p.name for p in paths} == {
        "summary.csv",
        "epochs.csv",
        "by_group.csv",
        "curves.png",
        "layer_stats.csv",  # tracked once per epoch by default
    }
    runs = pd.read_csv(tmp_path / "summary.csv")
    assert len(runs) == 4 and (tmp_path / "curves.png").stat().st_size > 10_000


def test_configs_are_checked_before_anything_runs():
    with pytest.raises(InitlabError, match="did you mean 'glorot_uniform'"):
        comparison_configs(["he_normal", "glorot_unform"], 2, **TINY)
    with pytest.raises(InitlabError, match="seed"):
        comparison_configs(["he_normal"], [], **TINY)
    with pytest.raises(InitlabError, match="epochs"):
        comparison_configs(["he_normal"], 1, **{**TINY, "epochs": 0})
    # init= and seed= are the swept axes: refused, not silently overridden by them
    with pytest.raises(InitlabError, match="init='he_normal': a comparison sweeps init"):
        initlab.compare(init="he_normal", seeds=1, **TINY)
    with pytest.raises(InitlabError, match="seed=7: a comparison sweeps seed; pass seeds="):
        comparison_configs(["he_normal"], 2, seed=7, **TINY)


def test_a_deep_hidden_column_reads_as_the_ranking_labels_it():
    from initlab.ranking.summary_format import format_summary

    summary = pd.DataFrame(
        {
            "hidden": ["-".join(["128"] * 30), "300-100"],
            "runs": [2, 2],
            "test_accuracy": [0.9, 0.8],
            "test_accuracy_std": [0.01, 0.02],
            "final_train_loss": [0.3, 0.4],
            "epochs_to_90": [1.0, float("nan")],
            "ci95": [0.1, 0.1],
            **{k: [0, 0] for k in ("diverged", "stuck", "failed")},
        }
    )
    # 30 × '128-' filled the table and pushed every number out of an 80-column terminal
    assert format_summary(summary)["hidden"].tolist() == ["128×30", "300-100"]


def test_a_one_example_test_set_names_no_winner():
    """Every seed scores 1 or 0 on one test example: Welch's test is undefined (it said
    'winner: default, ... Holm-adjusted p ≤ 0')."""
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4)).astype("float32")
    y = (x[:, 0] > 0.5).astype("int64")  # zeros predicts the majority class 0
    x_test, y_test = np.array([[2.5, 0, 0, 0]], dtype="float32"), np.array([1])
    results = initlab.compare(
        ["default", "zeros"], seeds=2, data=(x, y, x_test, y_test), hidden=(16,), epochs=3,
        optimizer="adam", lr=0.01, track="off",
    )  # fmt: skip
    means = results.summary().set_index("init")["test_accuracy"]
    assert means["default"] == pytest.approx(1.0) and means["zeros"] == pytest.approx(0.0)
    text = results.verdict()
    assert text.startswith("no winner: every seed scored the same") and "too small" in text


def test_ctrl_c_keeps_the_finished_runs_of_a_comparison_without_a_store():
    """No ``out=``: the in-memory store's runs ride on the exception, else they are lost."""
    from initlab.sweep import SweepInterrupted

    finished = []

    def progress(config, record, result):
        if result is not None:
            finished.append(result)
            if len(finished) == 2:
                raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted) as stop:
        initlab.compare(["he_normal", "zeros"], seeds=2, engine="single", progress=progress, **TINY)
    kept = stop.value.results.runs
    assert len(kept) == 2 and set(kept["run_id"]) == {r.config.key() for r in finished}
    assert "the 2 finished run(s) are in this exception's .results" in str(stop.value)


def test_unnamed_inits_put_the_model_as_built_first_for_a_users_model():
    """README: 'default' is the baseline every scheme has to beat, yet a user's model was
    compared without it unless --inits named it."""
    from initlab.compare import comparison_spec
    from initlab.config import DEFAULT_INITS

    def inits(spec):
        return [values[0] for values in spec.axes[0].values]

    assert inits(comparison_spec(model="examples/my_models.py:resnet")) == [
        "default",
        *DEFAULT_INITS,
    ]
    assert inits(comparison_spec()) == list(DEFAULT_INITS)  # the lab's MLP: the lab's seven


def test_an_init_named_twice_is_refused_not_silently_merged():
    from initlab.compare import comparison_spec

    with pytest.raises(InitlabError, match="names default more than once"):
        comparison_spec(["default", "he_normal", "default"])
