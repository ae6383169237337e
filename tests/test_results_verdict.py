"""The verdict and ranking when groups have no (or too few) finite scores: the reason is
named (diverged, failed, a single run), and a group without a score gets no rank."""

import pandas as pd

from initlab.errors import surface
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


def test_every_run_failed_with_one_seed_says_fix_the_error_not_add_seeds():
    text = _results({"he": ["failed"], "orth": ["failed"]}).verdict()
    assert text.startswith("no verdict: no group has a single finite score")
    assert text.endswith("fix the error the runs failed with (each run's message) first")
    assert "add seeds" not in text


def test_single_seed_verdict_says_how_to_add_seeds_in_a_spec():
    text = _results({"he": ["ok"], "orth": ["ok"]}).verdict()
    assert "seeds = 3 in a spec" in text and "seeds=3 or more with compare" in text


def test_report_summary_gives_no_rank_to_groups_without_a_score():
    results = _results({"he": ["diverged"] * 2, "orth": ["diverged"] * 2})
    summary = assemble_report(results).sections[0]
    table = summary.blocks[0].frame
    assert set(table["rank"]) == {"—"} and "best" not in set(table["worse than best?"])
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


def _regression(groups: dict[str, list[float]], status: str = "ok") -> ResultSet:
    runs = pd.DataFrame(
        [
            {"run_id": f"{g}{s}", "init": g, "seed": s, "status": status, "test_accuracy": v,
             "final_train_loss": 1.0, "resolved_task": "regression"}
            for g, values in groups.items()
            for s, v in enumerate(values)
        ]
    )  # fmt: skip
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_loss=1.0, val_accuracy=0.5)
    return ResultSet(runs, epochs)


def test_constant_test_targets_say_r2_is_undefined():
    nan = float("nan")
    said = _regression({"default": [nan, nan], "zeros": [nan, nan]}).verdict()
    assert said == "no verdict: R² undefined: the test targets are constant"
    one = _regression({"default": [nan, nan]}).verdict()  # a single group: said all the same
    assert "R² undefined: the test targets are constant" in one
    # failed runs have NaN scores too, but for another reason: the usual verdict names it
    failed = _regression({"default": [nan, nan], "zeros": [nan, nan]}, status="failed")
    assert "R² undefined" not in failed.verdict() and "failed" in failed.verdict()
    assert "R² undefined" not in _regression({"a": [0.5, 0.6], "b": [0.4, 0.45]}).verdict()


def test_the_summary_prints_each_groups_first_error_and_a_neutral_retry_hint():
    from rich.console import Console

    from initlab.results import progress_line, retry_hint
    from initlab.results_console import failure_lines, print_results
    from initlab.sweep.ui import nothing_finished

    results = _results({"default": ["failed"] * 2, "zeros": ["failed"] * 2, "he": ["ok"] * 2})
    messages = {"default0": "RuntimeError: bad batch\n  at line 3", "default1": "other"}
    results.runs["message"] = results.runs["run_id"].map(messages).fillna("")
    results.runs.loc[results.runs["init"] == "zeros", "message"] = "RuntimeError: bad batch"
    assert failure_lines(results.runs, ["init"]) == ["default, zeros: RuntimeError: bad batch"]
    long = results.runs.assign(message="ValueError: " + "x" * 500)
    assert [len(line) for line in failure_lines(long, ["init"], width=80)] == [
        len("default, zeros: ") + 80
    ]
    console = Console(record=True, width=200)
    print_results(results, console, "test accuracy by init")
    text = console.export_text()
    assert "failed runs (each group's first error):" in text
    assert "  default, zeros: RuntimeError: bad batch" in text
    assert not nothing_finished(results)
    assert nothing_finished(_results({"a": ["failed"], "b": ["failed", "failed"]}))
    hint = retry_hint(progress_line(4, 0, 4))
    assert hint.endswith("(4 failed: run the same command again to retry them)")
    assert "sweep" not in hint


