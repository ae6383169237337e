"""The HTML/Markdown report: sections, escaping, statistics, sweeps, per-layer heatmaps."""

import base64
import math
import re
import shlex

import numpy as np
import pandas as pd
import pytest
import torch

import initlab
from initlab.ranking.stats import pairwise_comparisons
from initlab.report import assemble_report, build_report
from initlab.report.layers import grad_norm_metric, layer_grids
from initlab.report.model import Note
from initlab.report.stuck_notes import stuck_reasons
from initlab.report.sweep import (
    hidden_widths,
    is_depth_scale_sweep,
    sigma_b2_of,
    sigma_w2_of,
    theory_curve,
    trainability_panels,
)
from initlab.report.tables import _p, pairwise_table, ranked_summary
from initlab.results import ResultSet

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def results() -> ResultSet:
    """A real, small comparison: digits, 16 hidden units, 2 epochs, 2 seeds."""
    return initlab.compare(
        ["he_normal", "zeros"],
        seeds=2,
        dataset="digits",
        hidden=(16,),
        epochs=2,
        lr=0.1,
        track="off",
    )


def layer_stats_for(runs: pd.DataFrame, epochs: int = 2) -> pd.DataFrame:
    """Synthetic probe rows: weight_grad_norm shrinking toward the input (zero for zero init),
    plus a metric the report does not use."""
    rows = []
    for run_id, init in zip(runs["run_id"], runs["init"], strict=True):
        for epoch in range(epochs + 1):
            for depth, layer in enumerate(["0", "2"]):
                norm = 0.0 if init == "zeros" and layer == "0" else 10.0 ** (depth - epoch / 4)
                for metric, value in (("weight_grad_norm", norm), ("post_std", 0.5)):
                    rows.append(
                        {
                            "run_id": run_id,
                            "epoch": epoch,
                            "step": epoch * 10,
                            "layer": layer,
                            "metric": metric,
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows)


def synthetic_results(groups: dict[str, list[float]], **columns) -> ResultSet:
    """Runs with given test accuracies per init, one epoch each."""
    runs, epochs = [], []
    for init, accuracies in groups.items():
        for seed, accuracy in enumerate(accuracies):
            run_id = f"{abs(hash(init)) % 10**8:08d}{seed:02d}"
            runs.append(
                {
                    "run_id": run_id,
                    "init": init,
                    "seed": seed,
                    "hidden": "16",
                    "activation": "relu",
                    "bias": "zeros",
                    "status": "ok",
                    "test_accuracy": accuracy,
                    "final_train_loss": 1 - accuracy,
                    "final_val_accuracy": accuracy,
                    "epochs_done": 1,
                    "message": "",
                    **columns,
                }
            )
            epochs.append(
                {
                    "run_id": run_id,
                    "init": init,
                    "seed": seed,
                    "epoch": 1,
                    "train_loss": 1 - accuracy,
                    "train_accuracy": accuracy,
                    "val_loss": 1 - accuracy,
                    "val_accuracy": accuracy,
                }
            )
    return ResultSet(pd.DataFrame(runs), pd.DataFrame(epochs), ["init"])


def test_build_report_writes_a_self_contained_page_and_markdown(results, tmp_path):
    stats = layer_stats_for(results.runs)
    paths = build_report(results, tmp_path, layer_stats=stats, title="digits lab")
    html = paths.html.read_text()
    for section in ("summary", "pairwise", "curves", "accuracy", "gradients", "failures", "runs"):
        assert f'<section id="{section}">' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 3 and all(src.startswith("data:image/png;base64,") for src in images)
    png = base64.b64decode(images[0].split(",", 1)[1])
    assert png.startswith(b"\x89PNG")
    assert "<details>" in html and "<summary>all 4 runs</summary>" in html
    md = paths.markdown.read_text()
    for image in paths.images:
        assert image.exists() and f"]({image.name})" in md
    assert {p.name for p in paths.images} == {"report_curves.png", "accuracy.png", "gradients.png"}


def test_summary_is_ranked_and_marks_stuck_runs(results):
    report = assemble_report(results)
    table = report.sections[0].blocks[0].frame
    assert list(table["group"]) == ["he_normal", "zeros"]
    assert list(table["rank"]) == ["1", "2"]
    assert table.loc[1, "stuck"] == "2"
    assert re.fullmatch(r"\[\d\.\d{4}, \d\.\d{4}\]", table.loc[1, "95% CI"])
    assert "±" in table.loc[0, "test accuracy (mean ± std)"]
    notes = [b.text for b in report.sections[0].blocks if isinstance(b, Note)]
    (why,) = [n for n in notes if "stuck" in n]  # zeros only: he_normal learned
    assert why.startswith("zeros: every run stuck at chance") and "symmetry" in why


def test_a_stuck_group_that_is_not_constant_is_pointed_to_its_gradients():
    res = synthetic_results({"he_normal": [0.9, 0.91], "random_normal(stddev=1e-4)": [0.1] * 2})
    res.runs.loc[res.runs["test_accuracy"] < 0.2, "status"] = "stuck"
    ranked = ranked_summary(res.summary(), res.runs, ["init"])
    (why,) = stuck_reasons(ranked, ["init"], tracked=True)
    assert why.startswith("random_normal(stddev=1e-4): every run stuck")
    assert "symmetry" not in why and "per-layer gradients" in why
    # the command pastes into a shell as it is; without tracking there is no section to see
    assert "initlab diagnose --init 'random_normal(stddev=1e-4)', given the runs'" in why
    (untracked,) = stuck_reasons(ranked, ["init"])
    assert "per-layer gradients" not in untracked and "initlab diagnose" in untracked
    assert (
        shlex.split(untracked.split(": see ")[1].split(",")[0])[3] == "random_normal(stddev=1e-4)"
    )


def test_a_stuck_group_whose_init_learned_elsewhere_blames_the_settings():
    """Every lr=0.001 group of a sweep was stuck while the same inits learned at lr=0.01,
    and each heard 'the usual cause is the signal at init'."""
    ranked = pd.DataFrame(
        {
            "group": ["he_normal / 0.01", "he_normal / 0.001", "zeros / 0.01"],
            "init": ["he_normal", "he_normal", "zeros"],
            "lr": [0.01, 0.001, 0.01],
            "stuck": [0, 2, 2],
            "runs": [2, 2, 2],
        }
    )
    he, zeros = stuck_reasons(ranked, ["init", "lr"])
    assert he.startswith("he_normal / 0.001: every run") and "learned in he_normal / 0.01" in he
    assert "signal at init" not in he and "another learning rate" in he
    assert "(lr 0.001 here, 0.01 there)" in he
    assert "symmetry" in zeros  # zeros learned nowhere: its own cause stands
    # an init whose other group diverged did not learn there: the init stays suspected
    broke = ranked.assign(stuck=[0, 2, 2], diverged=[2, 0, 0])
    he, _ = stuck_reasons(broke, ["init", "lr"])
    assert "learned in" not in he and "signal at init" in he
    # a constant init keeps its symmetry explanation even where another group learned
    lucky = ranked.assign(init=["zeros", "zeros", "he_normal"], stuck=[0, 2, 0])
    (zeros,) = stuck_reasons(lucky, ["init", "lr"])
    assert "symmetry" in zeros and "learned in" not in zeros


def test_a_stuck_group_whose_init_learned_with_batch_norm_names_it_and_keeps_the_init():
    """The batch-norm study: random_normal(0.01) stuck without batch norm, learning with it.
    The note said the settings 'not the init' were the cause, the opposite of the study's
    lesson, and named learning rate and epochs, which did not differ."""
    ranked = pd.DataFrame(
        {
            "group": ["batch_norm=True, init=small", "batch_norm=False, init=small"],
            "init": ["random_normal(stddev=0.01)"] * 2,
            "batch_norm": [True, False],
            "stuck": [0, 2],
            "runs": [2, 2],
        }
    )
    (why,) = stuck_reasons(ranked, ["batch_norm", "init"])
    assert "(batch_norm False here, True there)" in why
    assert "not the init alone" in why and "learning rate" not in why


def test_user_strings_are_escaped_everywhere(tmp_path):
    res = synthetic_results({EVIL: [0.9, 0.92], "he_normal": [0.5, 0.52], "odd$x^2$": [0.1] * 2})
    res.runs.loc[0, "status"] = "failed"
    res.runs.loc[0, "message"] = 'bad <img src=x onerror="alert(2)"> | pipe'
    paths = build_report(res, tmp_path, title=f"{EVIL} title")
    html = paths.html.read_text()
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    md = paths.markdown.read_text()
    assert "<script>" not in md and "<img src=x" not in md
    assert "&lt;script&gt;" in md and r"\| pipe" in md


def pairwise(groups: dict[str, list[float]]):
    res = synthetic_results(groups)
    ranked = ranked_summary(res.summary(), res.runs, ["init"])
    return pairwise_table(res.runs, ["init"], ranked)


def test_pairwise_marks_significant_differences_only():
    frame, strong = pairwise(
        {"c": [0.50, 0.52, 0.51], "a": [0.90, 0.91, 0.92], "b": [0.50, 0.51, 0.52]}
    )
    assert len(frame) == 3
    pairs = zip(frame["group A"], frame["group B"], strict=True)
    marks = dict(zip(pairs, frame["Holm p < 0.05"], strict=True))
    assert marks == {("a", "c"): "yes", ("a", "b"): "yes", ("c", "b"): "no"}
    assert strong == (0, 1)
    assert frame.loc[0, "Δ accuracy (A − B)"] == "+0.4000"
    assert re.fullmatch(r"\[\+0\.\d{4}, \+0\.\d{4}\]", frame.loc[0, "Δ 95% CI (Welch)"])
    single, none = pairwise({"a": [0.9], "b": [0.5, 0.6]})
    assert single.loc[0, "p (Welch)"] == "—" and none == ()


def test_a_difference_of_accuracies_has_an_interval_within_plus_minus_one():
    """Two seeds' Welch interval reached [-2.4279, +2.6279] for a difference of accuracies,
    which lies in [-1, 1] (the summary's own intervals were already cut to [0, 1])."""
    frame, _ = pairwise({"a": [0.9, 0.1], "b": [0.5, 0.4]})
    low, high = (float(v) for v in frame.loc[0, "Δ 95% CI (Welch)"].strip("[]").split(","))
    assert (low, high) == (-1.0, 1.0)


def test_summary_says_which_groups_are_shown_worse_than_the_best():
    res = synthetic_results({"b": [0.80, 0.82, 0.81], "a": [0.81, 0.83, 0.82], "c": [0.1] * 3})
    table = assemble_report(res).sections[0].blocks[0].frame
    assert list(table["group"]) == ["a", "b", "c"]
    column = table["worse than best?"]
    assert column[0] == "best" and column[1].startswith("undecided (p = ")
    assert column[2].startswith("yes (p = ")
    verdict = assemble_report(res).sections[0].blocks[1].text
    assert verdict.startswith("no winner at 3 seeds: a cannot be told from b")


def test_many_groups_are_compared_with_the_best_only():
    groups = {f"g{i}": [0.05 * i, 0.05 * i + 0.01 * (1 + i % 3)] for i in range(10)}
    frame, _ = pairwise(groups)
    assert len(frame) == 9 and set(frame["group A"]) == {"g9"}
    # adjusted over the 9 comparisons listed: the summary's 'worse than best?' p-values
    res = synthetic_results(groups)
    ranked = ranked_summary(res.summary(), res.runs, ["init"])
    summary = {str(r["init"]): _p(r["p_holm"]) for _, r in ranked.iterrows()}
    assert dict(zip(frame["group B"], frame["p (Holm)"], strict=True)) == {
        g: summary[g] for g in frame["group B"]
    }


def test_gradient_section_notes_when_tracking_was_off(results):
    report = assemble_report(results)
    section = next(s for s in report.sections if s.id == "gradients")
    assert "tracking was off" in section.blocks[0].text
    unknown = pd.DataFrame({"run_id": ["x"], "epoch": [1], "layer": ["0"], "metric": ["q"]})
    unknown["value"] = 1.0
    assert grad_norm_metric(unknown) is None


def test_gradient_grid_averages_log10_over_seeds_and_flags_zeros(results):
    stats = layer_stats_for(results.runs)
    assert grad_norm_metric(stats) == "weight_grad_norm"
    grids, x_name = layer_grids(stats, results.runs, ["init"], "weight_grad_norm")
    assert x_name == "epoch" and [g.label for g in grids] == ["he_normal", "zeros"]
    he, zeros = grids
    assert he.layers == ["0", "2"] and he.steps == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(he.log10[:, 0], [0.0, 1.0])
    np.testing.assert_allclose(he.log10[1], [1.0, 0.75, 0.5])
    assert zeros.zero[0].all() and not zeros.zero[1].any() and np.isnan(zeros.log10[0]).all()


def test_grad_norm_metric_falls_back_to_any_gradient_norm():
    stats = pd.DataFrame({"metric": ["post_std", "my_grad_norm"], "value": [1.0, 2.0]})
    assert grad_norm_metric(stats) == "my_grad_norm"
    assert grad_norm_metric(None) is None and grad_norm_metric(pd.DataFrame()) is None


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"init": "random_normal(stddev=0.25)", "hidden": "64-64"}, 0.25**2 * 64),
        ({"init": "normal(std=0.1)", "hidden": "100"}, 1.0),
        ({"init": "variance_scaling(scale=1.7, mode=fan_in)", "hidden": "32-32"}, 1.7),
        ({"init": "he_normal", "hidden": [300, 300]}, 2.0),
        ({"init": "orthogonal(gain=1.5)", "hidden": "8-8"}, 2.25),
        ({"init": "he_normal", "hidden": "8", "sigma_w2": 3.5}, 3.5),
        ({"init": "he_normal", "hidden": "8", "extra": '{"sigma_w2": 1.25}'}, 1.25),
        ({"init": "he_normal", "hidden": "8", "extra": {"sigma_w2": 0.5}}, 0.5),
    ],
)
def test_sigma_w2_from_specs_and_explicit_values(row, expected):
    assert sigma_w2_of(row) == pytest.approx(expected)


