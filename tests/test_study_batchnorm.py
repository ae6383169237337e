"""The batchnorm study: end to end at tiny scale, and its checks on hand-made results."""

import math

import pandas as pd
import pytest

from initlab.results import ResultSet
from initlab.studies import Expectation, StudyContext, get, run_named_study
from initlab.studies import batchnorm as b


def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("batchnorm", scale="tiny", out=tmp_path, workers=1, device="cpu")
    assert len(outcome.results.runs) == 6  # 2 × 3 scales × 1 seed
    assert set(outcome.results.runs["resolved_device"]) == {"cpu"}
    # the claims, in order, of the checks on hand-made runs (an empty store has no table)
    claims = [e.claim for e in get("batchnorm").check(ctx_of({True: [0.8] * 3, False: [0.8] * 3}))]
    assert [e.claim for e in outcome.expectations] == claims
    stds = b.PROTOCOLS["tiny"].stds
    for e in outcome.expectations:
        assert isinstance(e, Expectation)
        assert type(e.reproduced) in (bool, type(None))  # a verdict, never a numpy bool
        # measured at the smallest and the largest scale (every check reads both)
        assert f"s={min(stds):g}: " in e.evidence and f"s={max(stds):g}: " in e.evidence
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "batchnorm-scale.png").is_file()


def test_spec_sweeps_two_orders_of_magnitude_with_and_without_bn():
    spec = get("batchnorm").spec("default")
    stds = [b.std_of(v[0]) for v in spec.axes[1].values]
    assert max(stds) / min(stds) == pytest.approx(100)
    assert {v[0] for v in spec.axes[0].values} == {True, False}
    assert len(spec.fixed["hidden"]) >= 8 and spec.fixed["output_init"] == "glorot_uniform"


def test_init_spec_round_trip():
    assert b.std_of(b.init_of(0.03)) == 0.03
    assert math.isnan(b.std_of("he_normal"))


def ctx_of(acc: dict[bool, list[float | None]], stds=(0.01, 0.1, 1.0), seeds=(0, 1)):
    """Runs with test accuracy ``acc[bn][i]`` (± 0.002 per seed) at ``stds[i]``; ``None``
    marks a diverged run (NaN accuracy)."""
    rows = []
    for bn, values in acc.items():
        for s, a in zip(stds, values, strict=True):
            for seed in seeds:
                rows.append(
                    {
                        "run_id": f"{bn}-{s}-{seed}",
                        "dataset": "digits",
                        "batch_norm": bn,
                        "init": b.init_of(s),
                        "seed": seed,
                        "status": "diverged" if a is None else "ok",
                        "test_accuracy": math.nan if a is None else a + 0.002 * (seed - 0.5),
                    }
                )
    results = ResultSet(pd.DataFrame(rows), pd.DataFrame(), ("batch_norm", "init"))
    return StudyContext(results, "tiny")


def test_checks_reproduced_on_the_expected_pattern():
    table = b.accuracy_table(ctx_of({True: [0.85, 0.86, 0.84], False: [0.10, 0.85, None]}))
    assert table.loc[(False, 1.0), "mean"] == pytest.approx(0.1)  # diverged = chance (digits)
    assert table.loc[(False, 1.0), "diverged"] == 2
    bn, plain, extremes = b.bn_insensitive(table), b.plain_sensitive(table), None
    extremes = b.plain_extremes_fail(table)
    assert bn.reproduced is True and "spread 0.020" in bn.evidence
    assert plain.reproduced is True and "2 diverged" in plain.evidence
    assert extremes.reproduced is True


def test_checks_not_reproduced_when_bn_is_sensitive_and_plain_is_not():
    table = b.accuracy_table(ctx_of({True: [0.85, 0.6, 0.3], False: [0.8, 0.85, 0.82]}))
    assert b.bn_insensitive(table).reproduced is False
    assert b.plain_sensitive(table).reproduced is False
    assert b.plain_extremes_fail(table).reproduced is False


def test_checks_undecided_without_both_settings():
    table = b.accuracy_table(ctx_of({True: [0.85, 0.86, 0.84]}))
    assert b.bn_insensitive(table).reproduced is True
    assert b.plain_sensitive(table).reproduced is None
    assert b.plain_extremes_fail(table).reproduced is None


def test_an_empty_store_is_checked_as_no_runs_yet_not_a_key_error():
    ctx = StudyContext(ResultSet(pd.DataFrame(), pd.DataFrame()), "tiny")
    study = get("batchnorm")
    expectations = study.check(ctx)
    claims = [e.claim for e in study.check(ctx_of({True: [0.8] * 3, False: [0.8] * 3}))]
    assert [e.claim for e in expectations] == claims
    assert [(e.reproduced, e.evidence) for e in expectations] == [(None, "no runs yet")] * 3
    assert study.figures(ctx) == []


def test_figure_from_a_table():
    table = b.accuracy_table(ctx_of({True: [0.85, 0.86, 0.84], False: [0.10, 0.85, None]}))
    image = b.accuracy_figure(table)
    assert image.png.startswith(b"\x89PNG") and image.name == "batchnorm-scale"