def _two_datasets() -> ResultSet:
    """Accuracies on cls.npz (0.8-ish) and R² on reg.npz (0.3-ish), two inits each."""
    scores = {
        ("cls.npz", "classification", "he"): [0.80, 0.82, 0.81],
        ("cls.npz", "classification", "zeros"): [0.50, 0.52, 0.51],
        ("reg.npz", "regression", "he"): [0.30, 0.32, 0.31],
        ("reg.npz", "regression", "zeros"): [-0.2, -0.1, -0.15],
    }
    runs = pd.DataFrame(
        [
            {"run_id": f"{d}{i}{s}", "dataset": d, "init": i, "seed": s, "status": "ok",
             "test_accuracy": v, "final_train_loss": 1.0, "resolved_task": task}
            for (d, task, i), values in scores.items()
            for s, v in enumerate(values)
        ]
    )  # fmt: skip
    epochs = runs[["run_id", "dataset", "init", "seed"]].assign(
        epoch=1, train_loss=1.0, val_accuracy=0.5
    )
    return ResultSet(runs, epochs, group_by=("dataset", "init"))


def test_groups_on_different_data_are_ranked_and_tested_apart():
    from initlab.report.tables import pairwise_table, ranked_summary

    results = _two_datasets()
    ranked = results.ranking()
    assert ranked["within"].tolist() == ["cls.npz"] * 2 + ["reg.npz"] * 2
    assert ranked["rank"].tolist() == [1, 2, 1, 2]  # the R² of reg.npz / he is a best too
    assert ranked["tied_with_best"].tolist() == [True, False, True, False]
    lines = results.verdict().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("cls.npz: winner: cls.npz / he, better than the other group")
    assert lines[1].startswith("reg.npz: winner: reg.npz / he, better than the other group")
    table = ranked_summary(results.summary(), results.runs, ["dataset", "init"])
    assert table["rank"].tolist() == [1, 2, 1, 2]
    pairs, _ = pairwise_table(results.runs, ["dataset", "init"], table)
    assert len(pairs) == 2  # never accuracy against R²
    pairs_of = zip(pairs["group A"], pairs["group B"], strict=True)
    assert all(a.split()[0] == b.split()[0] for a, b in pairs_of)


def test_the_command_prints_one_ranking_per_dataset_with_its_own_score():
    from rich.console import Console

    from initlab.results_console import print_results

    console = Console(record=True, width=200)
    print_results(_two_datasets(), console, "test accuracy by dataset / init")
    text = console.export_text()
    assert "ranking by test accuracy within cls.npz" in text
    assert "ranking by test R² within reg.npz" in text
    assert "Runs on different data are ranked apart." in " ".join(text.split())  # wrapped


def test_mixed_tasks_without_a_data_column_are_ranked_within_task():
    results = _two_datasets()
    results.runs["init"] = results.runs["dataset"] + ":" + results.runs["init"]
    results = ResultSet(results.runs.drop(columns="dataset"), results.epochs, ("init",))
    assert results.ranking()["within"].tolist() == ["classification"] * 2 + ["regression"] * 2
    assert results.verdict().splitlines()[1].startswith("regression: winner: reg.npz:he")


def test_the_report_gives_one_verdict_note_per_dataset():
    summary = assemble_report(_two_datasets()).sections[0]
    notes = [block.text for block in summary.blocks[1:]]
    assert [n.split(":")[0] for n in notes] == ["cls.npz", "reg.npz"]


def test_more_seeds_means_more_than_ran():
    # 3 seeds of which 2 diverged: "more seeds (seeds = 3 or more ...)" asked for what ran
    text = _results({"he": ["ok"] * 3, "big": ["ok", "diverged", "diverged"]}).verdict()
    assert "seeds=5 or more with compare, seeds = 5 in a spec" in text  # said to Python
    with surface("cli"):
        said = _results({"he": ["ok"] * 3, "big": ["ok", "diverged", "diverged"]}).verdict()
    assert "seeds = 5 or more in the spec, --seeds 5 with compare" in said
    assert "--scale default with a study" in said  # a study takes no --seeds


def test_a_constant_lower_group_does_not_block_a_clear_winner():
    # he 1.0 on every seed, xavier clearly lower, zeros constant at 0.5: the one undefined
    # comparison (he vs zeros) made the whole verdict "no winner ... test set too small"
    rows = []
    for group, scores in {
        "he": [1.0] * 5,
        "xavier": [0.90, 0.92, 0.91, 0.93, 0.89],
        "zeros": [0.5] * 5,
    }.items():
        rows += [
            {"run_id": f"{group}{s}", "init": group, "seed": s, "status": "ok",
             "test_accuracy": v, "final_train_loss": 1.0}
            for s, v in enumerate(scores)
        ]  # fmt: skip
    runs = pd.DataFrame(rows)
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_loss=1.0, val_accuracy=0.5)
    text = ResultSet(runs, epochs).verdict()
    assert text.startswith("winner: he, better than the other group")
    assert "zeros scored the same on every seed" in text