def test_sigma_w2_and_b2_unknowns():
    assert math.isnan(sigma_w2_of({"init": "identity", "hidden": "8"}))
    assert math.isnan(sigma_w2_of({"init": EVIL, "hidden": "8"}))
    assert sigma_b2_of({"bias": "zeros"}) == 0.0 and sigma_b2_of({"bias": 0.0}) == 0.0
    assert sigma_b2_of({"bias": "torch_default"}) is None
    assert sigma_b2_of({"bias": "keep", "extra": '{"sigma_b2": 0.05}'}) == 0.05
    assert hidden_widths("[64, 64]") == (64, 64) and hidden_widths(16) == (16,)


def sweep_runs(activation: str = "relu", bias: str = "zeros") -> pd.DataFrame:
    """A synthetic depth × scale sweep: trains when sigma_w² is near 2."""
    rows = []
    for depth in (2, 8, 32):
        for scale in (1.0, 2.0, 3.0):
            for seed in range(2):
                good = abs(scale - 2.0) < 0.5 or depth == 2
                rows.append(
                    {
                        "run_id": f"{depth}-{scale}-{seed}",
                        "init": f"variance_scaling(scale={scale}, mode=fan_in)",
                        "hidden": "-".join(["32"] * depth),
                        "activation": activation,
                        "bias": bias,
                        "seed": seed,
                        "status": "ok" if good else "stuck",
                        "test_accuracy": 0.9 if good else 0.1,
                        "final_train_loss": 0.3,
                        "epochs_done": 1,
                        "message": "",
                    }
                )
    return pd.DataFrame(rows)


