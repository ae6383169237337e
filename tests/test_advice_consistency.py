"""The diagnosis advice agrees with its own findings and with mean-field theory.

A user study found the advice quoting "trainable depth ≈ 72.5 layers" next to an exploding-
gradient finding at 50 layers, recommending for 5 sigmoid layers a scheme that mean field says
trains 2 layers, and calling tanh's edge-of-chaos gain "gain(tanh)". The advice now states the
gradients' factor per layer and over the layers, and one trainable depth for every activation
and phase: ``6 xi_grad = 6 / |ln chi1|`` (docs/diagnosis.md, "Suggestions")."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch

import initlab
from initlab.models import MLP
from initlab.probe import diagnose
from initlab.probe.meanfield import theory_note
from initlab.probe.suggestions import scale_advice
from initlab.theory import analyze, chi1

NUMBER = r"([\d.]+(?:e[+-]\d+)?)"


def layers_frame(activation: str, std: float, depth: int, width: int = 256) -> pd.DataFrame:
    """The columns the suggestions read, for ``depth`` hidden layers of ``width`` units fed by
    ``width`` inputs, weights of std ``std``, zero biases, and a linear readout."""
    rows = [
        {"layer": f"blocks.{k}.linear", "activation": activation, "weight_std": std,
         "fan_in": width, "fan_out": width, "units": width, "bias_std": 0.0,
         "normalized": False}
        for k in range(depth)
    ]  # fmt: skip
    rows.append({**rows[-1], "layer": "output", "activation": None, "fan_out": 10})
    return pd.DataFrame(rows)


def advice(activation: str, sigma_w2: float, depth: int, direction: str | None) -> str:
    frame = layers_frame(activation, math.sqrt(sigma_w2 / 256), depth)
    return scale_advice(frame, frame.iloc[:-1], direction)


def quoted(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return float(found.group(1))


def test_chaotic_tanh_states_the_growth_and_a_depth_below_the_nets():
    """kaiming_normal(nonlinearity='tanh') at depth 50: sigma_w² = 25/9."""
    text = advice("tanh", 25 / 9, 50, "exploding")
    x1 = chi1("tanh", 25 / 9, 0.0)
    assert quoted(r"chi1 = " + NUMBER, text) == pytest.approx(x1, rel=5e-3)
    per_layer = quoted(r"grow ×" + NUMBER + " per layer in std", text)
    assert per_layer == pytest.approx(math.sqrt(x1), rel=5e-3)
    over = quoted(r"×" + NUMBER + " from the last of these 50 layers to the first", text)
    assert over == pytest.approx(x1**24.5, rel=5e-3)  # 49 steps from the last to the first
    depth = quoted(r"trainable depth ≈ " + NUMBER + " layers", text)
    assert depth == pytest.approx(6 / math.log(x1), rel=5e-3) and depth < 50
    assert "fewer than these 50" in text
    # Schoenholz's longer 6·xi_c is quoted as the correlations', not as the net's depth
    xi_c_depth = quoted(r"6·xi_c ≈ " + NUMBER, text)
    assert xi_c_depth == pytest.approx(analyze("tanh", 25 / 9)["max_trainable_depth"], rel=5e-3)
    assert "the gradients explode first" in text


def test_unit_normal_tanh_at_depth_10_is_not_called_trainable_to_15_layers():
    text = advice("tanh", 256.0, 10, "exploding")
    depth = quoted(r"trainable depth ≈ " + NUMBER + " layers", text)
    assert depth == pytest.approx(6 / math.log(chi1("tanh", 256.0)), rel=5e-3)
    assert depth < 10 and "fewer than these 10" in text


CASES = [
    (act, sw2, depth)
    for act, scales in {
        "tanh": (0.3, 0.64, 0.9, 1.2, 2.78, 10.0),
        "relu": (1.0, 1.8, 2.3, 4.0),
        "sigmoid": (1.0, 4.0, 16.0),
        "selu": (0.3, 1.0, 2.0),
        "gelu": (1.0, 3.0),
    }.items()
    for sw2 in scales
    for depth in (5, 20, 50)
]


@pytest.mark.parametrize(("act", "sw2", "depth"), CASES)
def test_one_trainable_depth_for_every_activation_and_phase(act, sw2, depth):
    """Chaotic tanh quoted 6·xi_c while exploding ReLU quoted 6/ln chi1: now always 6/|ln chi1|,
    and compared with the net's depth only when below it or when the finding goes further."""
    x1 = chi1(act, sw2, 0.0)
    for direction in (None, "vanishing", "exploding"):
        note = theory_note(act, sw2, 0.0, layers=depth, direction=direction)
        quoted_depth = quoted(r"trainable depth ≈ " + NUMBER + " layers", note)
        assert quoted_depth == pytest.approx(6 / abs(math.log(x1)), rel=5e-3), note
        way = "grow" if x1 > 1 else "shrink"
        assert f"gradients {way} ×" in note
        if quoted_depth < depth:
            assert f"fewer than these {depth}" in note
        else:
            assert "fewer than" not in note
            # never "fine" beside a finding: the measurement is said to go further
            assert (direction is None) == ("trust" not in note), note


def test_the_depth_convention_is_consistent_with_the_findings_limits():
    """6/|ln chi1| layers change the gradients' std by e^3 ≈ 20, inside the gradient findings'
    limits (30): a net whose predicted factor crosses 30 is always deeper than its depth."""
    for act, sw2, depth in CASES:
        x1 = chi1(act, sw2, 0.0)
        factor = x1 ** ((depth - 1) / 2)
        if factor > 30 or factor < 1 / 30:
            assert 6 / abs(math.log(x1)) < depth, (act, sw2, depth)


