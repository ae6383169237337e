"""The saxe2014 study: end to end at the tiny scale, and its checks on hand-made results."""

import math

import pandas as pd
import pytest

from initlab.results import ResultSet
from initlab.studies import Expectation, StudyContext, get, run_named_study
from initlab.studies.saxe2014 import (
    PROTOCOLS,
    gaussian_grows,
    orthogonal_flat,
    singular_values_claim,
)
from initlab.studies.saxe2014_measures import (
    GAUSSIAN,
    best_times,
    crossing_time,
    init_name,
    run_times,
)


def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("saxe2014", scale="tiny", out=tmp_path, workers=1, progress=False)
    unmeasured = get("saxe2014").check(
        StudyContext(ResultSet(pd.DataFrame(), pd.DataFrame()), "tiny")
    )
    assert [e.claim for e in outcome.expectations] == [e.claim for e in unmeasured]
    for e in outcome.expectations:
        assert isinstance(e, Expectation)
        assert type(e.reproduced) in (bool, type(None))  # a verdict, never a numpy bool
        # a time (or singular values) measured at every depth of the tiny grid
        assert all(f"depth {d}: " in e.evidence for d in PROTOCOLS["tiny"].depths)
    assert (tmp_path / "report.html").is_file()
    for name in ("time_to_threshold", "loss_curves", "singular_values"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert "verdict" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_spec_batches_each_depth_and_tunes_lr():
    spec = get("saxe2014").spec("default")
    fixed = spec.fixed
    assert fixed["activation"] == "linear" and fixed["output_init"] is None
    depths = [len(v[0]) for v in spec.axes[0].values]
    assert depths == sorted(depths) and depths[0] == 2 and depths[-1] >= 32
    assert {v[0] for v in spec.axes[1].values} == {"orthogonal", GAUSSIAN}
    assert len(spec.axes[2].values) >= 5  # a learning-rate grid per depth


def test_crossing_time_interpolates_and_handles_never():
    assert crossing_time([1.0, 0.8, 0.4], 0.5) == pytest.approx(2.75)
    assert crossing_time([0.4, 0.3], 0.5) == 1.0
    assert crossing_time([1.0, 0.9, 0.8], 0.5) == math.inf
    assert crossing_time([1.0, float("nan")], 0.5) == math.inf  # diverged
    assert crossing_time([], 0.5) == math.inf


def _context(times: dict[tuple[str, int], float], seeds: int = 2) -> StudyContext:
    """Runs whose training loss falls linearly from 1 and crosses 0.5 at the given epoch,
    plus a slower learning rate (twice the time) for each (init, depth)."""
    runs, epochs = [], []
    for (init, depth), t in times.items():
        for lr, factor in ((0.01, 2.0), (0.02, 1.0)):
            for seed in range(seeds):
                run_id = f"{init[:5]}-{depth}-{lr}-{seed}"
                runs.append(
                    {"run_id": run_id, "init": init, "hidden": "-".join(["16"] * depth),
                     "lr": lr, "seed": seed, "status": "ok"}
                )  # fmt: skip
                crossing = t * factor + 0.1 * seed
                for epoch in range(1, 61):
                    loss = max(1.0 - 0.5 * epoch / crossing, 0.05)
                    epochs.append({"run_id": run_id, "epoch": epoch, "train_loss": loss})
    results = ResultSet(pd.DataFrame(runs), pd.DataFrame(epochs), ["hidden", "init", "lr"])
    return StudyContext(results, "tiny")


def test_checks_reproduced_on_the_papers_pattern():
    depths = (2, 4, 8, 16)
    times = {("orthogonal", d): 10.0 for d in depths}
    times |= {(GAUSSIAN, d): 10.0 + 2.0 * d for d in depths}
    ctx = _context(times)
    best = best_times(run_times(ctx))
    assert set(best["lr"]) == {0.02}  # the faster learning rate wins everywhere
    flat, grows = orthogonal_flat(best), gaussian_grows(best)
    assert flat.reproduced is True and "slowest/fastest 1.00" in flat.evidence
    assert grows.reproduced is True and "Spearman 1.00" in grows.evidence
    verdicts = get("saxe2014").check(ctx)
    assert [e.reproduced for e in verdicts] == [True, True, True]


def test_checks_not_reproduced_when_the_pattern_is_reversed():
    depths = (2, 4, 8, 16)
    times = {("orthogonal", d): 10.0 + 3.0 * d for d in depths}
    times |= {(GAUSSIAN, d): 10.0 for d in depths}
    best = best_times(run_times(_context(times)))
    assert orthogonal_flat(best).reproduced is False
    assert gaussian_grows(best).reproduced is False


def test_never_reaching_the_threshold_counts_as_slowest():
    times = {("orthogonal", 2): 10.0, ("orthogonal", 8): 1000.0}  # never within 60 epochs
    times |= {(GAUSSIAN, 2): 10.0, (GAUSSIAN, 8): 1000.0}
    best = best_times(run_times(_context(times)))
    assert math.isinf(best["time"].max())
    assert orthogonal_flat(best).reproduced is False
    assert gaussian_grows(best).reproduced is True  # never = slower than any finite time


def test_checks_undecided_without_runs():
    ctx = StudyContext(ResultSet(pd.DataFrame(), pd.DataFrame()), "tiny")
    best = best_times(run_times(ctx))
    assert orthogonal_flat(best).reproduced is None
    assert gaussian_grows(best).reproduced is None


def test_singular_values_of_products():
    e = singular_values_claim(32, (2, 8, 16))
    assert e.reproduced is True
    assert "orthogonal max |s − 1|" in e.evidence


def test_a_diverged_learning_rate_is_never_the_best():
    """The store keeps only a diverged run's finite epochs: its crossing before the loss
    blew up counted, and 'depth 8: 3.3 (lr 0.08*)' came from a run marked diverged."""
    ctx = _context({("orthogonal", 2): 10.0, (GAUSSIAN, 2): 10.0})
    runs = ctx.results.runs
    fast = runs["lr"] == 0.02
    runs.loc[fast & (runs["init"] == "orthogonal"), "status"] = "diverged"
    best = best_times(run_times(ctx)).set_index("init")
    assert best.loc["orthogonal", "lr"] == 0.01  # the slower, finite one
    assert best.loc["orthogonal", "time"] == pytest.approx(20.05, abs=1e-9)
    assert best.loc[init_name(GAUSSIAN), "lr"] == 0.02
