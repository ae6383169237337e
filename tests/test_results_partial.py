"""A study interrupted part-way: ``initlab results`` and ``initlab report`` say how many of
its planned runs are finished and how to finish the rest."""

import pytest

from initlab.cli import main
from initlab.results import progress_line

LINE = "2 of 8 runs of this study are finished (6 not run yet: run the sweep again to finish)"


@pytest.fixture
def partial(tmp_path, interrupt_at, capsys, tiny_spec):
    """A study directory whose sweep was interrupted after 2 of its 8 runs."""
    interrupt_at(3)
    inits = ["zeros", "he_normal", "orthogonal", "lecun_normal"]
    spec = tiny_spec(tmp_path / "partial.toml", "partial", inits, seeds=2, lr=0.1)
    out = tmp_path / "out"
    args = ["sweep", str(spec), "--out", str(out), "--workers", "1", "--engine", "single"]
    assert main(args) == 130
    capsys.readouterr()
    return out


def test_results_of_a_partial_study_say_how_many_runs_are_missing(partial, capsys):
    assert main(["results", str(partial)]) == 0
    assert LINE in capsys.readouterr().out


def test_report_of_a_partial_study_says_how_many_runs_are_missing(partial, tmp_path, capsys):
    target = tmp_path / "report"
    assert main(["report", str(partial), "--out", str(target)]) == 0
    assert LINE in (target / "report.md").read_text()
    assert LINE in (target / "report.html").read_text()


def test_progress_line_counts_failed_and_missing_runs():
    assert progress_line(8, 8, 0) == ""
    assert progress_line(0, 0, 0) == ""
    assert progress_line(8, 2, 0) == LINE
    assert "(1 failed: run the sweep again to retry them)" in progress_line(4, 3, 1)
    assert "(1 failed, 2 not run yet: run the sweep again to retry and finish)" in (
        progress_line(4, 1, 1)
    )
