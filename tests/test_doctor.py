import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.doctor import find_activations, recommend
from initlab.models import MLP, SmallCNN


class Functional(nn.Module):
    """Activations written as functions and tensor methods, behind batch norm and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.d, self.e = nn.Linear(16, 16), nn.Linear(16, 4)
        self.norm, self.drop = nn.BatchNorm1d(16), nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.a(x))
        h = self.drop(self.norm(self.b(h))).tanh()
        h = F.leaky_relu(self.c(h), 0.2)
        h = self.d(h)  # straight into the next layer: linear
        return self.e(torch.cumsum(h, dim=1))  # something initlab cannot classify


def test_activations_are_found_behind_norms_dropout_and_in_functional_code():
    model = Functional()
    found, slopes = find_activations(
        model, torch.randn(4, 8), initlab.coverage.initializable_layers(model)
    )
    assert found == {"a": "gelu", "b": "tanh", "c": "leaky_relu", "d": "unknown", "e": "linear"}
    assert slopes == {"c": 0.2}


def test_module_activations_in_builders():
    model = SmallCNN((1, 28, 28), 10, "silu")
    layers = initlab.coverage.initializable_layers(model)
    found, _ = find_activations(model, torch.randn(2, 1, 28, 28), layers)
    assert found == {
        "features.0": "silu",
        "features.3": "silu",
        "classifier.1": "silu",
        "classifier.3": "linear",
    }


@pytest.mark.parametrize(
    ("activation", "scheme"),
    [
        ("relu", "he_normal"),
        ("selu", "lecun_normal"),
        ("tanh", "glorot_normal"),
        ("sigmoid", "glorot_normal"),
        ("gelu", "variance_scaling(scale=2.3517"),
    ],
)
def test_plan_rules(activation, scheme):
    plan = recommend(MLP(8, [16, 16], 3, activation), torch.randn(4, 8))
    assert plan["blocks.0.linear"].startswith(scheme)
    assert plan["output"] == "glorot_uniform"
    assert all(e.reason for e in plan.entries)


def test_plan_applies_and_fixes_a_badly_initialized_deep_tanh_net():
    model = MLP(64, [256] * 20, 10, "tanh")
    x = torch.randn(256, 64)
    initlab.initialize(model, "random_normal")  # std 0.05: the signal vanishes with depth
    plan = recommend(model, x)
    initlab.initialize(model, plan, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = model.flatten(x)
        for block in model.blocks:
            h = block(h)
    assert h.std() > 0.1  # with std 0.05 it is ~1e-8 at depth 20


def test_unknown_activations_get_lsuv_which_needs_data():
    model, x = Functional(), torch.randn(32, 8)
    plan = recommend(model, x)
    assert plan["d"] == "lsuv" and plan.needs_data
    with pytest.raises(initlab.InitlabError, match="needs data"):
        initlab.initialize(model, plan)
    record = initlab.initialize(model, plan, data=x)
    assert "rescalings" in record.to_frame().columns
    assert "activation" in str(plan) and len(plan) == 5


def test_orthogonal_family_uses_delta_orthogonal_for_convs_and_the_activation_gain():
    model = SmallCNN((1, 28, 28), 10, "relu")
    plan = recommend(model, torch.randn(2, 1, 28, 28), family="orthogonal")
    assert plan["features.0"] == "delta_orthogonal(gain=1.414)"
    assert plan["classifier.1"] == "orthogonal(gain=1.414)"
    assert plan["classifier.3"] == "glorot_uniform"
    initlab.initialize(model, plan)
    w = model.features[0].weight  # [32, 1, 3, 3]: the orthogonal column sits at the centre tap
    assert torch.count_nonzero(w[:, :, 0, 0]) == 0 and torch.count_nonzero(w[:, :, 1, 1]) == 32
    tanh_plan = recommend(MLP(16, [32, 32], 3, "tanh"), torch.randn(4, 16), family="orthogonal")
    assert tanh_plan["blocks.1.linear"] == "orthogonal(gain=1)"  # the edge of chaos
    with pytest.raises(initlab.InitlabError, match="did you mean 'orthogonal'"):
        recommend(MLP(16, [32], 3), torch.randn(4, 16), family="orthogonl")


class HandWrittenSwish(nn.Module):
    """x * sigmoid(x) written out (as older EfficientNet code does), in both orders."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h = h * torch.sigmoid(h)
        h = self.b(h)
        g = self.c(h.sigmoid() * h)
        return g.sigmoid()  # a plain sigmoid stays a sigmoid


