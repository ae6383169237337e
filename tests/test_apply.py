import math
import warnings

import pytest
import torch
from torch import nn

from initlab import initialize
from initlab.coverage import initializable_layers
from initlab.errors import InitlabError
from initlab.notes import InitlabNote


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.body = nn.Sequential(nn.Linear(16, 400), nn.LayerNorm(400), nn.Tanh())
        self.inner = nn.ModuleDict({"conv": nn.Conv1d(4, 8, 3), "rnn": nn.LSTM(8, 8)})
        self.head = nn.Linear(400, 300)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_initializes_every_linear_and_conv_layer_also_when_nested():
    model = Nested()
    record = initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    assert [r["layer"] for r in record.rows] == ["body.0", "inner.conv", "inner.rnn", "head"]
    head = record.rows[-1]
    assert (head["fan_in"], head["fan_out"]) == (400, 300)
    assert head["expected_std"] == pytest.approx(math.sqrt(2 / 400))
    # 120,000 samples: the sample std is within a few percent of sqrt(2/fan_in)
    assert head["std"] == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert torch.count_nonzero(model.head.bias) == 0


def test_unknown_layers_are_left_exactly_as_they_were_and_reported():
    model = Nested()
    before = snapshot(model)
    record = initialize(model, "zeros")
    after = snapshot(model)
    for key in ("embed.weight", "body.1.weight", "body.1.bias"):
        assert torch.equal(before[key], after[key]), key
    assert torch.count_nonzero(model.inner.rnn.weight_ih_l0) == 0  # an RNN's input kernel is set
    skipped = {s["layer"]: s["type"] for s in record.skipped}
    assert skipped == {"embed": "Embedding", "body.1": "LayerNorm"}
    assert "left as they were" in str(record)


def test_output_layer_gets_its_own_scheme_or_is_kept():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    initialize(model, "zeros", output_init="ones")
    assert torch.all(model[0].weight == 0) and torch.all(model[2].weight == 1)
    kept = model[2].weight.detach().clone()
    kept_bias = model[2].bias.detach().clone()
    record = initialize(model, "ones", output_init="keep", bias=0.5)
    assert torch.all(model[0].weight == 1) and torch.equal(model[2].weight, kept)
    assert torch.equal(model[2].bias, kept_bias)  # a kept layer keeps its bias too
    assert [(r["scheme"], r["bias"]) for r in record.rows] == [
        ("ones", "constant(value=0.5)"),
        ("kept", "kept"),
    ]


@pytest.mark.parametrize("bias", ["zeros", "keep", "torch_default", 0.25])
def test_bias_policies(bias):
    layer = nn.Linear(100, 2000)
    with torch.no_grad():
        layer.bias.fill_(7.0)
    initialize(layer, "he_uniform", bias=bias)
    b = layer.bias.detach()
    if bias == "zeros":
        assert torch.all(b == 0)
    elif bias == "keep":
        assert torch.all(b == 7)
    elif bias == "torch_default":  # U(±1/sqrt(fan_in)): bounded, and spread over the range
        assert b.abs().max() <= 0.1 and b.abs().max() > 0.09
    else:
        assert torch.all(b == 0.25)


def test_an_unknown_bias_names_the_bias_policies_not_only_initializers():
    layer = nn.Linear(3, 2)
    with pytest.raises(
        InitlabError,
        match=r"unknown bias 'tourch_default'; did you mean "
        r"'torch_default'.*zeros, keep, torch_default, a number",
    ):
        initialize(layer, "he_uniform", bias="tourch_default")
    with pytest.raises(InitlabError, match="uniform: unknown parameter 'x'"):
        initialize(layer, "he_uniform", bias="uniform(x=1)")  # a spec's own error stays
    initialize(layer, "he_uniform", bias="0.5")  # a number as the command line gives it
    assert torch.all(layer.bias == 0.5)


def test_same_generator_seed_gives_identical_weights():
    a, b = Nested(), Nested()
    initialize(a, "glorot_uniform", generator=torch.Generator().manual_seed(3))
    initialize(b, "glorot_uniform", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.head.weight, b.head.weight)
    initialize(b, "glorot_uniform", generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a.head.weight, b.head.weight)


