"""The schoenholz2017 study: end to end at the tiny scale, and its checks on hand-made cells."""

import pandas as pd
import pytest

from initlab.report.sweep import sweep_coordinates
from initlab.results import ResultSet
from initlab.studies import Expectation, StudyContext, get, run_named_study
from initlab.studies.schoenholz2017 import (
    PROTOCOLS,
    agreement,
    bound,
    cell_grid,
    critical_deepest,
    grid_from_runs,
    init_spec,
    ordered_fails,
    sigma_of,
)

SIGMAS = (1.0, 1.76, 3.0)  # 6·xi_c ≈ 21.8, ∞, 54.3
DEPTHS = (5, 30, 60)


def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study(
        "schoenholz2017", scale="tiny", out=tmp_path, workers=1, progress=False
    )
    unmeasured = get("schoenholz2017").check(
        StudyContext(ResultSet(pd.DataFrame(), pd.DataFrame()), "tiny")
    )
    assert [e.claim for e in outcome.expectations] == [e.claim for e in unmeasured]
    for e in outcome.expectations:
        assert isinstance(e, Expectation) and e.evidence
        assert type(e.reproduced) in (bool, type(None))  # a verdict, never a numpy bool
    tiny = PROTOCOLS["tiny"]
    agree, deepest, ordered = outcome.expectations
    assert f"of {len(tiny.depths) * len(tiny.sigmas)} cells agree" in agree.evidence  # every cell
    assert all(f"σ_w²={s:g}: " in deepest.evidence for s in tiny.sigmas)
    # decided by the grid alone: depth 12 < 2·6·ξ_c of every ordered σ_w² (≈ 44 at σ_w² = 1)
    assert ordered.reproduced is None and "that far in the ordered phase" in ordered.evidence
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "agreement.png").stat().st_size > 1000
    assert (tmp_path / "trainability.png").is_file()  # the standard heatmap with 6·xi_c


def test_spec_is_read_by_the_standard_heatmap():
    spec = get("schoenholz2017").spec("default")
    assert spec.fixed["activation"] == "tanh"
    assert spec.fixed["extra"] == {"sigma_b2": 0.05}  # the same in every run: one batch per depth
    inits = [v[0] for v in spec.axes[1].values]
    runs = pd.DataFrame(
        {"hidden": ["64-64"] * len(inits), "init": inits, "bias": spec.fixed["bias"],
         "extra": [spec.fixed["extra"]] * len(inits)}
    )  # fmt: skip
    coords = sweep_coordinates(runs)
    assert coords["sigma_w2"].round(6).tolist() == [sigma_of(i) for i in inits]
    assert set(coords["sigma_b2"]) == {0.05}
    assert 1.76 in [sigma_of(i) for i in inits]


def test_sigma_round_trip():
    assert sigma_of(init_spec(1.76)) == 1.76
    assert sigma_of("he_normal") != sigma_of("he_normal")  # NaN for other schemes


def _runs(accuracy) -> pd.DataFrame:
    rows = []
    for depth in DEPTHS:
        for sigma in SIGMAS:
            for _seed in range(2):
                rows.append({"depth": depth, "sigma_w2": sigma, "accuracy": accuracy(depth, sigma)})
    return pd.DataFrame(rows)


def test_checks_reproduced_when_cells_follow_the_theory():
    grid = grid_from_runs(_runs(lambda d, s: 0.8 if d < bound(s) else 0.1))
    assert grid["predicted"].tolist() == grid["trained"].tolist()
    assert agreement(grid).reproduced is True
    assert "9 of 9 cells agree" in agreement(grid).evidence
    assert critical_deepest(grid).reproduced is True
    far = ordered_fails(grid)
    assert far.reproduced is True and "depth 60" in far.evidence


def test_checks_not_reproduced_when_cells_contradict_the_theory():
    # deep nets train only far from the critical point, the ordered phase included
    grid = grid_from_runs(_runs(lambda d, s: 0.8 if d < 10 or s != 1.76 else 0.1))
    assert agreement(grid).reproduced is False
    assert critical_deepest(grid).reproduced is False
    assert ordered_fails(grid).reproduced is False


def test_the_critical_point_is_undecided_when_every_sigma_reaches_the_same_depth():
    """At tiny scale every σ_w² trained at the deepest depth tested: 'reproduced' on no
    evidence (instructor journey)."""
    check = critical_deepest(grid_from_runs(_runs(lambda d, s: 0.8)))
    assert check.reproduced is None and "every σ_w² reaches the same depth" in check.evidence


def test_agreement_must_beat_a_constant_guess():
    grid = grid_from_runs(_runs(lambda d, s: 0.8))  # everything trains
    assert grid["predicted"].mean() == pytest.approx(6 / 9)
    e = agreement(grid)
    assert e.reproduced is False
    assert "6 of 9 cells agree (67%); constant guess 100%" in e.evidence


def test_check_reads_runs_and_epochs():
    runs, epochs = [], []
    for depth in DEPTHS:
        for sigma in SIGMAS:
            run_id = f"{depth}-{sigma}"
            diverged = depth == 60 and sigma == 3.0
            runs.append(
                {"run_id": run_id, "hidden": "-".join(["32"] * depth), "init": init_spec(sigma),
                 "seed": 0, "status": "diverged" if diverged else "ok"}
            )  # fmt: skip
            accuracy = 0.8 if depth < bound(sigma) else 0.1
            for epoch in (1, 2):
                epochs.append({"run_id": run_id, "epoch": epoch, "train_accuracy": accuracy})
    ctx = StudyContext(ResultSet(pd.DataFrame(runs), pd.DataFrame(epochs)), "tiny")
    grid = cell_grid(ctx)
    assert len(grid) == 9
    assert grid.loc[(grid["depth"] == 60) & (grid["sigma_w2"] == 3.0), "accuracy"].item() == 0.0
    assert [e.reproduced for e in get("schoenholz2017").check(ctx)] == [True, True, True]


def test_checks_undecided_without_runs():
    ctx = StudyContext(ResultSet(pd.DataFrame(), pd.DataFrame()), "tiny")
    assert [e.reproduced for e in get("schoenholz2017").check(ctx)] == [None, None, None]


def test_agreement_is_undecided_when_no_cell_lies_beyond_the_boundary():
    """Tiny scale: 6 of 6 cells trained, as predicted of each, and the check said 'NOT
    reproduced' (100% cannot beat a constant guess of 100%): nothing was tested."""
    grid = grid_from_runs(_runs(lambda d, s: 0.8))
    grid = grid[grid["predicted"]]  # only cells the theory says train
    e = agreement(grid)
    assert e.reproduced is None and "no cell on the other side of 6·ξ_c" in e.evidence


def test_every_cell_trained_against_the_theory_is_not_reproduced():
    """The undecided branch also took a grid where every cell trained and the theory had
    predicted none would: a refutation (diff review)."""
    grid = grid_from_runs(_runs(lambda d, s: 0.8))
    beyond = grid[~grid["predicted"]]  # cells the theory says do not train; all trained
    assert agreement(pd.concat([beyond, beyond])).reproduced is False  # 6 cells, 0 agree