def test_a_group_stuck_at_chance_is_never_tied_with_a_best_that_learned():
    """zeros at 0.10 (stuck 2/2) against he_normal at 0.89 with two seeds: Welch p = 0.03,
    0.09 after Holm, so zeros read 'as good as best? yes' and 'cannot be told from'."""
    rows = [
        dict(run_id=f"{init}{s}", init=init, seed=s, test_accuracy=acc, status=status)
        for init, accs, status in (
            ("he_normal", (0.88, 0.90), "ok"),
            ("glorot", (0.86, 0.89), "ok"),
            ("zeros", (0.10, 0.50), "stuck"),  # synthetic: noisy enough for p > 0.05
        )
        for s, acc in enumerate(accs)
    ]
    results = ResultSet(pd.DataFrame(rows), pd.DataFrame(), group_by=("init",))
    ranked = results.ranking().set_index("group")
    assert ranked.loc["zeros", "p_holm"] >= 0.05 and not ranked.loc["zeros", "tied_with_best"]
    assert ranked.loc["glorot", "tied_with_best"]
    said = results.verdict()  # zeros is named apart, as stuck, not among the tied groups
    assert said.startswith("no winner at 2 seeds: he_normal cannot be told from glorot (")
    assert "; zeros stuck at chance in every run; telling it from glorot" in said
    # without glorot, zeros is parted by the stuck rule alone: its p is no evidence to quote
    alone = ResultSet(pd.DataFrame(rows[:2] + rows[4:]), pd.DataFrame(), group_by=("init",))
    text = alone.verdict()
    assert text.startswith("winner: he_normal; zeros stuck at chance in every run while he_normal")
    assert "Welch's test to say so: Holm-adjusted p ≥ 0.05" in text and "p ≤" not in text
    # every group stuck: the rule parts nothing
    stuck = pd.DataFrame(rows).assign(status="stuck")
    assert ResultSet(stuck, pd.DataFrame(), group_by=("init",)).ranking()["tied_with_best"].all()


def test_a_best_group_stuck_in_some_runs_has_not_shown_that_it_learns():
    """he_normal stuck in 1 of 2 runs against default stuck in both (p = 0.64, a real
    report): the stuck rule does not apply, so no winner is named."""
    rows = [
        dict(run_id=f"{init}{s}", init=init, seed=s, test_accuracy=acc, status=status)
        for init, runs in (
            ("he_normal", ((0.62, "ok"), (0.11, "stuck"))),
            ("default", ((0.10, "stuck"), (0.12, "stuck"))),
        )
        for s, (acc, status) in enumerate(runs)
    ]
    results = ResultSet(pd.DataFrame(rows), pd.DataFrame(), group_by=("init",))
    assert results.ranking().set_index("group").loc["default", "tied_with_best"]
    assert results.verdict().startswith("no winner at 2 seeds")


def test_a_group_stuck_in_every_run_never_ranks_above_one_that_learned():
    """zeros stuck at chance in both seeds ranked 'best' over he_normal, whose one finished
    seed learned (the other diverged): two seeds can be tested, one cannot."""
    rows = [
        dict(run_id=f"{init}{s}", init=init, seed=s, test_accuracy=acc, status=status)
        for init, runs in (
            ("zeros", ((0.10, "stuck"), (0.11, "stuck"))),
            ("he_normal", ((0.86, "ok"), (float("nan"), "diverged"))),
            ("glorot", ((0.84, "ok"), (0.85, "ok"))),
        )
        for s, (acc, status) in enumerate(runs)
    ]
    both = ResultSet(pd.DataFrame(rows[:4]), pd.DataFrame(), group_by=("init",))
    ranked = both.ranking()
    assert list(ranked["group"]) == ["he_normal", "zeros"]
    assert both.verdict().startswith("no winner")
    failed = dict(run_id="zeros9", init="zeros", seed=9, test_accuracy=float("nan"))
    more = pd.DataFrame([*rows[:4], {**failed, "status": "failed"}])  # no score: no say
    assert ResultSet(more, pd.DataFrame(), ("init",)).ranking()["group"].iloc[0] == "he_normal"
    # with a tested group that learned, it stays first; zeros still ranks after the one seed
    three = ResultSet(pd.DataFrame(rows), pd.DataFrame(), group_by=("init",))
    assert list(three.ranking()["group"]) == ["glorot", "he_normal", "zeros"]
    # every group stuck: nothing is demoted, the tested group ranks first as before
    stuck = pd.DataFrame(rows[:4]).assign(status="stuck")
    ranked = ResultSet(stuck, pd.DataFrame(), group_by=("init",)).ranking()
    assert list(ranked["group"]) == ["zeros", "he_normal"]