def test_transposed_conv_fans_come_from_the_module_not_the_tensor():
    # weight is [in=64, out/groups=4, 3, 3]: the tensor rule swaps the fans (pytorch#7865)
    layer = nn.ConvTranspose2d(64, 4, 3)
    row = initialize(layer, "he_normal").rows[0]
    assert (row["fan_in"], row["fan_out"]) == (64 * 9, 4 * 9)
    tensor_row = initialize(layer, "he_normal", fans="tensor").rows[0]
    assert (tensor_row["fan_in"], tensor_row["fan_out"]) == (4 * 9, 64 * 9)


def test_a_plan_maps_layer_names_to_schemes():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    record = initialize(model, {"0": "ones", "2": "zeros"})
    assert torch.all(model[0].weight == 1) and torch.all(model[2].weight == 0)
    assert [s["layer"] for s in record.skipped] == ["1"]
    with pytest.raises(InitlabError, match="lacks: 7"):
        initialize(model, {"7": "ones"})


def test_record_is_a_table():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    frame = initialize(model, "lecun_normal").to_frame()
    assert list(frame.columns[:6]) == ["layer", "type", "shape", "scheme", "fan_in", "fan_out"]
    assert len(initializable_layers(model)) == len(frame) == 2


def test_bad_schemes_are_clear_errors():
    model = nn.Linear(3, 3)
    with pytest.raises(InitlabError, match="did you mean 'he_normal'"):
        initialize(model, "he_norml")
    with pytest.raises(InitlabError):
        initialize(model, 42)
    with pytest.raises(InitlabError):
        initialize(model, "zeros", fans="weird")


def test_default_keeps_the_model_exactly_as_built_and_still_records_every_layer():
    model = Nested()
    before = snapshot(model)
    record = initialize(model, "default", bias="zeros")  # biases as built all the same
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # same tensors, untouched
    assert [r["layer"] for r in record.rows] == ["body.0", "inner.conv", "inner.rnn", "head"]
    assert {r["scheme"] for r in record.rows} == {"default"}
    assert {r["bias"] for r in record.rows} == {"kept"}
    # nn.Linear's own law U(±1/sqrt(fan_in)) has std 1/sqrt(3·fan_in): 120,000 samples → ±2%
    assert record.rows[-1]["std"] == pytest.approx(1 / math.sqrt(3 * 400), rel=0.02)


def test_an_output_init_that_would_be_ignored_is_refused():
    """A plan names every layer's scheme and 'default' keeps the output layer as built:
    ``output_init`` was silently dropped with either."""
    model = Nested()
    before = snapshot(model)
    with pytest.raises(InitlabError, match="output_init has no effect with 'default'"):
        initialize(model, "default", output_init="zeros")
    with pytest.raises(InitlabError, match="output_init has no effect with a plan"):
        initialize(model, {"head": "he_normal"}, output_init="zeros")
    assert all(torch.equal(before[k], v) for k, v in snapshot(model).items())
    initialize(model, {"head": "zeros"}, output_init="same")  # "same": nothing to drop
    assert torch.count_nonzero(model.head.weight) == 0


def test_default_in_a_plan_keeps_only_that_layer():
    model = Nested()
    before = snapshot(model)
    initialize(model, {"head": "default", "body.0": "zeros"})
    assert torch.equal(model.head.weight, before["head.weight"])
    assert torch.equal(model.head.bias, before["head.bias"])
    assert torch.count_nonzero(model.body[0].weight) == 0


class HeadFirst(nn.Module):
    """The head registered first, as many Hugging Face and timm models do."""

    def __init__(self, branchy: bool = False) -> None:
        super().__init__()
        self.classifier = nn.Linear(16, 3)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 16)
        self.branchy = branchy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        if self.branchy and bool(h.sum() > 0):  # data-dependent: torch.fx cannot trace it
            h = h * 1.0
        return self.classifier(torch.relu(self.fc2(h)))


