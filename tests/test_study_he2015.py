"""The he2015 study: end to end at tiny scale, and its checks on hand-made results."""

import math

import pandas as pd
import pytest

from initlab.results import ResultSet
from initlab.studies import Expectation, StudyContext, get, run_named_study
from initlab.studies import he2015 as h


def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("he2015", scale="tiny", out=tmp_path, workers=1)
    assert len(outcome.results.runs) == 4  # 2 depths × 2 inits × 1 seed
    assert len(outcome.expectations) == 3
    for e in outcome.expectations:
        assert isinstance(e, Expectation) and e.claim and e.evidence
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "he2015-loss.png").is_file()
    assert (tmp_path / "he2015-gradients.png").is_file()
    assert outcome.expectations[0].reproduced is True  # Xavier's gradients vanish at init


def test_specs_are_plain_relu_nets_with_the_paper_depths():
    study = get("he2015")
    spec = study.spec("default")
    assert spec.fixed["activation"] == "relu" and spec.fixed["output_init"] is None
    depths = sorted(len(v[0]) for v in spec.axes[0].values)
    assert depths == [22, 30]
    assert {v[0] for v in spec.axes[1].values} == {h.XAVIER, h.HE}


def epochs_of(curves: dict[tuple[int, str], list[float]], seeds=(0, 1)) -> pd.DataFrame:
    """Per-epoch rows: for each (depth, init) the given mean loss curve (± 0.01 per seed)."""
    rows = []
    for (depth, init), losses in curves.items():
        for seed in seeds:
            for epoch, loss in enumerate(losses, 1):
                rows.append(
                    {
                        "run_id": f"{depth}-{init}-{seed}",
                        "hidden": "-".join(["8"] * depth),
                        "init": init,
                        "seed": seed,
                        "epoch": epoch,
                        "train_loss": loss + 0.01 * (seed - 0.5),
                    }
                )
    return pd.DataFrame(rows)


STALL = [2.303] * 6
FAST = [1.6, 0.9, 0.7, 0.6, 0.55, 0.5]
SLOW = [2.3, 1.9, 1.2, 0.9, 0.8, 0.7]


def test_deep_and_moderate_checks_reproduced():
    curves = h.run_curves(
        epochs_of({(30, h.XAVIER): STALL, (30, h.HE): FAST, (22, h.XAVIER): SLOW, (22, h.HE): FAST})
    )
    deep, moderate = h.deep_expectation(curves), h.moderate_expectation(curves)
    assert deep.reproduced is True and "stalled in 2 of 2 runs" in deep.evidence
    assert moderate.reproduced is True and "He 2, 2 (median 2)" in moderate.evidence


def test_deep_check_fails_when_xavier_learns_or_he_stalls():
    learns = h.run_curves(epochs_of({(30, h.XAVIER): SLOW, (30, h.HE): FAST}))
    assert h.deep_expectation(learns).reproduced is False
    both_stall = h.run_curves(epochs_of({(30, h.XAVIER): STALL, (30, h.HE): STALL}))
    assert h.deep_expectation(both_stall).reproduced is False


def test_moderate_check_fails_when_xavier_never_converges_or_is_first():
    never = h.run_curves(epochs_of({(22, h.XAVIER): STALL, (22, h.HE): FAST, (30, h.HE): FAST}))
    assert h.moderate_expectation(never).reproduced is False
    xavier_first = h.run_curves(epochs_of({(22, h.XAVIER): FAST, (22, h.HE): SLOW}))
    assert h.moderate_expectation(xavier_first).reproduced is False


def test_checks_without_runs_are_undecided():
    empty = h.run_curves(pd.DataFrame())
    assert h.deep_expectation(empty).reproduced is None
    assert h.moderate_expectation(empty).reproduced is None
    assert h.gradients_expectation({}).reproduced is None


def gradient_ctx(per_layer: dict[str, list[float]], depth: int = 4) -> StudyContext:
    runs, rows = [], []
    for init, values in per_layer.items():
        run_id = f"run-{init}"
        runs.append({"run_id": run_id, "hidden": "-".join(["8"] * depth), "init": init})
        for i, v in enumerate([*values, 1.0]):  # the output layer last
            layer = f"blocks.{i}.linear" if i < len(values) else "output"
            for step in (0, 5):
                value = v if step == 0 else 1.0
                row = {"run_id": run_id, "epoch": step, "step": step, "layer": layer}
                rows.append({**row, "metric": "pre_grad_std", "value": value})
    results = ResultSet(pd.DataFrame(runs), pd.DataFrame(), ("hidden", "init"), pd.DataFrame(rows))
    return StudyContext(results, "tiny")


def test_gradient_ratios_from_the_tracked_step_zero():
    ctx = gradient_ctx({h.XAVIER: [1e-4, 1e-3, 1e-2, 1e-1], h.HE: [0.9, 1.0, 1.1, 1.0]})
    ratios = h.gradient_ratios(ctx)
    assert ratios[h.XAVIER] == pytest.approx(1e-3) and ratios[h.HE] == pytest.approx(0.9)
    assert h.gradients_expectation(ratios).reproduced is True
    flat = h.gradient_ratios(gradient_ctx({h.XAVIER: [1, 1, 1, 1], h.HE: [1, 1, 1, 1]}))
    assert h.gradients_expectation(flat).reproduced is False


def test_stalled_epochs_counts_from_the_start():
    assert h._stalled_epochs(pd.Series([2.30, 2.31, 1.5, 2.30])) == 2
    assert h._stalled_epochs(pd.Series([1.0, 2.30])) == 0
    assert math.isclose(h.LN10, 2.302585, rel_tol=1e-6)


def test_deep_check_is_judged_run_by_run():
    """Two of three Xavier runs stall throughout, one escapes early: most runs stall."""
    epochs = epochs_of({(30, h.XAVIER): STALL, (30, h.HE): FAST}, seeds=(0, 1, 2))
    escaped = (epochs["init"] == h.XAVIER) & (epochs["seed"] == 1)
    epochs.loc[escaped, "train_loss"] = SLOW
    deep = h.deep_expectation(h.run_curves(epochs))
    assert deep.reproduced is True and "stalled in 2 of 3 runs" in deep.evidence
    epochs.loc[(epochs["init"] == h.XAVIER) & (epochs["seed"] == 2), "train_loss"] = SLOW
    assert h.deep_expectation(h.run_curves(epochs)).reproduced is False
