"""The resnet-depth study: spec, data, checks on hand-made tables, tiny end to end (slow)."""

import math

import pandas as pd
import pytest
import torch

from initlab.studies import Expectation, get, run_named_study
from initlab.studies import resnet_depth_checks as c
from initlab.studies.resnet_depth_checks import init_profile


def test_spec_sweeps_depths_and_the_six_arms():
    spec = get("resnet-depth").spec("full")
    depths = [v[0] for v in spec.axes[0].values]
    assert depths == [20, 56, 110]
    arms = set(spec.axes[1].values)
    assert (False, "fixup") in arms and (True, "zero_last_norm") in arms and len(arms) == 6
    assert len(get("resnet-depth").spec("default").axes[0].values) >= 3


def test_data_is_fashion_mnist_padded_to_32():
    from initlab.studies.resnet_depth_data import fashion32

    x, y, xt, _ = fashion32()
    assert x.shape[1:] == (1, 32, 32) and xt.shape[1:] == (1, 32, 32)
    assert float(x[:, :, :2].abs().max()) == 0.0 and float(x[:, :, :, -2:].abs().max()) == 0.0
    assert float(x.max()) > 0.9 and y.max() == 9


def test_init_profile_of_plain_he_grows_and_fixup_is_flat():
    x, y = torch.rand(16, 1, 32, 32), torch.randint(0, 10, (16,))
    args = {"depth": 20, "width": 4, "norm": False, "in_channels": 1}
    plain = init_profile("initlab.models.resnet:resnet", args, "he_normal", "none", x, y)
    zero = init_profile("initlab.models.resnet:resnet", args, "he_normal", "zero_last_layer", x, y)
    assert len(plain.block_rms) == 9
    assert plain.block_rms[-1] > 4 * plain.block_rms[0]  # variance ×~2 per block at He
    assert zero.block_rms[-1] < plain.block_rms[-1] / 4
    assert plain.grad_norm > 0


def table(losses: dict, rms: dict, depths=(8, 56)) -> pd.DataFrame:
    """A rule_table: ``losses[(norm, rule)] = (loss at shallow, loss at deep)`` (None: diverged)."""
    rows = []
    for (norm, rule), values in losses.items():
        for depth, loss in zip(depths, values, strict=True):
            rows.append({
                "depth": depth, "norm": norm, "rule": rule, "n": 1,
                "loss": math.nan if loss is None else loss, "diverged": int(loss is None),
                "accuracy": 0.5, "last_rms": rms.get((norm, rule, depth), 1.0),
                "block_rms": [1.0, rms.get((norm, rule, depth), 1.0)], "stem_grad": 1.0,
            })  # fmt: skip
    return pd.DataFrame(rows)


FIXUP_PAPER = {
    (False, "none"): (1.5, None),
    (False, "fixup"): (1.4, 1.2),
    (False, "skipinit"): (1.4, 1.3),
    (False, "zero_last_layer"): (1.5, 1.6),
    (True, "none"): (1.0, 0.9),
    (True, "zero_last_norm"): (1.0, 0.95),
}
RMS = {(False, "none", 8): 10.0, (False, "none", 56): 1e6, (False, "fixup", 56): 3.0}


def test_checks_reproduced_on_the_papers_pattern():
    t = table(FIXUP_PAPER, RMS)
    for check in (
        c.signal_grows_with_depth,
        c.plain_fails_deepest,
        c.fixup_trains_deepest,
        c.bn_zero_last_norm_harmless,
    ):
        e = check(t)
        assert isinstance(e, Expectation) and e.reproduced is True, (check.__name__, e.evidence)


def test_checks_not_reproduced_when_plain_trains_and_fixup_does_not():
    losses = dict(FIXUP_PAPER)
    losses[(False, "none")] = (1.5, 1.2)
    losses[(False, "fixup")] = (1.5, math.log(10))
    losses[(True, "zero_last_norm")] = (1.0, 1.5)
    rms = {**RMS, (False, "none", 56): 12.0}
    t = table(losses, rms)
    assert c.signal_grows_with_depth(t).reproduced is False
    assert c.plain_fails_deepest(t).reproduced is False
    assert c.fixup_trains_deepest(t).reproduced is False
    assert c.bn_zero_last_norm_harmless(t).reproduced is False


def test_checks_undecided_without_runs():
    empty = pd.DataFrame()
    assert c.signal_grows_with_depth(empty).reproduced is None
    assert c.plain_fails_deepest(empty).reproduced is None
    assert c.bn_zero_last_norm_harmless(empty).reproduced is None


CHANCE = 2.37  # above ln 10 = 2.303: the loss of a net that learned nothing


def test_failure_checks_undecided_when_no_arm_trained():
    """The tiny scale's pattern: every arm at chance, the plain arm a bit worse. Its failure
    and zero_last_norm's "no cost" say nothing when the references did not train."""
    stuck = dict.fromkeys(FIXUP_PAPER, (CHANCE,))
    stuck[(False, "none")] = (2.47,)
    t = table(stuck, RMS, depths=(8,))
    plain, harmless = c.plain_fails_deepest(t), c.bn_zero_last_norm_harmless(t)
    assert plain.reproduced is None and "no reference trained" in plain.evidence
    assert harmless.reproduced is None and "did not train" in harmless.evidence


def test_plain_failure_needs_a_reference_that_trained():
    losses = {**dict.fromkeys(FIXUP_PAPER, (CHANCE, CHANCE)), (False, "none"): (1.5, None)}
    e = c.plain_fails_deepest(table(losses, RMS))  # the same arm trains when shallow
    assert e.reproduced is True and "the same arm at depth 8" in e.evidence
    losses[(False, "none")] = (CHANCE, None)
    assert c.plain_fails_deepest(table(losses, RMS)).reproduced is None
    losses[(True, "none")] = (CHANCE, 0.9)  # batch norm trains at the deepest depth
    e = c.plain_fails_deepest(table(losses, RMS))
    assert e.reproduced is True and "BN none at depth 56" in e.evidence


def test_zero_last_norm_decided_only_where_plain_batch_norm_trained():
    losses = dict(FIXUP_PAPER)
    losses[(True, "none")] = (CHANCE, 0.9)  # plain BN trains at depth 56 only
    losses[(True, "zero_last_norm")] = (CHANCE, 0.95)
    assert c.bn_zero_last_norm_harmless(table(losses, RMS)).reproduced is None
    losses[(True, "zero_last_norm")] = (CHANCE, 1.5)  # a trained depth where it costs
    assert c.bn_zero_last_norm_harmless(table(losses, RMS)).reproduced is False


@pytest.mark.slow
def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("resnet-depth", scale="tiny", out=tmp_path, workers=1)
    assert len(outcome.results.runs) == 6
    assert len(outcome.expectations) == 4
    assert all(e.claim and e.evidence for e in outcome.expectations)
    assert (tmp_path / "resnet-depth.png").is_file()
