"""init_snippet.py draws every parameter from initlab's law (KS tests) and refuses other models."""

import pytest
import torch
from scipy import stats
from torch import nn

from initlab.apply import initialize
from initlab.doctor.snippet import make_snippet
from test_apply import ReadoutFirst  # a readout registered before the encoder it is tied to

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
    header = "chosen by `initlab.trials(...)`"  # its maker, named in the docstring only
    assert header in text and "initlab" not in text.replace(header, "")


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


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(100, 100)
        self.attn = nn.MultiheadAttention(100, 4, kdim=60, vdim=60)
        self.head = nn.Linear(100, 10)


@pytest.mark.parametrize("bias", ["zeros", "0.25", "torch_default"])
def test_the_snippet_sets_rnns_and_attention_as_initlab_does(bias):
    """Each parameter's law matches initlab's (KS, 10,000+ values a side; Bonferroni over
    the parameters) and the biases are the same values: an LSTM forget gate of 1, b_hh 0."""
    schemes = {"lstm": "he_normal", "attn": "glorot_uniform", "head": "glorot_uniform"}
    space: dict = {}
    exec(make_snippet(Recurrent(), schemes, name="r", message="m", bias=bias), space)
    mine = space["apply_init"](Recurrent(), torch.Generator().manual_seed(1))
    ref = Recurrent()
    initialize(ref, schemes, bias=bias, generator=torch.Generator().manual_seed(2))
    got, want = dict(mine.named_parameters()), dict(ref.named_parameters())
    weights = [n for n in want if "weight" in n]
    for name in weights:
        p = stats.ks_2samp(got[name].detach().flatten(), want[name].detach().flatten()).pvalue
        assert p > 0.01 / len(weights), name
    for name in want:
        if "bias" in name and (bias != "torch_default" or name.startswith("attn.")):
            assert torch.equal(got[name], want[name]), name  # attention's: 0 as MHA sets them
    forget = (mine.lstm.bias_ih_l0 + mine.lstm.bias_hh_l0).detach()[100:200]
    if bias == "torch_default":  # b_ih + b_hh, each U(±1/sqrt(100)): no forget-gate 1
        assert forget.abs().max() <= 0.2
    else:
        assert torch.all(forget == 1)


def test_the_snippet_sets_a_bfloat16_rnn():
    """QR has no bf16 kernel: the orthogonal draws are float32, then copied."""
    space: dict = {}
    rnn = nn.GRU(16, 16).to(torch.bfloat16)
    exec(make_snippet(rnn, {"": "he_normal"}, name="b", message="m"), space)
    fresh = space["apply_init"](nn.GRU(16, 16).to(torch.bfloat16), torch.Generator().manual_seed(0))
    w = fresh.weight_hh_l0.detach().float()
    assert torch.allclose(w.T @ w, torch.eye(16), atol=16 * 2**-8)  # bf16 rounding, 16 terms


class TiedLM(nn.Module):
    """A language model whose output layer shares its embedding's table."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(200, 100)
        self.mid = nn.Linear(100, 100)
        self.head = nn.Linear(100, 200, bias=False)
        self.head.weight = self.embed.weight


def test_the_snippet_sets_a_tied_output_layer_through_its_shared_table():
    """``named_parameters()`` lists the shared table once, as ``embed.weight``; the snippet
    must still reach it as ``head.weight``, keep the tie, and draw it from initlab's law."""
    schemes = {"mid": "he_normal", "head": "glorot_uniform"}
    space: dict = {}
    exec(make_snippet(TiedLM(), schemes, name="t", message="m"), space)
    mine = space["apply_init"](TiedLM(), torch.Generator().manual_seed(1))
    assert mine.head.weight is mine.embed.weight
    bound = (6 / (100 + 200)) ** 0.5  # glorot_uniform; the table was N(0, 1) as built
    assert float(mine.head.weight.detach().abs().max()) <= bound
    ref = TiedLM()
    initialize(ref, schemes, generator=torch.Generator().manual_seed(2))
    for name in ("head", "mid"):
        got = getattr(mine, name).weight.detach().flatten()
        want = getattr(ref, name).weight.detach().flatten()
        assert stats.ks_2samp(got, want).pvalue > 0.01 / 2, name
    assert torch.equal(mine.mid.bias, torch.zeros(100))