def test_the_output_layer_is_the_last_one_called_not_the_last_registered():
    from initlab.doctor import recommend
    from initlab.layer_order import output_layer_name

    model = HeadFirst()
    initialize(model, "zeros", output_init="glorot_uniform")
    assert model.classifier.weight.abs().max() > 0  # the head got the output scheme
    assert model.fc2.weight.abs().max() == 0  # the last hidden layer the hidden one
    plan = recommend(HeadFirst(), torch.randn(4, 8))
    assert plan.output == "classifier" and plan["classifier"] == "glorot_uniform"
    assert plan["fc2"].startswith("he_normal")
    # untraceable: one run on a batch finds the order; without one, registration order
    branchy, x = HeadFirst(branchy=True), torch.randn(4, 8)
    assert output_layer_name(branchy, x) == "classifier"
    assert output_layer_name(branchy) == "fc2"
    before = {k: v.clone() for k, v in branchy.state_dict().items()}
    initialize(branchy, "zeros", output_init="keep", data=x)
    # "keep": the head is never written, so its weight is the same tensor bit for bit
    assert torch.equal(branchy.classifier.weight, before["classifier.weight"])


class AttentionPooled(nn.Module):
    """A readout that is never called as a module: attention pooling (its out_proj is read
    inside torch), as CLIP's AttentionPool2d ends."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 8)
        self.pool = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(x))
        return self.pool(h.mean(1, keepdim=True), h, h)[0].squeeze(1)


class WeightsOnlyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.l2(torch.relu(self.l1(x))))
        return torch.nn.functional.linear(h, 0.5 * self.head.weight, self.head.bias)


def test_a_readout_used_through_its_weights_is_still_the_output_layer():
    from initlab.layer_order import output_layer_name
    from initlab.residual import find_structure

    pooled, x = AttentionPooled(), torch.randn(5, 6, 4)
    assert output_layer_name(pooled, x) == "pool.out_proj"
    assert find_structure(pooled, x).output_layer == "pool.out_proj"
    initialize(pooled, "he_normal", output_init="zeros")
    assert pooled.proj.weight.count_nonzero() > 0  # the input layer was zeroed: a dead net
    assert output_layer_name(WeightsOnlyHead()) == "head"


class UnusedLastHead(nn.Module):
    """A projection head registered last that the forward never uses (SimCLR-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.head, self.proj_head = nn.Linear(4, 8), nn.Linear(8, 3), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.l1(x)))


def test_a_last_registered_layer_the_forward_never_uses_is_not_the_output_layer():
    from initlab.layer_order import output_layer_name

    model = UnusedLastHead()
    assert output_layer_name(model) == "head"
    initialize(model, "he_normal", output_init="zeros")
    assert model.head.weight.count_nonzero() == 0 and model.proj_head.weight.count_nonzero() > 0


def test_a_model_without_weight_layers_is_told_nothing_was_set():
    """initialize(nn.ReLU(), 'he_normal') returned an empty record without a word."""
    from initlab.notes import InitlabNote

    with pytest.warns(InitlabNote, match="ReLU has no weight layer a scheme sets"):
        assert initialize(nn.ReLU(), "he_normal").rows == []


class _TiedAutoencoder(nn.Module):
    """A hidden layer whose weight the readout shares (``out.weight = enc.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(32, 32)
        self.out = nn.Linear(32, 32)
        self.out.weight = self.enc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.enc(x)))


def test_a_weight_two_layers_share_is_drawn_once_by_the_first_and_the_record_stays_true():
    """output_init='zeros' on a readout tied to a hidden layer zeroed the hidden layer, and
    its record still said orthogonal with std 0.18."""
    model = _TiedAutoencoder()
    gen = torch.Generator().manual_seed(0)
    with pytest.warns(InitlabNote, match=r"out\.weight is enc\.weight \(tied\): drawn once"):
        record = initialize(model, "orthogonal", output_init="zeros", generator=gen)
    w = model.enc.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)  # still orthogonal
    rows = {r["layer"]: r for r in record.rows}
    assert rows["enc"]["scheme"].startswith("orthogonal") and rows["out"]["scheme"] == "tied to enc"
    assert rows["enc"]["std"] == pytest.approx(float(w.std()), rel=1e-6)


def test_lsuv_rescales_a_tied_weight_once_at_its_first_layer():
    """Rescaled at both of its layers, the shared weight could not give both unit variance:
    the second ran out of rescalings (10) at variance 0.51, recorded as LSUV's result."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
    model.append(nn.Linear(32, 10))
    model[2].weight = model[0].weight
    x = torch.randn(512, 32)
    record = initialize(model, "lsuv", data=x)
    rows = {r["layer"]: r for r in record.rows}
    assert rows["2"]["scheme"] == "tied to 0" and "rescalings" not in rows["2"]
    reached = [abs(r["output_var"] - 1.0) < 0.1 for r in rows.values() if "output_var" in r]
    assert reached == [True, True]  # layers 0 and 4, each at LSUV's tolerance
    with torch.no_grad():
        assert float(model[0](x).var()) == pytest.approx(rows["0"]["output_var"], rel=1e-4)
    # the tied row describes the rescaled tensor, not the draw before it
    assert rows["2"]["std"] == rows["0"]["std"] and rows["2"]["expected_std"] is None


