"""The gpt-init study: corpus, spec, checks on hand-made tables, tiny end to end (slow)."""

import math

import pandas as pd
import pytest

from initlab.studies import get, run_named_study
from initlab.studies import gpt_init_checks as c
from initlab.studies.gpt_init import GPT2
from initlab.studies.gpt_init_data import CONTEXT, VOCAB_SIZE, encode, stdlib_chars


def test_corpus_is_the_standard_library_source_as_next_character_windows():
    x, y, xt, yt = stdlib_chars()
    assert x.shape[1] == CONTEXT and len(x) > 4000 and len(xt) > 400
    assert bool((x[:, 1:] == y[:, :-1]).all()) and bool((xt[:, 1:] == yt[:, :-1]).all())
    assert int(x.max()) < VOCAB_SIZE and int(x.min()) >= 0
    assert encode("\n a~é").tolist() == [0, 1, 66, 95, 96]


def test_spec_has_two_depths_and_the_three_arms():
    spec = get("gpt-init").spec("default")
    assert len(spec.axes[0].values) == 2
    assert set(spec.axes[1].values) == {("default", "none"), (GPT2, "none"), (GPT2, "depth_scaled")}
    assert spec.fixed["task"] == "sequence"


def table(added: dict, losses: dict, depths=(2, 8)) -> pd.DataFrame:
    rows = []
    for (init, rule), values in added.items():
        for i, depth in enumerate(depths):
            rows.append({
                "depth": depth, "init": init, "rule": rule, "n": 1, "diverged": 0,
                "loss": losses[(init, rule)][i], "added": values[i], "vocab": VOCAB_SIZE,
                "stream_rms": [1.4] * depth, "added_rms": [0.1] * depth,
            })  # fmt: skip
    return pd.DataFrame(rows)


THEORY = {
    ("default", "none"): (0.4, 0.8),
    (GPT2, "none"): (0.04, 0.08),
    (GPT2, "depth_scaled"): (0.02, 0.02),
}
LOSSES = {
    ("default", "none"): (3.0, 3.2),
    (GPT2, "none"): (2.9, 3.0),
    (GPT2, "depth_scaled"): (2.9, 2.98),
}


def test_checks_reproduced_on_the_theory():
    t = table(THEORY, LOSSES)
    for check in (
        c.depth_scaled_grows_less,
        c.default_grows_more,
        c.all_arms_learn,
        c.depth_scaled_no_worse,
    ):
        e = check(t)
        assert e.reproduced is True, (check.__name__, e.evidence)
    assert "×2.000" in c.depth_scaled_grows_less(t).evidence


def test_checks_fail_on_the_opposite():
    added = {**THEORY, (GPT2, "depth_scaled"): (0.02, 0.05), ("default", "none"): (0.01, 0.01)}
    losses = {**LOSSES, (GPT2, "depth_scaled"): (2.9, 3.2), ("default", "none"): (4.6, 4.6)}
    t = table(added, losses)
    assert c.depth_scaled_grows_less(t).reproduced is False
    assert c.default_grows_more(t).reproduced is False
    assert c.all_arms_learn(t).reproduced is False
    assert c.depth_scaled_no_worse(t).reproduced is False
    assert math.log(VOCAB_SIZE) > 4.5
    assert c.depth_scaled_grows_less(pd.DataFrame()).reproduced is None


@pytest.mark.slow
def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("gpt-init", scale="tiny", out=tmp_path, workers=1)
    assert len(outcome.results.runs) == 6
    assert len(outcome.expectations) == 4
    assert (tmp_path / "gpt-init.png").is_file()