@pytest.mark.parametrize("scheme", ["orthogonal(gain=1.5)", "delta_orthogonal(gain=1.5)"])
def test_the_snippet_draws_a_grouped_conv_group_by_group_as_initlab_does(scheme):
    """Same generator seed, same draws: the snippet loops over the groups in initlab's order
    (one orthogonal matrix per group; a depthwise conv's channels each of norm 1.5)."""

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv1d(8, 8, 5, groups=8), nn.Conv2d(8, 16, 3, groups=2))

    schemes = {"0": scheme, "1": scheme}
    space: dict = {}
    exec(make_snippet(net(), schemes, name="t", message="m"), space)
    mine, ref = net(), net()
    space["apply_init"](mine, torch.Generator().manual_seed(4))
    initialize(ref, schemes, generator=torch.Generator().manual_seed(4))
    for a, b in zip(mine, ref, strict=True):
        assert torch.allclose(a.weight, b.weight, atol=1e-6)
    norms = mine[0].weight.detach().pow(2).sum(dim=(1, 2))
    assert torch.allclose(norms, torch.full((8,), 2.25), rtol=1e-5)


def test_lsuv_lines_on_a_depthwise_conv_match_initlabs_std():
    """LSUV starts from the per-group orthogonal draw; the snippet scaled a whole-tensor
    draw's std and came out 4/3 too large on a depthwise Conv2d(16, 16, 3, groups=16)."""

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Flatten(),
                             nn.Linear(16 * 6 * 6, 4))  # fmt: skip

    reference = net()
    data = torch.randn(256, 16, 6, 6, generator=torch.Generator().manual_seed(3))
    initialize(reference, {"0": "lsuv"}, data=data, generator=torch.Generator().manual_seed(0))
    space: dict = {}
    exec(make_snippet(net(), {"0": "lsuv"}, name="l", message="m", reference=reference), space)
    mine = space["apply_init"](net(), torch.Generator().manual_seed(1))

    def rms(layer: nn.Module) -> float:  # exact for orthogonal rows (std has their mean)
        return float(layer.weight.detach().double().pow(2).mean().sqrt())

    want = rms(reference[0])
    assert abs(rms(mine[0]) - want) < 1e-4 * want


def test_a_tied_weight_is_drawn_once_by_its_random_scheme_in_the_snippet_as_in_initialize():
    """The snippet drew the weight at each holder (the last, zeros, won) where initialize
    keeps one draw; a readout registered first with zeros zeroed the encoder in both."""
    schemes = {"enc": "orthogonal", "out": "zeros"}
    space: dict = {}
    with pytest.warns(UserWarning, match="tied"):
        initialize(ref := ReadoutFirst(), schemes, generator=torch.Generator().manual_seed(0))
    exec(make_snippet(ReadoutFirst(), schemes, name="t", message="m"), space)
    mine = space["apply_init"](ReadoutFirst(), torch.Generator().manual_seed(1))
    for model in (mine, ref):
        w = model.enc.weight.detach()
        torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)


def test_the_snippet_sets_dirac_as_initialize_does_on_a_grouped_conv():
    """dirac fell through to 'a normal law with its std', which is 0: all zeros."""
    conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4))
    space: dict = {}
    exec(make_snippet(conv, {"0": "dirac"}, name="d", message="m"), space)
    mine = space["apply_init"](nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4)))
    ref = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4))
    initialize(ref, {"0": "dirac"})
    # exact by construction: dirac writes 0s and 1s
    assert torch.equal(mine[0].weight, ref[0].weight) and int(ref[0].weight.sum()) == 8