def test_trainability_grid_and_theory_curve():
    runs = sweep_runs()
    assert is_depth_scale_sweep(runs)
    (panel,) = trainability_panels(runs)
    assert panel.depths == [2, 8, 32] and panel.sigma_w2 == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(panel.accuracy[:, 1], 0.9)
    np.testing.assert_allclose(panel.accuracy[2], [0.1, 0.9, 0.1])
    assert panel.sigma_b2 == 0.0 and panel.theory_x is not None
    finite = panel.theory_depth[np.isfinite(panel.theory_depth)]
    assert finite.min() < 10 and np.isnan(panel.theory_depth).sum() <= 1  # inf at sigma_w² = 2


def test_trainability_section_appears_only_for_sweeps(results, tmp_path):
    assert not is_depth_scale_sweep(results.runs)
    ids = [s.id for s in assemble_report(results).sections]
    assert "trainability" not in ids
    sweep = ResultSet(sweep_runs(bias="torch_default"), pd.DataFrame(), ["init"])
    report = assemble_report(sweep, group_by=["init", "hidden"])
    section = next(s for s in report.sections if s.id == "trainability")
    assert "no theory curve for relu" in section.blocks[1].text
    paths = build_report(sweep, tmp_path)
    assert (tmp_path / "trainability.png") in paths.images


