"""Base-shape inference: every parameter of the built-in MLP, a conv net, the ResNet and the
GPT gets the kind docs/scaling.md §1 gives it; factories that cannot scale are refused."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.models import scalable
from initlab.models.gpt import gpt
from initlab.models.resnet import resnet
from initlab.models.scalable import mlp
from initlab.scaling.shapes import infer_shapes


def kinds(factory, **kwargs) -> dict[str, str]:
    shapes = infer_shapes(factory, width=128, base_width=32, kwargs=kwargs)
    return {name: s.kind for name, s in shapes.items()}


def expect(found: dict[str, str], rules: list[tuple[str, str]]) -> None:
    """Every parameter matches exactly the first rule (regex, kind) that fits its name."""
    for name, kind in found.items():
        wanted = next((k for pattern, k in rules if re.fullmatch(pattern, name)), None)
        assert wanted is not None, f"no rule for {name}"
        assert kind == wanted, f"{name}: {kind}, expected {wanted}"


def test_mlp_kinds():
    assert kinds(mlp, depth=3) == {
        "blocks.0.linear.weight": "input",
        "blocks.0.linear.bias": "input",
        "blocks.1.linear.weight": "hidden",
        "blocks.1.linear.bias": "input",
        "blocks.2.linear.weight": "hidden",
        "blocks.2.linear.bias": "input",
        "output.weight": "output",
        "output.bias": "fixed",
    }


def attention(width: int = 32) -> nn.Module:
    return nn.MultiheadAttention(width, 4, bias=True)


def test_every_bias_of_a_width_sized_output_is_input_like():
    """MultiheadAttention's in_proj_bias was 'vector' while every other bias is 'input'."""
    found = kinds(attention)
    assert found["in_proj_bias"] == found["out_proj.bias"] == "input"
    assert found["in_proj_weight"] == found["out_proj.weight"] == "hidden"


def small_cnn(width: int = 16) -> nn.Module:
    """A conv factory with a width knob: conv(3→w) → conv(w→2w) → BN → pool → Linear(2w→10)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )


def test_conv_kinds():
    assert kinds(small_cnn) == {
        "0.weight": "input",
        "0.bias": "input",
        "2.weight": "hidden",
        "3.weight": "vector",
        "3.bias": "vector",
        "7.weight": "output",
        "7.bias": "fixed",
    }


def test_builtin_cnn_kinds():
    """initlab's own SmallCNN (models.scalable.cnn: channels w, 2w, dense 4w)."""
    assert kinds(scalable.cnn) == {
        "features.0.weight": "input",
        "features.0.bias": "input",
        "features.3.weight": "hidden",
        "features.3.bias": "input",
        "classifier.1.weight": "hidden",
        "classifier.1.bias": "input",
        "classifier.3.weight": "output",
        "classifier.3.bias": "fixed",
    }
    with_norm = kinds(scalable.cnn, batch_norm=True)
    assert with_norm["features.1.weight"] == with_norm["features.1.bias"] == "vector"


def test_resnet_kinds():
    expect(
        kinds(resnet, depth=8, norm=True),
        [
            (r"conv1\.weight", "input"),
            (r"(bn1|.*\.bn\d|.*shortcut\.1)\.(weight|bias)", "vector"),
            (r".*\.(conv\d|shortcut\.0)\.weight", "hidden"),
            (r"(fc|linear|head|classifier)\.weight", "output"),
            (r"(fc|linear|head|classifier)\.bias", "fixed"),
        ],
    )


def test_gpt_kinds():
    found = kinds(gpt, depth=2)
    expect(
        found,
        [
            (r"(tok|pos)_emb\.weight", "input"),
            (r"(blocks\.\d\.ln\d|ln_f)\.(weight|bias)", "vector"),
            (r"blocks\.\d\.(attn\.(q|k|v|proj)|mlp\.(fc|proj))\.weight", "hidden"),
            (r"blocks\.\d\.(attn\.(q|k|v|proj)|mlp\.(fc|proj))\.bias", "input"),
            (r"head\.weight", "output"),
            (r"head\.bias", "fixed"),
        ],
    )
    assert sum(k == "hidden" for k in found.values()) == 2 * 6  # q, k, v, proj, fc, proj


def test_fans_and_multipliers_come_from_the_module():
    def embed_then_up(width: int = 8) -> nn.Module:
        return nn.Sequential(nn.Embedding(50, width), nn.ConvTranspose1d(width, 4, 3))

    shapes = infer_shapes(embed_then_up, width=32, base_width=8)
    emb, up = shapes["0.weight"], shapes["1.weight"]
    assert (emb.kind, emb.fan_in, emb.fan_out, emb.m_out) == ("input", 50, 32, 4.0)
    # ConvTranspose stores [in, out, k]: fan_in = 32 * 3, which grows 4x
    assert (up.kind, up.fan_in, up.fan_out, up.m_in) == ("output", 96, 12, 4.0)


def test_base_width_equal_to_width_still_classifies():
    shapes = infer_shapes(mlp, width=64, base_width=64)
    assert shapes["blocks.1.linear.weight"].kind == "hidden"
    assert shapes["blocks.1.linear.weight"].m_in == 1.0


def test_refuses_a_factory_whose_shapes_ignore_width():
    def fixed(width: int = 64) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    with pytest.raises(InitlabError, match="no parameter's shape changes") as info:
        infer_shapes(fixed, width=128, base_width=64)
    assert "\n" not in str(info.value)


def test_refuses_a_factory_without_width():
    def no_width(size: int = 64) -> nn.Module:
        return nn.Linear(size, 2)

    with pytest.raises(InitlabError, match="no 'width' keyword"):
        infer_shapes(no_width, width=128, base_width=64)


class TokenModel(nn.Module):
    """A ViT's width-sized tokens as bare parameters: ``cls`` [1, 1, w], ``pos`` [1, T, w]
    (their fan dimensions 0 and 1 are finite), and a raw ``[2, w, w]`` stack."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, 5, width) * 0.02)
        self.pair = nn.Parameter(torch.randn(2, width, width))
        self.head = nn.Linear(width, 3)


def test_width_sized_tokens_are_vector_like_not_fixed():
    """mup's rule: one infinite dimension is vector-like, treated as an input weight (like an
    embedding whose vocabulary is the finite dimensions); never ``fixed``."""
    shapes = infer_shapes(TokenModel, width=64, base_width=16)
    cls, pos, pair = shapes["cls"], shapes["pos"], shapes["pair"]
    assert (cls.kind, cls.fan_in, cls.fan_out, cls.m_in, cls.m_out) == ("input", 1, 64, 1, 4)
    assert (pos.kind, pos.fan_in, pos.fan_out, pos.m_in, pos.m_out) == ("input", 5, 64, 1, 4)
    # two infinite dimensions (neither of them dimension 0): matrix-like
    assert (pair.kind, pair.fan_out, pair.m_in, pair.m_out) == ("hidden", 64, 4, 4)
    assert shapes["head.bias"].kind == "fixed"  # still: nothing of width size


def test_tokens_keep_their_init_and_learning_rate_under_mup():
    from initlab.scaling.parametrize import parametrized

    built = parametrized(TokenModel, "mup", width=64, base_width=16, optimizer="sgd", lr=0.1)
    lrs = {n: g["lr"] for g in built.param_groups() for n in g["names"]}
    assert lrs["cls"] == pytest.approx(0.4) and lrs["pos"] == pytest.approx(0.4)  # η·m_out
    assert built.init_factor["pos"] == 1.0
