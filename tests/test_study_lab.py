"""The lab study's checks on hand-made results (the study itself runs in test_slow_studies)."""

import pandas as pd
import torch

from initlab.results import ResultSet
from initlab.studies import StudyContext, lab


def ctx_of(zeros_accuracies: list[float]) -> StudyContext:
    rows = [
        {"run_id": f"z{i}", "dataset": "digits", "init": "zeros", "seed": i, "test_accuracy": a}
        for i, a in enumerate(zeros_accuracies)
    ]
    runs = pd.DataFrame(rows, columns=["run_id", "dataset", "init", "seed", "test_accuracy"])
    return StudyContext(ResultSet(runs, pd.DataFrame(), ("init",)), "tiny")


def _class_shares(ctx: StudyContext) -> tuple[torch.Tensor, int]:
    labels = ctx.dataset("digits").y_test
    return torch.bincount(labels).double() / len(labels), len(labels)


def test_one_class_for_every_input_is_reproduced_whichever_class_it_is():
    shares, _ = _class_shares(ctx_of([]))
    smallest, largest = float(shares.min()), float(shares.max())
    outcome = lab._zeros_at_chance(ctx_of([smallest, largest]))  # not only the majority class
    assert outcome.reproduced is True, outcome.evidence
    tied = [k for k, x in enumerate(shares.tolist()) if x == smallest]  # exact: same counts
    said = (
        f"{smallest:.4f} (= class {tied[0]}'s share)"
        if len(tied) == 1
        else (f"{smallest:.4f} (= the share of classes {', '.join(map(str, tied))}: one of them")
    )  # "the share of each of 6 classes" read as a riddle to an instructor persona
    assert said in outcome.evidence


def test_an_accuracy_near_chance_but_not_one_class_share_is_not_reproduced():
    # a network whose predictions depend on the input lands near 0.1 too, but rarely on a
    # class's exact share: two examples off is not a constant prediction
    shares, n = _class_shares(ctx_of([]))
    outcome = lab._zeros_at_chance(ctx_of([float(shares[0]), float(shares[0]) + 2 / n]))
    assert outcome.reproduced is False, outcome.evidence


def test_no_zeros_run_is_undecided():
    assert lab._zeros_at_chance(ctx_of([])).reproduced is None


def test_a_tiny_study_says_it_is_a_smoke_test():
    """Students read '✘ NOT reproduced' at tiny scale as the paper failing."""
    from types import SimpleNamespace

    from initlab.studies.runner import StudyOutcome

    outcome = StudyOutcome(SimpleNamespace(command_name="he2015"), "tiny", None, [])
    assert "tiny scale is a smoke test" in outcome.verdict_line()
    default = StudyOutcome(SimpleNamespace(command_name="x"), "default", None, [])
    assert "smoke" not in default.verdict_line()
    # a clean pass at tiny scale said its verdicts "usually do not reproduce"
    passed, failed = SimpleNamespace(reproduced=True), SimpleNamespace(reproduced=False)
    clean = StudyOutcome(SimpleNamespace(command_name="x"), "tiny", None, [passed, passed])
    assert "a pass here is no evidence" in clean.verdict_line()
    assert "usually do not reproduce" not in clean.verdict_line()
    mixed = StudyOutcome(SimpleNamespace(command_name="x"), "tiny", None, [passed, failed])
    assert "usually do not reproduce" in mixed.verdict_line()