def test_theory_curve_for_tanh_and_unknown_activation():
    x, depth = theory_curve("tanh", [0.5, 1.5], 0.0, points=5)
    assert len(x) == 5 and np.nanmax(depth) > depth[0] > 0
    assert theory_curve("no_such_activation", [1.0, 2.0], 0.0, points=3) == (None, None)


def test_failures_are_listed_with_messages(tmp_path):
    res = synthetic_results({"he_normal": [0.9, math.nan], "zeros": [0.1, 0.1]})
    res.runs.loc[1, ["status", "message"]] = ["diverged", "loss became nan at epoch 1"]
    res.epochs.loc[1, ["train_loss", "val_accuracy"]] = [math.inf, math.nan]
    assert len(build_report(res, tmp_path).images) == 2  # non-finite losses are left out
    report = assemble_report(res)
    failures = next(s for s in report.sections if s.id == "failures")
    assert failures.blocks[0].kind == "warning"
    assert list(failures.blocks[1].frame["message"]) == ["loss became nan at epoch 1"]
    ok = assemble_report(synthetic_results({"a": [0.5, 0.6], "b": [0.5, 0.6]}))
    assert next(s for s in ok.sections if s.id == "failures").blocks[0].text.startswith("no run")


def test_group_by_other_columns_and_bad_columns(results):
    runs = results.runs.assign(width=[16, 16, 32, 32])
    res = ResultSet(runs, results.epochs, ["init"])
    report = assemble_report(res, group_by=["init", "width"])
    assert list(report.sections[0].blocks[0].frame["group"]) == [
        "init=he_normal, width=16",
        "init=zeros, width=32",
    ]
    with pytest.raises(initlab.InitlabError, match="cannot group by 'nope'"):
        assemble_report(res, group_by=["nope"])