def test_a_stuck_group_that_scores_better_than_a_learning_one_is_never_its_loser():
    """Status and score can disagree (a run whose loss beats the label entropy is 'ok' at an
    accuracy below the majority share): ranked under the learning group, the stuck one with
    the higher mean read as beaten, and the verdict named the lower group the winner."""
    rows = [
        dict(run_id=f"{init}{s}", init=init, seed=s, test_accuracy=acc, status=status)
        for init, accs, status in (("zeros", (0.20, 0.21), "stuck"), ("he", (0.15, 0.16), "ok"))
        for s, acc in enumerate(accs)
    ]
    results = ResultSet(pd.DataFrame(rows), pd.DataFrame(), group_by=("init",))
    assert list(results.ranking()["group"]) == ["zeros", "he"]
    assert not results.verdict().startswith("winner: he")


def test_no_apply_line_without_a_verdict():
    """Every run failed, or one group's every run failed: the first row of the ranking is not
    a winner, and printing its initialize() call as advice was wrong."""
    from initlab.winner import apply_line

    assert apply_line(_results({"he": ["failed"] * 2, "orth": ["failed"] * 2})) == ""
    assert apply_line(_results({"he": ["ok"] * 2, "orth": ["failed"] * 2})) == ""
    flat = _results({"he": ["ok"] * 3, "orth": ["ok"] * 3})  # the same score on every seed
    assert flat.verdict().startswith("no winner") and apply_line(flat) == ""
    # a regression study stuck throughout: zeros predicts the mean (R² -0.01) and "beats"
    # inits that are worse than the mean (R² -0.5) on every seed; it learned nothing either
    stuck = _results({"zeros": ["stuck"] * 3, "he": ["stuck"] * 3})
    stuck.runs.loc[stuck.runs["init"] == "he", "test_accuracy"] -= 0.5
    assert stuck.verdict().startswith("no winner: none of the 6 finished runs learned")
    assert apply_line(stuck) == ""


def test_the_summary_is_ordered_by_the_group_by_keys_first_key_slowest():
    """``--group-by model_args.width,init`` listed every width of the first init first."""
    rows = [
        {"run_id": f"{init}{width}{seed}", "init": init, "model_args.width": width,
         "seed": seed, "status": "ok", "test_accuracy": 0.5, "final_train_loss": 1.0}
        for init in ("default", "he_normal") for width in (16, 4, 8) for seed in (0, 1)
    ]  # fmt: skip
    runs = pd.DataFrame(rows)
    by_width = ResultSet(runs, pd.DataFrame(), group_by=("model_args.width", "init")).summary()
    assert list(zip(by_width["model_args.width"], by_width["init"], strict=True)) == [
        (16, "default"),
        (16, "he_normal"),
        (4, "default"),
        (4, "he_normal"),
        (8, "default"),
        (8, "he_normal"),
    ]  # each key's values in the order they first appear
    by_init = ResultSet(runs, pd.DataFrame(), group_by=("init", "model_args.width")).summary()
    assert by_init["init"].tolist() == ["default"] * 3 + ["he_normal"] * 3
    # two stores' runs concatenated repeat the row labels: every run counted once
    twice = pd.concat([runs, runs.assign(seed=runs["seed"] + 2)])
    summary = ResultSet(twice, pd.DataFrame(), group_by=("init",)).summary()
    assert summary["runs"].tolist() == [12, 12]