class ReadoutFirst(_TiedAutoencoder):
    """The readout registered before the encoder it shares its weight with (test_snippet
    uses it too)."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.out = nn.Linear(32, 32)
        self.enc = nn.Linear(32, 32)
        self.out.weight = self.enc.weight


def test_a_constant_readout_scheme_never_draws_a_weight_it_shares_whatever_the_order():
    """Registered first, the readout's zeros drew the shared weight: the encoder was zeroed."""
    model = ReadoutFirst()
    with pytest.warns(InitlabNote, match="drawn once, by enc's orthogonal"):
        record = initialize(model, "orthogonal", output_init="zeros")
    w = model.enc.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)
    assert [r["layer"] for r in record.rows] == ["out", "enc"]  # the record in module order


def test_a_residual_rule_scales_a_weight_two_branches_share_once():
    """ALBERT-style blocks sharing their last layer: depth_scaled scaled the one tensor by
    1/sqrt(2) once per branch (x0.5) while each row said x0.7071."""

    class Block(nn.Module):
        def __init__(self, shared: nn.Parameter | None = None) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)
            if shared is not None:
                self.b.weight = shared

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.b(torch.relu(self.a(x)))

    def net() -> nn.Module:
        first = Block()
        return nn.Sequential(nn.Linear(16, 16), first, Block(first.b.weight), nn.Linear(16, 4))

    ruled, plain = net(), net()
    record = initialize(ruled, "he_normal", residual_init="depth_scaled",
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    initialize(plain, "he_normal", residual_init="none", generator=torch.Generator().manual_seed(0))
    ratio = float(ruled[1].b.weight.norm() / plain[1].b.weight.norm())
    assert ratio == pytest.approx(2**-0.5, rel=1e-5)
    rows = {r["layer"]: r for r in record.rows}
    assert rows["1.b"]["std"] == pytest.approx(float(ruled[1].b.weight.std()), rel=1e-6)
    assert rows["2.b"]["expected_std"] == pytest.approx(rows["1.b"]["expected_std"], rel=1e-12)


def test_the_holder_that_draws_a_shared_weight_is_also_the_one_lsuv_rescales_it_at():
    """LSUV rescaled at the first holder in module order (the readout, zeros) while the
    encoder drew: no rescaling at all, encoder output variance 24.9. A readout kept as
    built took the draw and dropped the encoder's orthogonal."""
    torch.manual_seed(0)
    model, x = ReadoutFirst(), 5 * torch.randn(512, 32)
    with pytest.warns(InitlabNote):
        record = initialize(model, {"enc": "lsuv", "out": "zeros"}, data=x)
    with torch.no_grad():
        assert float(model.enc(x).var()) == pytest.approx(1.0, abs=0.11)  # LSUV's tol 0.1
    assert {r["layer"]: r["scheme"] for r in record.rows}["out"] == "tied to enc"
    kept = ReadoutFirst()
    initialize(kept, {"enc": "orthogonal", "out": "default"})
    w = kept.enc.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)


def test_an_output_layer_guessed_from_registration_order_is_a_note_and_data_finds_it():
    model = HeadFirst(branchy=True)
    with pytest.warns(InitlabNote, match=r"output_init went to `fc2`.*pass data="):
        initialize(model, "he_normal", output_init="zeros")
    assert torch.count_nonzero(model.fc2.weight) == 0  # the guess, now said out loud
    model = HeadFirst(branchy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InitlabNote)
        initialize(model, "he_normal", output_init="zeros", data=torch.randn(2, 8))
    assert torch.count_nonzero(model.classifier.weight) == 0