def test_empty_results_still_make_a_page(tmp_path):
    paths = build_report(ResultSet(pd.DataFrame(), pd.DataFrame()), tmp_path)
    assert "no runs" in paths.html.read_text() and paths.images == ()


def test_epochs_to_90_is_defined_for_a_negative_best_score():
    """R² below 0 early in a regression: the best group reaches 'within 10% of the best'
    (1.1 × best), which 0.9 × best, above every group, never allowed."""
    summary = synthetic_results({"a": [-0.19, -0.19], "b": [-0.5, -0.5]}).summary()
    reached = dict(zip(summary["init"], summary["epochs_to_90"], strict=True))
    assert reached["a"] == 1.0 and math.isnan(reached["b"])
    positive = synthetic_results({"a": [0.9, 0.9], "b": [0.85, 0.85]}).summary()
    assert positive["epochs_to_90"].tolist() == [1.0, 1.0]  # 0.85 >= 0.9 × 0.9, as before


def test_flags_count_runs_as_integers_when_every_group_column_is_numeric():
    from initlab.ranking.summary_format import format_summary

    summary = pd.DataFrame(
        {
            "model_args.width": [8, 16],
            "runs": [3, 2],
            "test_accuracy": [0.37, 0.9],
            "test_accuracy_std": [0.46, 0.0],
            "ci95": [1.1, 0.0],
            "final_train_loss": [2.3, 0.3],
            "epochs_to_90": [math.nan, 1.0],
            "diverged": [0, 0],
            "stuck": [2, 0],
            "failed": [0, 0],
        }
    )
    assert format_summary(summary)["flags"].tolist() == ["stuck 2/3", ""]  # not "2.0/3.0"


def test_the_runs_table_shows_every_setting_that_varies_not_only_the_groups():
    """Runs swept over lr but grouped by init: without the lr column two runs of one group
    and seed looked like duplicates."""
    from initlab.report.sections import runs_section

    res = synthetic_results({"a": [0.5, 0.6], "b": [0.7, 0.8]})
    res.runs["lr"] = [0.1, 0.1, 0.01, 0.01]
    table = runs_section(res.runs, ["init"]).blocks[0].blocks[0].frame
    assert list(table.columns[:4]) == ["run_id", "init", "lr", "seed"]


def test_shared_settings_name_each_model_argument_and_skip_an_unused_momentum():
    from initlab.report.build import shared_settings

    runs = synthetic_results({"a": [0.5, 0.6], "b": [0.7, 0.8]}).runs
    runs["optimizer"], runs["momentum"] = "sgd", 0.9  # plain SGD ignores momentum
    runs["model_args"] = ['{"depth": 1, "width": 8}'] * 2 + ['{"depth": 1, "width": 16}'] * 2
    shared = shared_settings(runs, ["init"])
    assert shared["model_args.depth"] == "1" and "model_args.width" not in shared
    assert "momentum" not in shared and shared["optimizer"] == "sgd"
    runs["optimizer"] = "momentum"
    assert shared_settings(runs, ["init"])["momentum"] == "0.9"