def test_sigmoid_at_the_prescribed_scale_is_not_recommended_as_if_it_trained_5_layers():
    """torch_default (std 1/sqrt(3 fan_in)) and glorot_uniform (the prescription) in 5 sigmoid
    layers: both vanish, and the prescription's own trainable depth is 2.08 layers."""
    small = advice("sigmoid", 1 / 3, 5, "vanishing")
    rule_depth = 6 / abs(math.log(chi1("sigmoid", 1.0)))
    assert quoted(r"trainable depth is " + NUMBER + " layers, fewer than these 5", small) == (
        pytest.approx(rule_depth, rel=5e-3)
    )
    assert "use lecun_normal (fan_in) or glorot_normal (fan_avg) for the best scale" in small
    assert "normalization, fewer layers or another activation (tanh or relu)" in small
    at_rule = advice("sigmoid", 1.0, 5, "vanishing")
    assert at_rule.startswith("sigmoid layers already follow the gain rule")
    # beyond mean field's depth is slow or stalled training, not "cannot train": Glorot &
    # Bengio's 5-layer sigmoid nets trained (an instructor persona quoted the two together)
    assert "at the gain rule's scale these 5 layers may train slowly if at all" in at_rule
    assert "cannot train" not in at_rule
    assert "use " not in at_rule
    # two layers: the prescription reaches them, and the scheme is recommended plainly
    shallow = advice("sigmoid", 1 / 3, 2, "vanishing")
    assert shallow.endswith("use lecun_normal (fan_in) or glorot_normal (fan_avg)")


def test_any_weight_scale_hears_that_the_prescription_is_short():
    for sw2 in (0.05, 0.3, 0.8, 1.2, 1.6, 2.0, 8.0):
        text = advice("sigmoid", sw2, 5, "vanishing")
        assert "fewer than these 5" in text and "normalization" in text, text
        if "use " in text:
            assert "for the best scale" in text


def test_the_edge_of_chaos_gain_is_not_called_gain_tanh():
    text = advice("tanh", 0.64, 20, "vanishing")
    assert "gain(tanh)" not in text
    assert "g = 1, the critical gain for tanh at sigma_b² = 0 (its edge of chaos)" in text
    assert "not initlab.gain('tanh')" in text
    # where the prescription is initlab.gain itself, it is named so
    assert "g = gain(relu) = 1.414" in advice("relu", 1.0, 20, "vanishing")
    assert "g = gain(sigmoid) = 1" in advice("sigmoid", 1 / 3, 5, "vanishing")


def test_a_gelu_near_its_jump_is_not_called_the_edge_of_chaos():
    from initlab.theory import edge_of_chaos

    jump = edge_of_chaos("gelu").sigma_w2
    note = theory_note("gelu", jump * 1.0001, 0.0, weights=90_000)
    assert "edge of chaos" not in note and "(chi1 = 1" not in note
    assert "is at the jump (2.35) within sampling noise" in note and "no sigma_w² gives" in note
    far = theory_note("gelu", 1.0, 0.0, layers=5)
    assert "no sigma_w² gives chi1 = 1: chi1 jumps from 0.588 to 1.18 at sigma_w² = 2.35" in far
    assert "edge of chaos at" not in far


def _mlp(activation: str, init: str, depth: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = MLP(784, [256] * depth, 10, activation)
    initlab.initialize(model, init, output_init="glorot_uniform",
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
    return model


@pytest.mark.parametrize(
    ("activation", "init", "depth", "name"),
    [
        ("sigmoid", "glorot_uniform", 5, "vanishing_gradients"),
        ("tanh", "random_normal(stddev=1.0)", 10, "exploding_gradients"),
    ],
)
def test_the_predicted_factor_is_the_measured_one(activation, init, depth, name):
    """The advice's "×F from the last of these layers to the first" is what the finding's
    dL/dz std first/last hidden measures (0.00312 vs 0.00299; 1.73e4 vs 2.02e4)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 784, generator=g), torch.randint(0, 10, (256,), generator=g)
    found = diagnose(_mlp(activation, init, depth), x, y).finding(name)
    grads = found.values if isinstance(found.values, dict) else {}
    measured = quoted(r"first/last hidden " + NUMBER, found.message)
    predicted = quoted(r"×" + NUMBER + f" from the last of these {depth} layers", found.suggestion)
    assert predicted == pytest.approx(measured, rel=0.5), (found.message, grads)
    assert "fewer than these" in found.suggestion


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_gelu_at_the_gain_rule_hears_that_no_scale_holds_its_variance(activation):
    """The doctor planned gain(gelu) for 30 layers and its vanishing remained, with the advice
    still reading "use variance_scaling(scale=2.352 …)": q = 1 repels there (L'(1) ≈ 1.14)."""
    g2 = initlab.theory.numeric_gain(activation) ** 2
    text = advice(activation, g2, 30, "vanishing")
    _, slope = initlab.theory.scales.unstable_fixed_point(activation, g2)
    assert quoted(r"L'\(q\) = " + NUMBER, text) == pytest.approx(slope, rel=5e-3)
    over = quoted(r"×" + NUMBER + " over these 30 layers", text)
    assert over == pytest.approx(slope**30, rel=0.05)
    assert "no weight scale alone holds them steady" in text and "residual connections" in text
    assert "unstable" not in advice(activation, g2, 3, "vanishing")  # 1.14³ < 2: not worth it
    assert "unstable" not in advice("relu", 2.0, 30, "vanishing")  # marginal, L' = 1
    assert "unstable" not in advice("tanh", 1.0, 30, "vanishing")  # q* = 0 attracts
