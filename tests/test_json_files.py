"""Every JSON file initlab writes is strict JSON, in one convention (:mod:`initlab.jsonsafe`):
NaN as ``null``, ±infinity as ``"inf"``/``"-inf"``, however deep the number sits."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from initlab.doctor import trials
from initlab.doctor.evidence import Evidence, write_outputs
from initlab.jsonsafe import dumps


def strict_loads(text: str):
    """``json.loads`` refusing ``NaN``/``Infinity``/``-Infinity``, which strict readers refuse."""

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_dumps_writes_nested_non_finite_numbers_and_scalars_in_the_convention():
    document = {
        "a": [1.5, math.nan, (math.inf, -math.inf)],
        "deep": {"x": {"y": [np.float32("inf"), np.float64("nan"), torch.tensor(0.25)]}},
        "count": np.int64(3),
    }
    found = strict_loads(dumps(document, indent=2))
    assert found == {
        "a": [1.5, None, ["inf", "-inf"]],
        "deep": {"x": {"y": ["inf", None, 0.25]}},
        "count": 3,
    }


def evidence_with_non_finite_values() -> tuple[Evidence, object, str]:
    """A small :class:`Evidence` with an infinity nested in its verdict, in its tables (a
    float64 and a float32 column) and a NaN timing (a budget in steps)."""
    names = ["default", "plan"]
    candidates = [SimpleNamespace(name=n, settings={}, why="", schemes={}) for n in names]
    schedule = trials.Schedule(
        epochs=1, steps_per_epoch=2, limit_train=None, seconds_per_step=math.nan, fixed_seconds=0
    )
    config = SimpleNamespace(seed=0, data_seed=0)
    record = {"epoch": 1, "train_loss": 0.4, "val_loss": 0.5}
    results = [SimpleNamespace(epochs=[record], config=config) for _ in names]
    table = pd.DataFrame({"candidate": names, "status": ["ok", "diverged"]})
    table["final"] = [0.4, math.inf]
    table["area"] = np.array([0.5, np.inf], dtype=np.float32)
    verdict = {
        "winner": None,
        "reference": "default",
        "message": "m",
        "gaps": {"plan": {"mean": -math.inf, "low": np.float32("-inf"), "high": math.nan}},
    }
    design = trials.Design.square(1)
    evidence = Evidence(
        candidates, design, schedule, results, table, table, table[:0], table[:0], verdict
    )
    return evidence, SimpleNamespace(entries=[]), "# snippet\n"


def test_doctor_recommendation_json_is_strict_json_in_the_convention(tmp_path):
    """A nested infinity was written as ``Infinity`` (invalid JSON) and a top-level one as
    ``null`` (as a NaN is: the convention keeps them apart)."""
    write_outputs(*evidence_with_non_finite_values(), tmp_path)
    found = strict_loads((tmp_path / "recommendation.json").read_text())
    assert found["verdict"]["gaps"]["plan"] == {"mean": "-inf", "low": "-inf", "high": None}
    assert [run["final"] for run in found["runs"]] == [0.4, "inf"]
    assert [run["area"] for run in found["runs"]] == [0.5, "inf"]
    assert found["schedule"]["seconds_per_step"] is None  # NaN: nothing was timed
    assert found["schedule"]["estimated_seconds"] is None


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_lone_non_finite_number_is_written_in_the_convention(value):
    assert strict_loads(dumps({"v": [value]})) == {"v": [None if math.isnan(value) else "inf"]}