def test_a_group_of_numbers_is_labelled_with_its_setting():
    from initlab.curves import group_label

    assert group_label((16,), ["model_args.width"]) == "width=16"  # not a bare "16"
    assert group_label(0.1, ["lr"]) == "lr=0.1"
    assert group_label(("he_normal",), ["init"]) == "he_normal"
    assert group_label(("he_normal", 16), ["init", "model_args.width"]) == (
        "init=he_normal, width=16"  # short: cut at 48 characters, two depths read the same
    )
    both = ["init", "model_args.width", "model_args.depth"]
    assert group_label(("default", 32, 4), both) == "init=default, width=32, depth=4"
    clash = ["model_args.width", "width"]  # a factory argument and a setting of one name
    assert group_label((32, 64), clash) == "model_args.width=32, width=64"


def test_more_than_ten_curves_get_distinct_colours():
    """12 groups of a width × depth sweep shared the 10 colours of the default cycle."""
    from matplotlib.colors import to_hex

    from initlab.curves import palette

    for n in (3, 12, 25):
        assert len({to_hex(c) for c in palette(n)}) == n


def test_an_r2_figure_ends_near_one_and_keeps_negative_scores():
    from initlab.report.figures import accuracy_figure

    # two seeds of R² 0.3 and 0.9: the CI reached 1.49 on the axis, past any R²
    ranked = pd.DataFrame({"group": ["a"], "test_accuracy": [0.6], "ci95": [3.8]})
    ax = accuracy_figure(ranked, {"a": [0.3, 0.9]}, "test R²", clip=False).axes[0]
    low, high = ax.get_xlim()
    assert high <= 1.02 and low < -1  # an R² can be any negative: only the top is capped


def test_a_csv_directory_is_grouped_by_every_setting_that_varies(tmp_path):
    """CSVs of a width sweep were grouped by init alone: three widths read as 3× the seeds
    of one group each, with intervals to match."""
    from initlab.report.sources import load_results

    res = synthetic_results({"a": [0.5, 0.6, 0.7, 0.8], "b": [0.6, 0.7, 0.8, 0.9]})
    res.runs["model_args"] = ['{"width": 4}', '{"width": 8}'] * 4
    res.runs["seed"] = [0, 0, 1, 1] * 2
    res.runs.to_csv(tmp_path / "summary.csv", index=False)
    res.epochs.to_csv(tmp_path / "epochs.csv", index=False)
    loaded, _ = load_results(tmp_path)
    assert loaded.group_by == ["init", "model_args.width"]
    assert loaded.summary()["runs"].tolist() == [2, 2, 2, 2]


def test_within_ranks_and_tests_the_inits_at_each_width_apart(tmp_path, capsys):
    """A width sweep ranked as one family: width dominated and the only significant pair was
    one init at two widths, not an init question."""
    from initlab.cli import main
    from initlab.errors import InitlabError

    res = synthetic_results({"a": [0.5, 0.52, 0.9, 0.92], "b": [0.6, 0.62, 0.8, 0.82]})
    res.runs["model_args"] = ['{"width": 4}', '{"width": 4}', '{"width": 8}', '{"width": 8}'] * 2
    res.runs["seed"] = [0, 1] * 4
    res.runs.to_csv(tmp_path / "summary.csv", index=False)
    res.epochs.to_csv(tmp_path / "epochs.csv", index=False)
    from initlab.report.build import ranked_apart
    from initlab.report.sources import load_results

    loaded, _ = load_results(tmp_path)
    ranked = ranked_apart(loaded, ["model_args.width"]).ranking()
    assert ranked["within"].tolist() == ["width=4", "width=4", "width=8", "width=8"]
    assert ranked["init"].tolist() == ["b", "a", "a", "b"] and ranked["rank"].tolist() == [1, 2] * 2
    with pytest.raises(InitlabError, match=r"^within \['lr'\]: not a grouping column"):
        loaded.ranked_within(["lr"])
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r"), "--within",
                 "model_args.width"]) == 0  # fmt: skip
    assert "width=8" in (tmp_path / "r" / "report.md").read_text()