def test_the_snippet_sets_identity_as_initialize_does():
    """identity's std is None: the snippet wrote normal_(p, 0.0, 0.0), zeros, for gain · I."""
    space: dict = {}
    exec(make_snippet(nn.Sequential(nn.Linear(6, 4)), {"0": "identity(gain=0.5)"},
                      name="i", message="m"), space)  # fmt: skip
    mine = space["apply_init"](nn.Sequential(nn.Linear(6, 4)))
    ref = nn.Sequential(nn.Linear(6, 4))
    initialize(ref, {"0": "identity(gain=0.5)"})
    # exact by construction: 0.5 times the 0s and 1s of eye_
    assert torch.equal(mine[0].weight, ref[0].weight) and float(ref[0].weight.sum()) == 2.0


def test_the_snippet_leaves_an_attentions_out_proj_bias_zero_under_torch_default():
    """As initialize does (nn.MultiheadAttention sets it 0); the snippet drew nn.Linear's."""
    schemes = {"attn": "glorot_uniform", "attn.out_proj": "glorot_uniform"}
    space: dict = {}
    exec(make_snippet(Recurrent(), schemes, name="r", message="m", bias="torch_default"), space)
    mine = space["apply_init"](Recurrent(), torch.Generator().manual_seed(1))
    ref = Recurrent()
    initialize(ref, schemes, bias="torch_default", generator=torch.Generator().manual_seed(2))
    assert not mine.attn.out_proj.bias.any() and not ref.attn.out_proj.bias.any()


class PaddedTagger(nn.Module):
    """A token table with a padding row, read out by a Linear of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(500, 64, padding_idx=0)
        self.head = nn.Linear(64, 500)


def test_a_schemes_tied_readout_keeps_its_table_in_the_snippet_as_initialize_does():
    """Under a scheme, initialize leaves a readout's table to the embedding rule (as built
    without one); the winner's snippet drew the table as the readout (Glorot, std ~0.08
    here) where the trials had trained the table as built (N(0, 1))."""
    from initlab.doctor.evidence import tied_readouts

    schemes = {"mid": "he_normal", "head": "glorot_uniform"}
    readouts = tied_readouts(TiedLM(), schemes)
    assert readouts == {"head": "embed"}
    assert tied_readouts(TiedLM(), {"mid": "he_normal", "head": "default"}) == {}
    space: dict = {}
    exec(make_snippet(TiedLM(), schemes, name="t", message="m", readouts=readouts), space)
    mine, ref = TiedLM(), TiedLM()
    table = mine.embed.weight.detach().clone()
    space["apply_init"](mine, torch.Generator().manual_seed(1))
    assert mine.head.weight is mine.embed.weight and torch.equal(mine.embed.weight, table)
    initialize(ref, "he_normal", output_init="glorot_uniform")  # the readout: kept too
    assert torch.equal(ref.embed.weight, ref.head.weight)
    got, want = mine.mid.weight.detach().flatten(), ref.mid.weight.detach().flatten()
    assert stats.ks_2samp(got, want).pvalue > 0.01


def test_the_snippet_draws_every_table_from_the_embedding_scheme_as_initialize_does():
    """``--embedding-init lecun_normal``: N(0, 1/D) per table (fan_in = D = 64), the padding
    row zero, the readout from its own scheme; KS against initialize on 32,000 values."""
    space: dict = {}
    schemes = {"head": "he_normal"}
    exec(make_snippet(PaddedTagger(), schemes, name="t", message="m", tables="lecun_normal"), space)
    mine, ref = PaddedTagger(), PaddedTagger()
    space["apply_init"](mine, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    initialize(ref, schemes, embedding_init="lecun_normal", generator=g)
    assert not mine.embed.weight[0].any() and not ref.embed.weight[0].any()
    for name in ("embed", "head"):
        got = getattr(mine, name).weight.detach()[1:].flatten()
        want = getattr(ref, name).weight.detach()[1:].flatten()
        assert stats.ks_2samp(got, want).pvalue > 0.01 / 2, name
    assert not mine.head.bias.any()
    assert make_snippet(PaddedTagger(), schemes, name="t", message="m", tables="default") == (
        make_snippet(PaddedTagger(), schemes, name="t", message="m")
    )