def test_no_run_learned_is_said_instead_of_a_seed_count():
    # a user's LM sweep: every run at chance, and the verdict asked for 1631 seeds per group
    results = _results({"default": ["stuck"] * 3, "glorot": ["stuck"] * 3})
    assert results.verdict().startswith("no winner: none of the 6 finished runs learned")
    assert "seeds per group" not in results.verdict()
    one_learned = _results({"default": ["stuck"] * 3, "glorot": ["stuck", "stuck", "ok"]})
    assert "finished runs learned" not in one_learned.verdict()
    diverged = _results({"default": ["stuck", "diverged"], "glorot": ["stuck", "stuck"]})
    assert diverged.verdict().startswith("no winner: none of the 3 finished runs learned")


def test_mostly_stuck_runs_are_told_to_train_longer_before_adding_seeds():
    """A user's 1-epoch CNN: stuck 2/3, 3/3 and 2/3, and the verdict asked for 22 seeds."""
    mostly = _results({"a": ["stuck", "stuck", "ok"], "b": ["stuck"] * 3, "c": ["ok", "stuck"]})
    said = mostly.verdict()
    assert said.startswith("no winner") and said.endswith(
        "; but 6 of the 8 finished runs are stuck at chance: train longer (more epochs) or "
        "try another learning rate or optimizer before adding seeds"
    )
    half = _results({"a": ["stuck", "ok"], "b": ["ok", "stuck"]})  # half: not "mostly"
    assert "stuck at chance" not in half.verdict()


def test_regression_runs_are_stuck_at_the_mean_not_at_chance():
    """R² ≤ 0 is no better than predicting the targets' mean: regression has no chance level."""
    nothing = _regression({"zeros": [-0.01, -0.02], "ones": [0.0, -0.03]}, status="stuck")
    said = nothing.verdict()
    assert "(each is stuck at the mean, see the stuck rule)" in said and "chance" not in said
    runs = _regression({"he": [0.80, 0.82], "zeros": [-0.6, -0.05]}).runs
    runs.loc[runs["init"] == "zeros", "status"] = "stuck"
    parted = ResultSet(runs, pd.DataFrame()).verdict()
    assert parted.startswith("winner: he; zeros stuck at the mean in every run while he learned")
    report = assemble_report(ResultSet(runs, pd.DataFrame()))
    table = report.sections[0].blocks[0].frame.set_index("group")
    assert table.loc["zeros", "worse than best?"].startswith("yes: stuck at the mean (p = ")
    intro = report.sections[0].intro  # the legend explains the cell's 'yes' at p >= 0.05
    assert (
        "'yes: stuck at the mean' where only that parts a group from the best (its p ≥ 0.05)"
        in intro
    )
    assert "whatever p" not in intro  # the label shows only at p >= 0.05: "yes (p = 0.008)"
    notes = [getattr(block, "text", "") for block in report.sections[0].blocks]
    assert any(n.startswith("zeros: every run stuck at the mean.") for n in notes)
    assert not any("chance" in n for n in notes)
    curves = next(s for s in report.sections if s.id == "curves").intro
    assert "Flat curves at the mean show that the network is not learning" in curves
    assert "or targets the inputs do not predict" in curves and "chance" not in curves


def _scored(rows: list[tuple[str, int, float]], progress: str = "") -> ResultSet:
    runs = pd.DataFrame(
        [
            {"run_id": f"{g}{s}", "init": g, "seed": s, "status": "ok", "test_accuracy": v}
            for g, s, v in rows
        ]
    ).assign(final_train_loss=1.0)
    epochs = runs[["run_id", "init", "seed"]].assign(epoch=1, train_loss=1.0, val_accuracy=0.5)
    return ResultSet(runs, epochs, progress=progress)


