"""The `lab` study in its default mode, as CI runs it (slow: `make test-slow`)."""

from pathlib import Path

import pytest

from initlab.studies import run_named_study

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_lab_study_default_scale_reproduces_every_expected_outcome(tmp_path):
    outcome = run_named_study("lab", scale="default", out=tmp_path)
    verdicts = {e.claim: (e.reproduced, e.evidence) for e in outcome.expectations}
    assert all(ok is True for ok, _ in verdicts.values()), verdicts
    assert outcome.report is not None and outcome.report.html.exists()
