"""A readout whose output shrinks with width at init (variance 1/fan_in², as muP's) is what
muP allows: not a problem under muP, and said to be muP-compatible under SP or as built
(docs/scaling.md §3)."""

from __future__ import annotations

import pytest
from torch import nn

from initlab.scaling import coord_check
from initlab.scaling.evidence import inconclusive
from initlab.scaling.sentences import explain_readout_init, with_sentences
from initlab.scaling.verdicts import Verdict

KINDS = {"1.weight": "input", "3.weight": "hidden", "5.weight": "output"}


def at_init(module: str, slope: float, low: float, high: float, step: int = 0) -> Verdict:
    return Verdict(module, step, "std", slope, low, high, True, 12, p_value=1e-6, p_adjusted=1e-5)


def test_under_mup_a_readout_shrinking_at_init_within_its_rule_is_expected_not_flagged():
    fits = [
        at_init("5", -0.5, -0.6, -0.4),  # variance 1/fan_in²: muP's readout
        at_init("(logits)", -0.95, -1.1, -0.8),  # smaller still: allowed
        at_init("5", -0.2, -0.25, -0.15),  # between SP and muP: not muP's rule
        at_init("3", -0.5, -0.6, -0.4),  # a hidden layer shrinking at init: a defect
        at_init("5", -0.5, -0.6, -0.4, step=1),  # after an update: not the init
    ]
    judged = explain_readout_init(fits, "mup", KINDS)
    assert [v.flagged for v in judged] == [False, False, True, True, True]
    assert judged[0].explained and judged[1].explained and not judged[2].explained
    assert inconclusive(judged) == []  # explained fits do not read as "could not tell"
    assert explain_readout_init(fits, "sp", KINDS) == fits  # SP: stays flagged
    # the factory's own init: a muP readout is its author's choice, not a defect, when its
    # weights follow muP's law (mean square as width^-2, or zero)
    for law in (-2.0, float("-inf")):
        assert [v.flagged for v in explain_readout_init(fits, "default", KINDS, law)] == [
            False, False, True, True, True
        ]  # fmt: skip
    # PyTorch's default readout keeps SP's weights (width^-1): its output shrinks through the
    # bias, and an unmeasured law explains nothing either
    assert explain_readout_init(fits, "default", KINDS, -1.0) == fits
    assert explain_readout_init(fits, "default", KINDS) == fits


def test_a_shrinking_size_after_a_step_is_not_called_vanishing_updates():
    """The logits' std at step 1 (the init carried forward) read 'updates vanish ... muP
    scales this layer's learning rate by 1/width', advice that would shrink them further."""
    (size,) = with_sentences([at_init("5", -0.5, -0.6, -0.4, step=1)], "default", "sgd", KINDS)
    assert "updates vanish" not in size.sentence and "carried forward" in size.sentence
    update = Verdict("5", 1, "update", -0.9, -1.0, -0.8, True, 12, p_value=1e-6, p_adjusted=1e-5)
    (moved,) = with_sentences([update], "default", "sgd", KINDS)
    assert "updates vanish" in moved.sentence and "by 1/width" not in moved.sentence
    # an input layer under SP with Adam: muP keeps its rate and init, as the run did
    first = Verdict("1", 1, "update", -0.2, -0.3, -0.1, True, 12, p_value=1e-6, p_adjusted=1e-5)
    (inputs,) = with_sentences([first], "sp", "adam", KINDS)
    assert "as this run did: an effect of other layers" in inputs.sentence
    # hidden layers under SGD: muP keeps their rate but changes the output layer's, which
    # reaches them; the advice is muP's, not "not the cure" (it contains "1/width")
    hidden = Verdict("3", 1, "update", -0.9, -1.0, -0.8, True, 12, p_value=1e-6, p_adjusted=1e-5)
    (kept,) = with_sentences([hidden], "sp", "sgd", KINDS)
    assert "not the cure" not in kept.sentence and "scales the output layer's" in kept.sentence
    # under muP, a model that applies muP itself gets it twice: the sentence says so
    (twice,) = with_sentences([update], "mup", "adam", KINDS)
    assert "whether the factory applies muP itself" in twice.sentence
    assert "param='default'" in twice.sentence  # Python surface (the CLI: --param)


@pytest.mark.parametrize("param", ["sp", "default", "mup"])
def test_the_sentence_calls_a_shrinking_readout_at_init_mup_compatible(param):
    (v,) = with_sentences([at_init("(logits)", -0.95, -1.1, -0.8)], param, "adam", KINDS)
    if param == "default":  # flagged as built: its weights are not muP's (else explained)
        assert "its weights keep SP's variance" in v.sentence and "bias" in v.sentence
    else:
        assert "muP-compatible, not a defect" in v.sentence
    assert "muP initializes with variance ∝ 1/fan_in" not in v.sentence
    (slow,) = with_sentences([at_init("5", -0.2, -0.25, -0.15)], param, "adam", KINDS)
    assert "follows neither" in slow.sentence and "muP-compatible" not in slow.sentence
    (hidden,) = with_sentences([at_init("3", 0.5, 0.4, 0.6)], param, "adam", KINDS)
    assert "muP-compatible" not in hidden.sentence  # a growing hidden init: the old sentence