def test_pairs_are_listed_and_holm_adjusted_within_each_width():
    """Three inits at three widths (9 groups, more than MAX_ALL_PAIRS): every pair at the
    same width is listed and Holm-adjusted over that width's pairs alone (they were the
    best-vs-rest pairs of all widths, adjusted together)."""
    from initlab.report.build import ranked_apart
    from initlab.report.tables import family_note

    accuracies = {"a": [0.5, 0.53, 0.51], "b": [0.55, 0.57, 0.6], "c": [0.52, 0.5, 0.58]}
    parts = []
    for k, width in enumerate((4, 8, 16)):
        part = synthetic_results({i: [v + 0.1 * k for v in vs] for i, vs in accuracies.items()})
        part.runs["run_id"] += f"w{width}"
        part.runs["width"] = width
        parts.append(part.runs)
    runs = pd.concat(parts, ignore_index=True)
    res = ranked_apart(ResultSet(runs, pd.DataFrame(), ["init", "width"]), ["width"])
    ranked = ranked_summary(res.summary(), res.runs, res.group_by, res.within)
    frame, _ = pairwise_table(res.runs, res.group_by, ranked)
    assert len(frame) == 9  # 3 pairs at each width, none across widths
    shown = {
        frozenset((a, b)): holm
        for a, b, holm in zip(frame["group A"], frame["group B"], frame["p (Holm)"], strict=True)
    }
    for width in (4, 8, 16):  # each width's pairs adjusted as if it were alone
        alone = pairwise_comparisons(runs[runs["width"] == width], ["init", "width"])
        for pair in alone.to_dict("records"):
            labels = (pair["group_a"], pair["group_b"])  # "a / 4"
            key = frozenset(f"init={x.split(' / ')[0]}, width={width}" for x in labels)
            assert shown[key] == _p(pair["p_holm"])
    assert "within each of 3 partitions" in family_note(ranked)


def test_a_winner_comes_with_the_initialize_call_that_reproduces_its_runs():
    """compare's he_normal is He on the hidden layers and Glorot on the output layer, while
    initialize(model, 'he_normal') puts He everywhere: the obvious next step applied
    another init than the one that won."""
    from torch import nn

    import initlab
    from initlab.winner import apply_line

    wins = synthetic_results(
        {"he_normal": [0.9, 0.91, 0.92], "zeros": [0.1, 0.11, 0.12]},
        output_init="glorot_uniform", bias="zeros",
    )  # fmt: skip
    line = apply_line(wins)
    assert line.endswith("initlab.initialize(model, 'he_normal', output_init='glorot_uniform', "
                         "bias='zeros')")  # fmt: skip
    call = line.split(": ", 1)[1].replace("model", "net", 1)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    record = eval(call, {"initlab": initlab, "net": net})  # the printed call runs as printed
    assert [r["scheme"] for r in record.rows] == ["he_normal", "glorot_uniform"]
    tied = synthetic_results({"a": [0.5, 0.9], "b": [0.6, 0.8]})
    assert apply_line(tied) == ""  # no winner, no advice
    kept = synthetic_results({"default": [0.9, 0.91, 0.92], "zeros": [0.1, 0.11, 0.12]})
    assert apply_line(kept).startswith("keep the model as its factory built it")


def test_a_winner_whose_group_holds_a_missing_value_or_lsuv_still_gets_its_call():
    """output_init is empty for --output-init same: the lookup matched nothing (IndexError
    after the verdict); LSUV's call needs data."""
    from initlab.winner import apply_line

    wins = synthetic_results({"lsuv": [0.9, 0.91, 0.92], "zeros": [0.1, 0.11, 0.12]})
    wins.runs["output_init"] = None
    line = apply_line(wins.__class__(wins.runs, wins.epochs, ["init", "output_init"]))
    assert line.endswith("initialize(model, 'lsuv', bias='zeros', data=a_batch_of_inputs)")


def test_the_gradient_heatmap_draws_dl_dz_when_it_was_recorded():
    """Weight-gradient norms stay flat across layers where dL/dz vanishes 1e6-fold: the
    heatmap of weight_grad_norm showed nothing for std 0.01 (instructor journey)."""
    rows = [
        dict(run_id="r", epoch=0, step=0, layer=str(k), metric=m, value=v)
        for k in range(3)
        for m, v in (("weight_grad_norm", 2e-7), ("pre_grad_std", 10.0 ** (-3 * (3 - k))))
    ]
    assert grad_norm_metric(pd.DataFrame(rows)) == "pre_grad_std"