def test_one_lucky_run_is_not_the_best_and_the_others_are_still_compared():
    # a user deleted one he_normal run of a 2-seed study: its lone run scored highest
    rows = [("he", 0, 0.99), ("glorot", 0, 0.80), ("glorot", 1, 0.81)]
    rows += [("default", 0, 0.60), ("default", 1, 0.61)]
    results = _scored(rows)
    ranked = results.ranking().set_index("group")
    assert ranked.loc["glorot", "rank"] == 1 and ranked.loc["he", "rank"] == 3
    assert ranked.loc["default", "p_vs_best"] < 0.05  # tested against the best that can be
    # but that lone run scored beyond the best: no test can weigh it, so no winner
    text = results.verdict()
    assert text.startswith("no winner: he scored beyond glorot (0.805) in a single finished")
    assert text.endswith("add seeds")
    lower = _scored([("he", 0, 0.70), *rows[1:]])  # a lone run below the best: noted only
    assert lower.verdict().startswith("winner: glorot")
    assert "he not compared: fewer than two" in lower.verdict()


def test_a_best_that_lost_most_of_its_runs_to_divergence_is_no_winner():
    """he_normal 0.950 and 0.952 with 3 of 5 runs diverged, against glorot at 0.930 on all
    five: Welch's test on the survivors said 'winner: he_normal' with an apply line."""
    from initlab.winner import apply_line

    scores = {
        "he_normal": [0.950, 0.952, None, None, None],
        "glorot": [0.93, 0.931, 0.929, 0.932, 0.93],
    }
    rows = [
        dict(run_id=f"{g}{s}", init=g, seed=s, status="ok" if v else "diverged",
             test_accuracy=v if v else float("nan"))
        for g, values in scores.items() for s, v in enumerate(values)
    ]  # fmt: skip
    results = ResultSet(pd.DataFrame(rows), pd.DataFrame(), group_by=("init",))
    assert results.ranking()["group"].iloc[0] == "he_normal"
    assert results.verdict() == (
        "no winner: he_normal scored best on its 2 finished seeds, but 3 of its 5 runs "
        "diverged: a mean over the survivors flatters it; an init that loses runs is no safe "
        "choice (see those runs' flags)"
    )
    assert apply_line(results) == ""
    # a loser that lost runs takes nothing from a best that lost none
    swapped = pd.DataFrame(rows).assign(
        init=lambda d: d["init"].map({"he_normal": "glorot", "glorot": "he_normal"})
    )
    swapped.loc[swapped["init"] == "glorot", "test_accuracy"] -= 0.1
    assert (
        ResultSet(swapped, pd.DataFrame(), group_by=("init",))
        .verdict()
        .startswith("winner: he_normal")
    )


def test_a_stuck_group_is_parted_only_when_every_run_scored_below_the_best():
    """47, 49, 51 right of 360 (ok, just past the binomial line) against a stuck 47, 46, 45
    (Welch p = 0.10): the stuck rule named he_normal the winner over a gap of 3 examples."""

    def runs(stuck_scores):
        return pd.DataFrame(
            [dict(run_id=f"he{s}", init="he_normal", seed=s, status="ok", test_accuracy=k / 360)
             for s, k in enumerate((47, 49, 51))]
            + [dict(run_id=f"gl{s}", init="glorot", seed=s, status="stuck", test_accuracy=k / 360)
               for s, k in enumerate(stuck_scores)]
        )  # fmt: skip

    touching = ResultSet(runs((47, 46, 45)), pd.DataFrame(), group_by=("init",))
    assert touching.ranking().set_index("group").loc["glorot", "tied_with_best"]
    assert touching.verdict().startswith("no winner at 3 seeds")
    apart = ResultSet(runs((46, 45, 44)), pd.DataFrame(), group_by=("init",))
    assert apart.verdict().startswith("winner: he_normal; glorot stuck at chance in every run")


def test_means_equal_but_for_rounding_ask_for_no_absurd_seed_count():
    """0.8, 0.9, 0.85 against 0.85 three times: the means differ by 1e-16, and the verdict
    asked for 1.6e30 seeds per group."""
    text = _scored(
        [("a", 0, 0.8), ("a", 1, 0.9), ("a", 2, 0.85)] + [("b", s, 0.85) for s in range(3)]
    ).verdict()
    assert text.startswith("no winner at 3 seeds") and "seeds per group" not in text
    from initlab.ranking.verdict import _rounded

    assert _rounded(10**30) == "more than 100,000" and _rounded(15186) == "15,000"


