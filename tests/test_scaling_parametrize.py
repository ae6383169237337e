"""SP / NTK / muP: init rescaling and learning-rate groups follow docs/scaling.md's table."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import InitlabError
from initlab.models.gpt import gpt
from initlab.models.scalable import mlp
from initlab.scaling.parametrize import parametrized


def lrs(result) -> dict[str, float]:
    return {n: g["lr"] for g in result.param_groups() for n in g["names"]}


def rms(t: torch.Tensor) -> float:
    return float(t.detach().double().square().mean().sqrt())


@pytest.mark.parametrize("param", ["sp", "ntk", "mup"])
def test_at_the_base_width_every_parametrization_is_the_factory(param):
    torch.manual_seed(0)
    built = parametrized(mlp, param, width=64, base_width=64, seed=3, readout_zero_init=False)
    torch.manual_seed(3)
    plain = mlp(width=64)
    for (name, p), q in zip(built.model.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q), name  # multiplied by exactly 1.0
    assert set(lrs(built).values()) == {built.lr}


@pytest.mark.parametrize(
    ("param", "optimizer", "expected"),
    [
        # (input weight, hidden weight, output weight, hidden bias, output bias) at m = 4
        ("sp", "adam", (1, 1, 1, 1, 1)),
        ("sp", "sgd", (1, 1, 1, 1, 1)),
        ("mup", "adam", (1, 1 / 4, 1 / 4, 1, 1)),
        ("mup", "sgd", (4, 1, 1 / 4, 4, 1)),
        ("ntk", "adam", (1, 1 / 2, 1 / 2, 1, 1)),
        ("ntk", "sgd", (1, 1 / 4, 1 / 4, 1, 1)),
    ],
)
def test_learning_rates_follow_the_table(param, optimizer, expected):
    built = parametrized(mlp, param, width=256, base_width=64, optimizer=optimizer, lr=0.1)
    got = lrs(built)
    names = ("blocks.0.linear.weight", "blocks.1.linear.weight", "output.weight")
    names += ("blocks.1.linear.bias", "output.bias")
    for name, factor in zip(names, expected, strict=True):
        assert got[name] == pytest.approx(0.1 * factor, rel=1e-12), name


def test_init_follows_the_fan_in_law_and_mup_zeroes_the_readout():
    base = parametrized(mlp, "sp", width=64, base_width=64, seed=0).model
    wide = parametrized(mlp, "sp", width=1024, base_width=64, seed=0).model
    mup = parametrized(mlp, "mup", width=1024, base_width=64, seed=0).model
    b, w = dict(base.named_parameters()), dict(wide.named_parameters())
    # hidden: rms scales as 1/sqrt(m_in) = 1/4; set exactly (up to float rounding)
    ratio = rms(w["blocks.1.linear.weight"]) / rms(b["blocks.1.linear.weight"])
    assert ratio == pytest.approx(0.25, rel=1e-5)
    # biases of width-sized outputs: width-independent rms
    assert rms(w["blocks.1.linear.bias"]) == pytest.approx(rms(b["blocks.1.linear.bias"]), 1e-5)
    assert not mup.output.weight.any() and not mup.output.bias.any()
    table3 = parametrized(mlp, "mup", width=1024, base_width=64, seed=0, readout_zero_init=False)
    ratio = rms(table3.model.output.weight) / rms(b["output.weight"])
    assert ratio == pytest.approx(1 / 16, rel=1e-5)  # variance base / m_in^2


def test_a_fixed_std_init_is_brought_to_the_fan_in_law():
    def gpt2_style(width: int = 64) -> nn.Module:
        model = nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Linear(width, width))
        for p in model.parameters():
            nn.init.normal_(p, std=0.02)
        return model

    built = parametrized(gpt2_style, "mup", width=1024, base_width=64, seed=0)
    hidden = built.model[2].weight
    n = hidden.numel()
    # the base's rms is a sample of 64*64 N(0, 0.02²): relative sd 1/sqrt(2·4096)
    tolerance = 6 / math.sqrt(2 * 64 * 64)
    assert rms(hidden) == pytest.approx(0.02 / 4, rel=tolerance + 6 / math.sqrt(2 * n))


def test_gpt_attention_scale_is_set_to_one_over_d():
    built = parametrized(gpt, "mup", width=256, base_width=64, seed=0, kwargs={"heads": 4})
    attn = built.model.blocks[0].attn
    d, d_base = 64, 16
    assert attn.attn_scale == pytest.approx(math.sqrt(d_base) / d, rel=1e-12)
    assert any("attn_scale" in note for note in built.notes)
    sp = parametrized(gpt, "sp", width=256, base_width=64, seed=0, kwargs={"heads": 4})
    assert sp.model.blocks[0].attn.attn_scale == pytest.approx(1 / math.sqrt(d), rel=1e-12)


def test_attention_it_cannot_change_is_named():
    def with_mha(width: int = 32) -> nn.Module:
        return nn.Sequential(nn.Linear(4, width), nn.MultiheadAttention(width, 4))

    built = parametrized(with_mha, "mup", width=64, base_width=32)
    assert any("MultiheadAttention" in n and "1/d" in n for n in built.notes)
    with pytest.warns(UserWarning, match="MultiheadAttention"):  # the public API says it too
        initlab.parametrize(with_mha, "mup", base_width=32, width=64)


def test_public_parametrize_returns_a_model_and_groups_that_train():
    model, groups = initlab.parametrize(mlp, "mup", base_width=32, width=128, lr=1e-2, depth=2)
    optimizer = torch.optim.Adam(groups)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([2.5e-3, 1e-2])
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    before = model.output.weight.detach().clone()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert not torch.equal(before, model.output.weight)


def test_bad_names_are_one_line():
    with pytest.raises(InitlabError, match="unknown parametrization 'mupp'"):
        parametrized(mlp, "mupp", width=128, base_width=64)
    with pytest.raises(InitlabError, match="optimizer for scaling"):
        parametrized(mlp, "mup", width=128, base_width=64, optimizer="rmsprop")


def test_functional_attention_without_a_scale_is_named():
    from initlab.scaling.attention_watch import attention_notes

    class SelfAttention(nn.Module):
        def __init__(self, scale: float | None) -> None:
            super().__init__()
            self.qkv, self.scale = nn.Linear(8, 24), scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).unflatten(-1, (3, 2, 4)).unbind(-3)
            y = nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scale)
            return y.flatten(-2)

    x = torch.randn(2, 5, 8)
    assert any("default 1/√d" in n for n in attention_notes(SelfAttention(None), x))
    assert attention_notes(SelfAttention(0.25), x) == []


def test_without_a_seed_the_global_rng_decides():
    torch.manual_seed(0)
    first, _ = initlab.parametrize(mlp, "sp", base_width=32, width=64)
    second, _ = initlab.parametrize(mlp, "sp", base_width=32, width=64)
    torch.manual_seed(0)
    again, _ = initlab.parametrize(mlp, "sp", base_width=32, width=64)
    assert not torch.equal(first.output.weight, second.output.weight)
    assert torch.equal(first.output.weight, again.output.weight)


def test_width_arg_names_the_factorys_own_width_keyword():
    """``width_arg="dim"``: the factory is called with ``dim=``, never with ``width_arg``."""

    def build(dim: int = 16, classes: int = 3) -> nn.Module:
        return nn.Sequential(nn.Linear(8, dim), nn.ReLU(), nn.Linear(dim, classes))

    model, groups = initlab.parametrize(
        build, "mup", base_width=16, width=64, lr=1e-2, width_arg="dim", classes=5
    )
    assert model[0].out_features == 64 and model[2].out_features == 5
    lrs = {n: g["lr"] for g in groups for n in g["names"]}
    assert lrs["2.weight"] == pytest.approx(1e-2 / 4) and not model[2].weight.any()
    built = parametrized(build, "sp", width=32, base_width=16, width_arg="dim")
    assert built.shapes["0.weight"].kind == "input" and built.model[0].out_features == 32
    with pytest.raises(InitlabError, match="no 'size' keyword"):
        initlab.parametrize(build, "mup", base_width=16, width=64, width_arg="size")


class Bottleneck(nn.Module):
    """width → 8 → width inside the network (a Mixer's token MLP, a low-rank adapter): the
    ``down`` weight is width-in, fixed-out like a readout, but it is not the readout."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = nn.Linear(width, 3)  # registered first, called last
        self.stem, self.down, self.up = (
            nn.Linear(5, width),
            nn.Linear(width, 8),
            nn.Linear(8, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        return self.head(h + self.up(torch.relu(self.down(h))))


def test_mup_zeroes_only_the_models_readout_not_an_interior_bottleneck():
    result = parametrized(Bottleneck, "mup", width=64, base_width=16, seed=0)
    assert result.shapes["down.weight"].kind == "output"
    weights = dict(result.model.named_parameters())
    assert weights["head.weight"].count_nonzero() == 0 and weights["head.bias"].count_nonzero() == 0
    # the bottleneck gets muP's output rule, std x 1/m_in = 1/4 of the base's, not zero
    base = dict(
        parametrized(Bottleneck, "mup", width=16, base_width=16, seed=0).model.named_parameters()
    )
    rms = lambda t: float(t.detach().square().mean().sqrt())  # noqa: E731
    assert rms(weights["down.weight"]) == pytest.approx(rms(base["down.weight"]) / 4, rel=1e-4)
    assert weights["down.bias"].count_nonzero() > 0
    assert any(
        "`down.weight`" in n and "not the model's readout (`head`)" in n for n in result.notes
    )


class UntraceableBottleneck(Bottleneck):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:  # data-dependent control flow: torch.fx cannot trace it
            return super().forward(x)
        return x


def test_without_a_call_order_mup_zeroes_every_readout_like_weight_and_says_so():
    # guessing the readout from registration order would have left the real head unzeroed
    result = parametrized(UntraceableBottleneck, "mup", width=64, base_width=16, seed=0)
    weights = dict(result.model.named_parameters())
    assert weights["head.weight"].count_nonzero() == 0
    assert weights["down.weight"].count_nonzero() == 0
    assert any("which one is the model's output layer is unknown" in n for n in result.notes)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (dict(base_width=0, width=8), "base_width must be a whole number of units >= 1, got 0"),
        (dict(base_width=None, width=8), "base_width must be a whole number"),
        (dict(base_width=4, width=0), "width must be a whole number of units >= 1, got 0"),
        (dict(base_width="4", width=8), "got '4'"),
        (dict(base_width=4, width=8, seed="a"), r"seed must be an integer in \[0, "),
    ],
)
def test_parametrize_checks_its_numbers(keywords, message):
    """base_width=0 was a ZeroDivisionError, '4' accepted, seed='a' a ValueError from
    Python's random module (API fuzz)."""
    import initlab
    from initlab.errors import InitlabError

    def factory(width=8):
        return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))

    with pytest.raises(InitlabError, match=message):
        initlab.parametrize(factory, "mup", **keywords)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (dict(progress=3), r"progress takes a function called as progress\(done, total\)"),
        (dict(model=None), "model takes mlp, gpt, module:function or a factory"),
        (dict(lr=1e308), r"lr must be a positive number \(at most 1e\+38\)"),
        (dict(steps=10**9), r"steps must be in \[1, 10,000\]"),  # ran for hours
    ],
)
def test_coord_check_checks_its_arguments_before_any_work(keywords, message):
    from initlab.errors import InitlabError
    from initlab.scaling import coord_check

    with pytest.raises(InitlabError, match=message):
        coord_check(**{"widths": (8, 16, 32), **keywords})