class _Untraceable(torch.nn.Module):
    """Two residual branches per block (a1→a2, m1→m2) in a forward torch.fx cannot trace
    (``torch.ones(T, T)`` of a traced size): the branches are found from a forward pass on
    data, or guessed from module names (one branch per block) without it."""

    def __init__(self, width: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {k: torch.nn.Linear(width, width) for k in ("a1", "a2", "m1", "m2")}
            )
            for _ in range(depth)
        )

    def forward(self, x):
        mask = torch.ones(x.shape[1], x.shape[1]).tril()
        for b in self.blocks:
            x = x + b["a2"](torch.relu(b["a1"](x @ mask)))
            x = x + b["m2"](torch.relu(b["m1"](x)))
        return x


def test_a_residual_winner_s_call_passes_data_as_its_runs_did():
    """Without data, initialize() guessed the branches of an untraceable model from module
    names (the journey's transformer: L = 2, x0.7071) where the runs found them from their
    inputs (L = 4, x0.5): the printed call applied another init than the one that won."""
    import initlab
    from initlab.winner import apply_line

    wins = synthetic_results(
        {"he_normal": [0.9, 0.91, 0.92], "zeros": [0.1, 0.11, 0.12]},
        output_init="same", residual_init="depth_scaled",
    )  # fmt: skip
    line = apply_line(wins)
    assert line.endswith("residual_init='depth_scaled', data=a_batch_of_inputs)")
    batch = torch.randn(4, 8)
    record = eval(line.split(": ", 1)[1], {"initlab": initlab, "model": _Untraceable(),
                                            "a_batch_of_inputs": batch})  # fmt: skip
    guessed = initlab.initialize(_Untraceable(), "he_normal", residual_init="depth_scaled")
    assert len(record.residual_result.structure.branches) == 4  # as the runs found them
    assert len(guessed.residual_result.structure.branches) != 4  # the premise: a guess differs


def test_a_heatmap_of_runs_of_two_depths_keeps_the_output_layer_last():
    """Rows were merged in first-seen order: the depth-1 runs' `fc` came right after their
    last block, above the depth-2 runs' deeper blocks, so the output sat mid-panel."""
    from initlab.report.layers import layer_order

    shallow = ["stem", "layers.0", "layers.1", "fc"]
    deep = ["stem", "layers.0", "layers.1", "layers.2", "layers.3", "fc"]
    rows = pd.DataFrame(
        [{"run_id": "a", "layer": n} for n in shallow] + [{"run_id": "b", "layer": n} for n in deep]
    )
    assert layer_order(rows) == deep
    # depths 2 and 8: by the mean place alone layers.2 (0.25) came before layers.1 (0.31)
    two, eight = (["stem", *(f"layers.{i}" for i in range(d)), "fc"] for d in (2, 8))
    runs = [{"run_id": "a", "layer": n} for n in two] + [{"run_id": "b", "layer": n} for n in eight]
    assert layer_order(pd.DataFrame(runs)) == eight
    stats = rows.assign(epoch=1, step=0, metric="pre_grad_std", value=1.0, init="he_normal")
    runs = pd.DataFrame({"run_id": ["a", "b"], "init": ["he_normal"] * 2})
    (grid,), _ = layer_grids(stats, runs, ["init"], "pre_grad_std")
    assert grid.layers == deep


def test_the_report_says_what_the_runs_were_computed_with_and_where_that_differs():
    """report.md had no word on versions, BLAS or host: a store resumed on another CPU mixes
    runs whose last bits differ, unsaid."""
    import pandas as pd

    from initlab.report.build import environment_line

    runs = pd.DataFrame(
        {
            "initlab_version": ["0.1.0"] * 3,
            "torch_version": ["2.13.0+cpu"] * 3,
            "blas": ["MKL AVX512_E1", "MKL AVX512_E1", "MKL AUTO"],
            "host": ["a", "a", None],
        }
    )
    line = environment_line(runs)
    assert line.startswith("ran with: initlab 0.1.0; torch 2.13.0+cpu; BLAS MKL AVX512_E1 (2 runs)")
    assert "MKL AUTO (1 run)" in line and line.endswith("host a")
    assert environment_line(pd.DataFrame({"seed": [0]})) == ""