def test_an_unfinished_study_is_told_to_finish_not_to_add_seeds():
    rows = [("he", 0, 0.99), ("glorot", 0, 0.80), ("glorot", 1, 0.81)]
    assert "add seeds (seeds=4 or more" in _scored(rows).verdict()
    text = _scored(rows, progress="3 of 4 runs of this study are finished").verdict()
    assert text.endswith(  # from Python: what to call, not a command to run
        "the study is not finished: call it again with the same out= to finish it first"
    )
    with surface("cli"):
        said = _scored(rows, progress="3 of 4 runs of this study are finished").verdict()
    assert said.endswith("not finished: run the same command again to finish it first")


def test_the_report_cuts_an_accuracy_interval_to_what_an_accuracy_can_be():
    # two seeds 0.70 and 0.99: Student's t gives 0.845 ± 1.84, far past [0, 1]
    results = _scored([("he", 0, 0.70), ("he", 1, 0.99), ("lecun", 0, 0.5), ("lecun", 1, 0.6)])
    table = assemble_report(results).sections[0].blocks[0].frame.set_index("group")
    assert table.loc["he", "95% CI"] == "[0.0000, 1.0000]"
    assert table.loc["lecun", "95% CI"] == "[0.0000, 1.0000]"  # 0.55 ± 0.635


def test_grouping_that_pools_other_settings_says_so():
    from initlab.store.read import pooled_note

    runs = pd.DataFrame(
        {"init": ["he", "he", "glorot", "glorot"], "lr": [0.1, 0.01, 0.1, 0.01], "seed": [0] * 4}
    )
    text = pooled_note(runs, ["lr"])
    assert text.startswith("--group-by lr: each group pools runs that differ in init")
    assert pooled_note(runs, ["init", "lr"]) == ""
    assert pooled_note(runs.assign(init="he"), ["lr"]) == ""  # nothing else varies


def test_a_misspelt_model_argument_column_is_suggested_by_its_own_name():
    from initlab.errors import closest_name

    columns = ["init", "seed", "model_args.width", "model_args.depth"]
    assert closest_name("widht", columns) == "model_args.width"  # `--within widht`
    assert closest_name("model_args.widht", columns) == "model_args.width"
    assert closest_name("colour", columns) is None


def test_a_regression_group_stuck_above_zero_is_not_parted_from_the_best_by_the_rule():
    """he_normal's R² of 0.094 was 'stuck' (its paired test could not tell it from the
    mean) and parted from default's 0.073 by the stuck rule, though Welch's p was 0.19."""
    runs = _regression(
        {"default": [0.103, 0.073, 0.110], "he_normal": [-0.041, 0.094, 0.011],
         "zeros": [-0.002, -0.001, -0.003]}
    ).runs  # fmt: skip
    runs.loc[runs["init"] != "default", "status"] = "stuck"
    ranked = ResultSet(runs, pd.DataFrame()).ranking().set_index("group")
    assert ranked.loc["he_normal", "tied_with_best"]  # Welch decides: cannot be told apart
    assert not ranked.loc["zeros", "tied_with_best"]  # R² ≤ 0 in every run: parted
    said = ResultSet(runs, pd.DataFrame()).verdict()
    assert said.startswith("no winner") and "default cannot be told from he_normal" in said


def test_the_seeds_to_tell_the_best_apart_are_for_a_tied_group_never_for_one_already_worse():
    """A real sweep: he_normal ranked second and significantly worse, lecun_normal third
    and tied: the estimate named he_normal ("these seeds may have been unlucky") under a
    table that showed it worse."""
    scores = {
        "default": (0.90, 0.91, 0.92, 0.91),
        "he_normal": (0.81, 0.815, 0.82, 0.812),
        "lecun_normal": (0.60, 0.99, 0.62, 0.98),
    }
    rows = [
        dict(run_id=f"{init}{s}", init=init, seed=s, test_accuracy=acc, status="ok")
        for init, accs in scores.items()
        for s, acc in enumerate(accs)
    ]
    results = ResultSet(pd.DataFrame(rows), pd.DataFrame(), group_by=("init",))
    ranked = results.ranking().set_index("group")
    assert list(ranked.index) == ["default", "he_normal", "lecun_normal"]
    assert ranked.loc["he_normal", "p_holm"] < 0.05 and ranked.loc["lecun_normal", "tied_with_best"]
    said = results.verdict()
    assert "cannot be told from lecun_normal" in said and "telling it from lecun_normal" in said
    assert "he_normal" not in said