def test_a_hand_written_swish_is_silu_not_sigmoid():
    model = HandWrittenSwish()
    found, _ = find_activations(
        model, torch.randn(4, 8), initlab.coverage.initializable_layers(model)
    )
    assert found == {"a": "silu", "b": "silu", "c": "sigmoid"}
    plan = recommend(model, torch.randn(4, 8))
    assert [e.activation for e in plan.entries] == ["silu", "silu", "sigmoid"]
    assert plan["a"] != plan["c"]  # a gain for swish, not for a sigmoid


class TwoRoads(nn.Module):
    """Data-dependent code: ``b`` runs only on batches with a negative mean."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(6, 8), nn.Linear(6, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x)) if x.mean() > 0 else torch.tanh(self.b(x))
        return self.out(h)


def test_a_layer_the_probe_never_ran_is_left_as_built():
    """Not called 'linear' and given orthogonal: nothing is known of what follows it."""
    model, x = TwoRoads(), torch.rand(16, 6)  # positive: only a runs
    plan = initlab.recommend(model, x)
    assert plan["a"] == "he_normal" and plan["b"] == "default"
    before = model.b.weight.detach().clone()
    initlab.initialize(model, plan)
    assert torch.equal(model.b.weight, before)


class ChannelsLast(nn.Module):
    """A ConvNeXt/ViT-style stem: conv → permute/transpose → LayerNorm → Linear → relu."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 8, 2, stride=2), nn.LayerNorm(8)
        self.mix, self.head = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).permute(0, 2, 3, 1)  # [B, H, W, C]
        h = F.relu(self.mix(self.norm(h)))
        h = h.flatten(1, 2).transpose(1, 2).movedim(1, 2)  # [B, HW, C]
        return self.head(h.mean(1))


def test_axis_permutations_pass_the_activation_on():
    model = ChannelsLast()
    found, _ = find_activations(
        model, torch.randn(2, 3, 8, 8), initlab.coverage.initializable_layers(model)
    )
    # the conv meets no nonlinearity before the next layer (it was 'unknown', so LSUV)
    assert found == {"conv": "linear", "mix": "relu", "head": "linear"}


def test_a_layer_a_norm_rescales_is_told_its_scale_sets_the_learning_rate_not_the_signal():
    """Convs feeding BatchNorm got He's 'keeps the signal' reason alone, though the norm
    removes whatever scale the init gives them."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8),
        nn.ReLU(), nn.Linear(8, 3),
    )  # fmt: skip
    reasons = {e.layer: e.reason for e in recommend(model, torch.randn(4, 1, 8, 8)).entries}
    assert reasons["0"].startswith("ReLU zeroes half") and "a normalization follows" in reasons["0"]
    assert "normalization" not in reasons["4"] and "normalization" not in reasons["6"]


def test_a_tied_readout_is_kept_with_the_other_embedding_tables():
    """A tied head's scheme re-initialized the token embedding at the readout's scale, apart
    from the position table: the plan lost to the model as built."""
    from initlab.models.gpt import gpt

    torch.manual_seed(0)
    model = gpt(vocab_size=32, width=16, depth=1)
    ids = torch.randint(0, 32, (4, 8))
    assert "tied" not in recommend(model, ids).entries[-1].reason
    model.head.weight = model.tok_emb.weight
    last = recommend(model, ids).entries[-1]
    assert (last.layer, last.scheme) == ("head", "default")
    assert "tied to tok_emb: an embedding table" in last.reason
