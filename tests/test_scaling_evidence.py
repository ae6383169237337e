"""What a check can conclude: inconclusive fits (CI not within ±½), blow-ups, the outcome, the
figure's thick lines; and the Python API's bad input as one line before any work."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from initlab.errors import InitlabError
from initlab.scaling import coord_check
from initlab.scaling.check import ScalingResult
from initlab.scaling.coords import COLUMNS, CoordSettings
from initlab.scaling.evidence import FLAT_BOUND, blowup_line, blowups, inconclusive
from initlab.scaling.plots import plot_coords
from initlab.scaling.verdicts import Verdict, width_verdicts


def table(values: dict[tuple[str, str, int], list[float]], widths=(32, 64, 128), depth=2):
    """A coordinate table: ``(module, metric, step)`` → one value per width (2 seeds, the
    second 1% above the first)."""
    rows = []
    for (module, metric, step), per_width in values.items():
        for w, v in zip(widths, per_width, strict=True):
            for seed in (0, 1):
                rows.append(("sp", w, depth, seed, step, module, metric, v * (1 + 0.01 * seed)))
    return pd.DataFrame(rows, columns=COLUMNS)


def fit_of(slope: float, low: float, high: float, **kw) -> Verdict:
    return Verdict("3", 1, kw.pop("metric", "update"), slope, low, high, False, 6, **kw)


def test_a_fit_is_inconclusive_unless_its_ci_lies_within_the_bound():
    tight = fit_of(0.05, -0.2, 0.3)
    wide = fit_of(0.7, 0.18, 1.87)  # the user's: excludes 0, not flagged after Holm
    edge = fit_of(0.0, -FLAT_BOUND, 0.1)  # touching the bound is not within it
    flagged = Verdict("3", 1, "update", 1.0, 0.8, 1.2, True, 6)
    floor = fit_of(-0.5, -0.7, -0.3, finite_width=True)
    aligned = fit_of(0.7, 0.18, 1.87, metric="aligned")  # diagnostic, never a verdict
    depth = fit_of(0.7, 0.18, 1.87, axis="depth", at=64)
    found = inconclusive([tight, wide, edge, flagged, floor, aligned, depth])
    assert found == [wide, edge]


def test_outcome_is_flat_only_when_every_judged_fit_is_bounded():
    settings = CoordSettings(widths=(32, 64, 128), seeds=(0, 1))
    coords = table({("3", "l1", 0): [1.0, 1.0, 1.0]})
    bounded = [fit_of(0.01, -0.1, 0.1)]
    result = ScalingResult(settings, coords, bounded, {})
    assert result.inconclusive() == [] and result.outcome == "flat"
    unsure = ScalingResult(settings, coords, [*bounded, fit_of(0.7, 0.18, 1.87)], {})
    assert len(unsure.inconclusive()) == 1 and unsure.outcome == "inconclusive"
    blown = ScalingResult(settings, coords, bounded, {}, blowups=[{"module": "3"}])
    assert blown.outcome == "blow-up"
    assert ScalingResult(settings, coords, [], {}).outcome == "nothing judged"
    # a blow-up is evidence: it outranks fits that could not be made or bound
    diverged = [*bounded, fit_of(0.7, 0.18, 1.87)]
    assert ScalingResult(settings, coords, diverged, {}, blowups=[{}]).outcome == "blow-up"
    assert ScalingResult(settings, coords, [], {}, blowups=[{}]).outcome == "blow-up"


def test_a_series_growing_by_orders_of_magnitude_is_a_blow_up_across_widths_or_steps():
    coords = table(
        {
            ("(logits)", "std", 0): [0.1, 0.1, 0.1],
            ("(logits)", "std", 3): [5.9e4, 3e6, 1.9e8],  # across widths: ×3200
            ("3", "l1", 0): [0.2, 0.2, 0.2],
            ("3", "l1", 3): [50.0, 50.0, 50.0],  # across steps: ×250 at every width
            ("5", "update", 1): [0.1, 0.9, 9.0],  # ×90: grows a lot, not a blow-up
        }
    )
    found = blowups(coords)
    across_widths = [b for b in found if b["across"] == "width"]
    assert [(b["module"], b["step"]) for b in across_widths] == [("(logits)", 3)]
    assert across_widths[0]["factor"] == pytest.approx(1.9e8 / 5.9e4, rel=1e-9)
    assert (across_widths[0]["from"], across_widths[0]["to"]) == (32, 128)
    across_steps = {(b["module"], b["width"]) for b in found if b["across"] == "step"}
    assert across_steps == {("3", 32), ("3", 64), ("3", 128), ("(logits)", 32)} | {
        ("(logits)", 64),
        ("(logits)", 128),
    }
    line = blowup_line(found)
    assert "the model logits std at step 3: 5.93e+04 at width 32 → 1.91e+08 at width 128" in line
    # a flat table, or one whose first value is 0 (muP's readout), has none
    assert blowups(table({("5", "l1", 0): [0.0, 0.0, 0.0], ("5", "l1", 1): [1, 1, 1.0]})) == []


def test_every_flagged_series_is_drawn_thick_whatever_its_metric_and_the_depth_is_named():
    """coords.png emphasized only fits flagged on l1; a flagged update or std was thin. With
    several depths the figure shows the smallest and says so."""
    values = {("1", m, s): [1.0, 1.0, 1.0] for m in ("l1", "std") for s in (0, 1)}
    values |= {("3", m, s): [1.0, 1.0, 1.0] for m in ("l1", "std") for s in (0, 1)}
    values |= {("(logits)", "std", s): [1.0, 1.0, 1.0] for s in (0, 1)}
    values |= {("(logits)", "aligned_out", s): [0.1, 0.1, 0.1] for s in (0, 1)}
    coords = pd.concat([table(values, depth=2), table(values, depth=4)], ignore_index=True)
    flagged = [
        Verdict("3", 1, "update", 1.0, 0.8, 1.2, True, 6, at=2),
        Verdict("(logits)", 1, "std", 1.0, 0.8, 1.2, True, 6, at=2),
        Verdict("1", 1, "std", 1.0, 0.8, 1.2, True, 6, at=4),  # not drawn: depth 4
    ]
    settings = CoordSettings(widths=(32, 64, 128), seeds=(0, 1), depths=(2, 4))
    result = ScalingResult(settings, coords, flagged, {})
    assert sorted(result.marked()) == [("(logits)", 1), ("3", 1)]
    fig = plot_coords(coords, flagged=result.marked(), title="sp")
    assert "depth 2 only, of depths [2, 4]" in fig._suptitle.get_text()
    step1 = fig.axes[1]
    widths = {line.get_label(): line.get_linewidth() for line in step1.get_lines()}
    assert widths["3"] > widths["1"] and widths["(logits)"] > widths["1"]
    drawn = {line.get_label(): list(line.get_ydata()) for line in step1.get_lines()}
    assert min(drawn["(logits)"]) > 0.9  # its std (1), not averaged with aligned_out (0.1)


def test_verdicts_json_records_the_outcome_and_the_inconclusive_fits(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        ("sp", w, -1, s, 1, "3", "update", float(np.exp(rng.normal(0.0, 0.6))))
        for w in (32, 64)
        for s in (0, 1)
    ]
    rows += [("sp", w, -1, s, 0, "3", "l1", 1 + 0.01 * s) for w in (32, 64) for s in (0, 1)]
    coords = pd.DataFrame(rows, columns=COLUMNS)
    verdicts = width_verdicts(coords)
    assert len(verdicts) == 2
    settings = CoordSettings(widths=(32, 64), seeds=(0, 1))
    document = ScalingResult(settings, coords, verdicts, {}).write(tmp_path)["verdicts.json"]
    saved = json.loads(document.read_text())
    assert saved["outcome"] == "inconclusive" and saved["flat_bound"] == FLAT_BOUND
    (only,) = saved["inconclusive"]
    assert only["module"] == "3" and only["ci_high"] - only["ci_low"] > 2 * FLAT_BOUND
    assert saved["blowups"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": (32, 64.5, 128)}, "widths takes integers like 64,128,256; got (32, 64.5"),
        ({"widths": (True, 32, 64)}, "(True is not an integer)"),
        ({"depths": (2, 4.5)}, "depths takes integers like"),
        ({"steps": 1.7}, "steps must be a whole number, got 1.7"),
        ({"steps": True}, "steps must be a whole number"),
        ({"batch_size": 8.5}, "batch_size must be a whole number"),
        ({"base_width": 0}, "base_width must be a positive width, got 0"),
        ({"base_width": 16.5}, "base_width must be a whole number"),
        ({"seeds": 2.5}, "seeds must be a whole number or a list of seeds, got 2.5"),
        ({"lr": "abc"}, "lr must be a positive number (at most 1e+38), got 'abc' (e.g. lr=1e-2)"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"model_args": {"width": 8}}, "model_args['width']: the check sets 'width' itself"),
        (
            {"model_args": {"depth": 3}, "depths": (2, 4)},
            "the check sets 'depth' itself from depths",
        ),
    ],
)
def test_python_api_bad_input_is_one_line_before_any_work(monkeypatch, kwargs, message):
    def no_work(*args, **kw):
        raise AssertionError("the check started working before refusing its input")

    monkeypatch.setattr("initlab.scaling.check.resolve_factory", no_work)
    args = {"widths": (32, 64), "seeds": 2, "steps": 1} | kwargs
    with pytest.raises(InitlabError) as caught:
        coord_check("mlp", **args)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_whole_floats_and_numpy_integers_are_still_accepted(monkeypatch):
    """64.0 is a width; numpy integers count as ints (the refusals above are not too eager)."""
    seen = {}

    def stop(model):
        raise InitlabError("stop here")

    monkeypatch.setattr("initlab.scaling.check.resolve_factory", stop)
    from initlab.scaling.check import coord_settings

    settings = coord_settings(
        ((32.0, np.int64(64)), (), np.int64(2), 32.0), steps=2, lr=0.1, kwargs={}
    )
    seen["widths"], seen["base"] = settings.widths, settings.base
    assert seen == {"widths": (32, 64), "base": 32}
    assert all(type(w) is int for w in settings.widths)
    with pytest.raises(InitlabError, match="stop here"):
        coord_check("mlp", widths=(32.0, 64), seeds=2, steps=2.0, lr=np.float32(0.1))


def test_a_signal_growing_140_fold_across_depths_is_a_blow_up():
    """An unnormalized residual MLP: the logits' std 1.5 → 210 from depth 2 to 16 at init
    was reported nowhere (a real run's, at width 128)."""
    rows = [
        ("sp", width, depth, seed, 0, module, "std", value * (1 + 0.01 * seed))
        for width in (64, 128)
        for depth, value in zip((2, 4, 8, 16), (1.5, 4.0, 30.0, 210.0), strict=True)
        for seed in range(3)
        for module in ("(logits)", f"blocks.{depth - 1}")  # only the logits every depth has
    ]
    columns = ["param", "width", "depth", "seed", "step", "module", "metric", "value"]
    found = [b for b in blowups(pd.DataFrame(rows, columns=columns)) if b["across"] == "depth"]
    assert {(b["module"], b["width"], b["step"]) for b in found} == {
        ("(logits)", 64, 0),
        ("(logits)", 128, 0),
    }
    assert (found[0]["from"], found[0]["to"]) == (2, 16)
    assert found[0]["factor"] == pytest.approx(140.0, rel=1e-9)  # medians of the same scaling
    line = blowup_line(found)
    assert "1 across depths" not in line and "2 across depths, the largest the model logits" in line
    assert "at step 0, at width 64: 1.52 at depth 2 → 212 at depth 16 (×140)" in line
    assert "the signal grows with depth" in line


def test_the_summary_shows_a_modules_flagged_init_before_its_larger_update_slope():
    """nanoGPT's constant-std init (width-dependent at step 0) was hidden behind 'updates
    too large' at step 3, the largest slope: the init is the first cause."""
    settings = CoordSettings(widths=(32, 64, 128), seeds=(0, 1))
    coords = table({("3", "std", 0): [1.0, 1.4, 2.0]})
    at_init = Verdict("3", 0, "std", 0.5, 0.45, 0.55, True, 6)
    later = Verdict("3", 3, "update", 0.96, 0.9, 1.0, True, 6)
    other = Verdict("5", 3, "update", 0.9, 0.85, 0.95, True, 6)
    summary = ScalingResult(settings, coords, [later, at_init, other], {}).summary()
    assert summary == [at_init]  # module 5 is not in coords: summaries follow the table
