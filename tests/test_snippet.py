"""init_snippet.py draws every parameter from initlab's law (KS tests) and refuses other models."""

import pytest
import torch
from scipy import stats
from torch import nn

from initlab.apply import initialize
from initlab.doctor.snippet import make_snippet

SCHEMES = {
    "0": "he_normal",
    "2": "orthogonal(gain=1.5)",
    "4": "variance_scaling(scale=0.7, mode=fan_out, distribution=uniform)",
    "6": "kaiming_normal",
    "8": "glorot_uniform",
}


def _net() -> nn.Module:
    layers = []
    for _ in range(4):
        layers += [nn.Linear(200, 200), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(200, 10))


def _snippet(schemes=SCHEMES) -> dict:
    space: dict = {}
    exec(make_snippet(_net(), schemes, name="t", message="test"), space)
    return space


def _values(model: nn.Module, k: str):
    return model[int(k)].weight.detach().flatten().numpy()


def _ks(snippet_schemes, initlab_schemes) -> list[float]:
    """KS p-value per weight: the snippet's draw against initlab's, 40,000 values a side
    (2,000 for the 10×200 output layer)."""
    mine, ref = _net(), _net()
    _snippet(snippet_schemes)["apply_init"](mine, torch.Generator().manual_seed(1))
    initialize(ref, initlab_schemes, generator=torch.Generator().manual_seed(2))
    return [stats.ks_2samp(_values(mine, k), _values(ref, k)).pvalue for k in initlab_schemes]


def test_the_snippet_draws_each_parameter_from_initlabs_law():
    # 5 tests at family-wise 1%: Bonferroni 0.002 each; a true law fails this by chance 1% of runs
    assert min(_ks(SCHEMES, SCHEMES)) > 0.01 / len(SCHEMES)


def test_a_wrong_law_is_detected():
    # fault injected: the snippet of glorot_normal against initlab's he_normal (std ratio
    # sqrt(2)); with 40,000 values a side the KS test rejects at any sensible level
    wrong = dict(SCHEMES, **{"0": "glorot_normal"})
    assert _ks(wrong, SCHEMES)[0] < 1e-6


def test_biases_are_zero_and_a_different_model_is_refused():
    model = _net()
    _snippet()["apply_init"](model)
    assert all(float(model[int(k)].bias.detach().abs().max()) == 0 for k in SCHEMES)
    apply_init = _snippet()["apply_init"]
    with pytest.raises(ValueError, match=r"different model: .*0\.weight has shape"):
        apply_init(nn.Sequential(nn.Linear(3, 200), *list(_net())[1:]))
    with pytest.raises(ValueError, match="different model: missing"):
        apply_init(nn.Sequential(nn.Linear(200, 200)))


def test_the_snippet_imports_nothing_from_initlab():
    text = make_snippet(_net(), SCHEMES, name="t", message="m")
    assert "initlab" not in text.replace("`initlab doctor --trials`", "")


def test_residual_and_lsuv_lines_reproduce_what_initlab_did():
    from initlab.doctor.snippet import residual_lines

    plain = _net()
    initialize(plain, "he_normal", generator=torch.Generator().manual_seed(0))
    ruled = _net()
    ruled.load_state_dict(plain.state_dict())
    with torch.no_grad():  # what a residual rule does: a zeroed layer, a scaled one
        ruled[2].weight.zero_()
        ruled[4].weight.mul_(0.25)
    lines = "\n".join(residual_lines(plain, ruled))
    assert "zeros_(p['2.weight'])" in lines and "p['4.weight'].mul_(0.25" in lines
    assert "0.weight" not in lines  # untouched parameters get no line
    reference = _net()
    data = torch.randn(512, 200, generator=torch.Generator().manual_seed(3))
    initialize(reference, {"0": "lsuv"}, data=data, generator=torch.Generator().manual_seed(0))
    space: dict = {}
    exec(make_snippet(_net(), {"0": "lsuv"}, name="l", message="m", reference=reference), space)
    mine = space["apply_init"](_net(), torch.Generator().manual_seed(1))
    # the orthogonal draw scaled to LSUV's std: equal stds up to float rounding
    want = float(reference[0].weight.detach().std())
    assert abs(float(mine[0].weight.detach().std()) - want) < 1e-4 * want
