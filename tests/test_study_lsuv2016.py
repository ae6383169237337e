"""The lsuv2016 study: end to end at the tiny scale, and its checks on hand-made results."""

import pandas as pd

from initlab.results import ResultSet
from initlab.studies import Expectation, StudyContext, get, run_named_study
from initlab.studies.lsuv2016 import (
    best_lrs,
    init_stds,
    lsuv_at_least_best,
    lsuv_unit_variance,
    others_drift,
)

DEPTH = 6


def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("lsuv2016", scale="tiny", out=tmp_path, workers=1, progress=False)
    assert len(outcome.expectations) == 4
    for e in outcome.expectations:
        assert isinstance(e, Expectation)
        assert e.evidence and e.verdict in ("reproduced", "NOT reproduced", "undecided")
    # LSUV's unit variance holds at any scale: it is what the scheme does
    assert outcome.expectations[0].reproduced is True
    assert (tmp_path / "report.html").is_file()
    for name in ("init_variance", "learning_curves"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_spec_compares_four_inits_on_two_activations():
    spec = get("lsuv2016").spec("default")
    assert spec.fixed["output_init"] is None and spec.fixed["track"] == "epoch"
    assert len(spec.fixed["hidden"]) >= 10
    assert [v[0] for v in spec.axes[0].values] == ["relu", "tanh"]
    assert "lsuv" in [v[0] for v in spec.axes[1].values]


def _std(init: str, activation: str, index: int) -> float:
    """Made-up per-layer stds at init: LSUV at 1, orthogonal relu halving, others off."""
    if init == "lsuv":
        return 1.0 + 0.02 * (-1) ** index
    if init == "orthogonal" and activation == "relu":
        return 0.5**index
    return 0.6


def _context(
    accuracy: dict[str, float], epoch1: dict[str, float], seeds: int = 3, std=_std
) -> StudyContext:
    runs, epochs, stats = [], [], []
    for activation in ("relu", "tanh"):
        for init in ("lsuv", "orthogonal", "he_normal", "glorot_normal"):
            for lr, penalty in ((0.003, 0.05), (0.01, 0.0)):
                for seed in range(seeds):
                    run_id = f"{activation}-{init}-{lr}-{seed}"
                    noise = 0.002 * (seed - 1)
                    runs.append(
                        {"run_id": run_id, "activation": activation, "init": init, "lr": lr,
                         "seed": seed, "status": "ok",
                         "test_accuracy": accuracy[init] - penalty + noise}
                    )  # fmt: skip
                    for epoch in (1, 2):
                        value = epoch1[init] if epoch == 1 else accuracy[init]
                        epochs.append(
                            {"run_id": run_id, "activation": activation, "init": init, "lr": lr,
                             "epoch": epoch, "val_accuracy": value - penalty + noise}
                        )  # fmt: skip
                    layers = [f"blocks.{i}.linear" for i in range(DEPTH)] + ["output"]
                    for i, layer in enumerate(layers):
                        stats.append(
                            {"run_id": run_id, "epoch": 0, "step": 0, "layer": layer,
                             "metric": "pre_std", "value": std(init, activation, i)}
                        )  # fmt: skip
    group = ["activation", "init", "lr"]
    results = ResultSet(pd.DataFrame(runs), pd.DataFrame(epochs), group, pd.DataFrame(stats))
    return StudyContext(results, "tiny")


GOOD = {"lsuv": 0.85, "orthogonal": 0.70, "he_normal": 0.845, "glorot_normal": 0.75}


def test_checks_reproduced_on_the_papers_pattern():
    ctx = _context(GOOD, {"lsuv": 0.75, "orthogonal": 0.3, "he_normal": 0.74, "glorot_normal": 0.4})
    stds = init_stds(ctx)
    assert stds["index"].max() == DEPTH + 1  # the output layer comes last
    assert best_lrs(ctx.runs)[("relu", "lsuv")] == 0.01
    verdicts = get("lsuv2016").check(ctx)
    assert [e.reproduced for e in verdicts] == [True, True, True, True]
    assert "relu: lsuv 0.8500" in verdicts[2].evidence


def test_checks_not_reproduced_when_lsuv_is_worse():
    accuracy = {**GOOD, "lsuv": 0.80}
    ctx = _context(
        accuracy, {"lsuv": 0.5, "orthogonal": 0.3, "he_normal": 0.74, "glorot_normal": 0.4}
    )
    verdicts = get("lsuv2016").check(ctx)
    assert verdicts[2].reproduced is False and verdicts[3].reproduced is False


def test_variance_checks_fail_when_the_scales_are_wrong():
    def broken(init, activation, index):
        return 0.5 if init == "lsuv" and index == 3 else 1.0  # and every other init exact

    stds = init_stds(_context(GOOD, GOOD, std=broken))
    assert lsuv_unit_variance(stds).reproduced is False
    assert others_drift(stds).reproduced is False


def test_one_seed_cannot_decide_the_accuracy_comparison():
    ctx = _context(GOOD, GOOD, seeds=1)
    e = lsuv_at_least_best(ctx.runs, best_lrs(ctx.runs), "test_accuracy", "final test accuracy")
    assert e.reproduced is None and "n=1" in e.evidence


def test_checks_undecided_without_runs():
    ctx = StudyContext(ResultSet(pd.DataFrame(), pd.DataFrame()), "tiny")
    assert [e.reproduced for e in get("lsuv2016").check(ctx)] == [None, None, None, None]