def narrow_readout(width: int = 32) -> nn.Module:
    """A readout of variance 1/fan_in² (std 1/width), zero bias: muP's readout init."""
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 10),
    )  # fmt: skip
    nn.init.normal_(model[5].weight, std=1.0 / width)
    nn.init.zeros_(model[5].bias)
    return model


def bottleneck(width: int = 32) -> nn.Module:
    """``3`` has width in and 8 out without being the readout: muP gives it 1/fan_in², so
    its output (no bias) shrinks as width^-½ at init."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 8, bias=False), nn.ReLU(),
        nn.Linear(8, 10),
    )  # fmt: skip


KW = dict(widths=(32, 64, 128, 256), optimizer="adam", lr=1e-3, steps=1, seeds=3, batch_size=32)


def test_a_factory_with_a_mup_readout_checked_as_built_is_told_it_is_mup_compatible():
    result = coord_check(narrow_readout, param="default", **KW)
    logits = next(v for v in result.verdicts if v.module == "(logits)" and v.step == 0)
    assert logits.ci_high < 0  # the logits do shrink: width^-½
    assert not logits.flagged  # as built: its author's choice
    assert logits.explained == "muP's readout init (variance ≤ 1/fan_in²)"


def pytorch_readout(width: int = 32) -> nn.Module:
    """PyTorch's default Linear throughout: SP weights, bias std 1/√(3·fan_in)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 10),
    )  # fmt: skip


def test_pytorchs_default_readout_shrinking_at_init_is_not_called_mup():
    """Its logits shrink at init (slope about -0.25 here) through the bias, whose share of
    the output falls with width: 'as muP's readout init allows: expected' hid it."""
    result = coord_check(pytorch_readout, param="default", **KW)
    assert not [
        v for v in result.verdicts if v.explained == "muP's readout init (variance ≤ 1/fan_in²)"
    ]
    assert not any("as muP's readout init allows" in n for n in result.notes)


def test_under_mup_an_output_kind_layer_shrinking_at_init_is_not_flagged():
    result = coord_check(bottleneck, param="mup", **KW)
    fits = [v for v in result.verdicts if v.module == "3" and v.step == 0 and v.metric == "std"]
    assert fits[0].ci_high < 0 and not fits[0].flagged and fits[0].explained
    assert not [v for v in result.flagged() if v.module == "3" and v.step == 0]
    assert any("as muP's readout init allows" in n for n in result.notes)


class TwoHidden(nn.Module):
    """``64 → width → width → 10`` with ReLU, PyTorch's default init: SP as built."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, width), nn.Linear(width, width)
        self.head = nn.Linear(width, 10)

    def features(self, x):
        return self.fc2(self.fc1(x.flatten(1)).relu()).relu()


class Multiplied(TwoHidden):
    """muP by hand: a zero readout whose output the forward scales by 32/width."""

    def __init__(self, width: int = 32) -> None:
        super().__init__(width)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.scale = 32 / width

    def forward(self, x):
        return self.head(self.features(x)) * self.scale


def test_a_readout_the_forward_rescales_is_not_told_to_lower_its_learning_rate():
    """Its logits grew because the hidden layers train at Adam's η; the sentence said muP
    'scales the output layer's learning rate by 1/width and zero-initializes it', which it
    does already (by the multiplier): following it shrank the logits as width^-1."""
    result = coord_check(Multiplied, param="default", **{**KW, "lr": 0.01, "steps": 3})
    said = [v.sentence for v in result.flagged() if v.module in ("(logits)", "head")]
    assert said and all("already rescales `head`'s output" in s for s in said)
    assert not any("zero-initializes it" in s for s in said)


class LogSoftmaxed(TwoHidden):
    """Plain SP layers whose forward returns log-probabilities: a fixed transform of the
    logits, not a width multiplier."""

    def forward(self, x):
        return nn.functional.log_softmax(self.head(self.features(x)), dim=-1)


def test_a_log_softmax_readout_is_not_taken_for_a_mup_multiplier():
    """log_softmax changes the logits' std too: an SP model with Adam heard that 'the forward
    already rescales head's output (muP's output multiplier)', the opposite of muP's advice."""
    result = coord_check(LogSoftmaxed, param="sp", **{**KW, "lr": 0.01, "steps": 3, "seeds": 2})
    assert result.flagged()  # SP with Adam: the updates grow with width
    assert not any("already rescales" in v.sentence for v in result.flagged())
