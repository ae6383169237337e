"""Residual rules on models whose branches share things: a block called twice, a residual
around residual blocks, two branches ending in one module, attention scores, and branches
that end in a norm. Each case once gave a wrong factor or a silent no-op."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import initialize, plan
from initlab.models.gpt import gpt
from initlab.models.resnet import resnet
from initlab.residual import apply_residual, find_structure


class Block(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(F.relu(self.fc1(x)))


class Shared(nn.Module):
    """One block applied twice: its weights are shared across depth."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.inp, self.block, self.head = nn.Linear(8, width), Block(width), nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.block(self.block(self.inp(x))))


class Nested(nn.Module):
    """A long skip around two residual blocks: h + b2(b1(h))."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.inp, self.head = nn.Linear(8, width), nn.Linear(width, 3)
        self.b1, self.b2 = Block(width), Block(width)

    def forward(self, x):
        h = self.inp(x)
        return self.head(h + self.b2(self.b1(h)))


class OneDropPath(nn.Module):
    """An older timm block: the attention-like and MLP branches pass one ``drop_path``."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.a1, self.a2 = nn.Linear(width, width), nn.Linear(width, width)
        self.m1, self.m2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.drop_path = nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.a2(F.gelu(self.a1(self.n1(x)))))
        return x + self.drop_path(self.m2(F.gelu(self.m1(self.n2(x)))))


def _ratio(after: nn.Module, before: nn.Module, name: str) -> float:
    a, b = after.get_submodule(name).weight, before.get_submodule(name).weight
    return float(a.norm() / b.norm())


@pytest.mark.parametrize(("rule", "layer"), [("depth_scaled", "fc2"), ("fixup", "fc1")])
def test_a_block_called_twice_is_scaled_once_by_the_factor_of_L(rule, layer):
    """L = 2 (two additions), so the factor is 2^-1/2; the rule ran once per branch and
    multiplied the one shared tensor twice (0.5), while the plan printed 0.7071."""
    torch.manual_seed(0)
    model = Shared()
    before = copy.deepcopy(model)
    result = apply_residual(model, rule)
    assert result.structure.depth == 2
    # one tensor multiplied by a float: the norms' ratio is the factor up to rounding
    assert _ratio(model.block, before.block, layer) == pytest.approx(2**-0.5, rel=1e-5)
    assert result.actions[f"block.{layer}.weight"] == "× 0.7071"


def test_a_residual_around_residual_blocks_keeps_only_its_own_layers():
    """The outer addition's branch held both blocks' layers: depth_scaled scaled b2.fc2 by
    1/√3 twice, and fixup and skipinit refused the whole model (that branch ends in an
    addition, not a module). It has no layer of its own, so it is not a branch: L = 2."""
    torch.manual_seed(0)
    structure = find_structure(Nested())
    assert [b.layers for b in structure.branches] == [["b1.fc1", "b1.fc2"], ["b2.fc1", "b2.fc2"]]
    assert [b.index for b in structure.branches] == [0, 1]
    assert any("made only of residual blocks" in n for n in structure.notes)
    for rule in ("depth_scaled", "fixup", "skipinit"):
        model = Nested()
        before = copy.deepcopy(model)
        apply_residual(model, rule)  # no refusal
        if rule == "depth_scaled":
            for block in ("b1", "b2"):
                got = _ratio(model, before, f"{block}.fc2")
                assert got == pytest.approx(2**-0.5, rel=1e-5)


def test_branches_ending_in_one_module_get_a_gate_each():
    """One drop_path module for both branches gave them one SkipInit gate (and one Fixup
    scale): De & Smith have one scalar per branch."""
    model = OneDropPath()
    result = apply_residual(model, "skipinit")
    gates = [n for n, _ in model.named_parameters() if n.endswith("skipinit_gate")]
    assert gates == ["a2.skipinit_gate", "m2.skipinit_gate"]
    assert any("all end in drop_path" in n for n in result.structure.notes)
    x = torch.randn(4, 16)
    torch.testing.assert_close(model(x), x)  # both branches gated to zero
    with torch.no_grad():
        model.a2.skipinit_gate.fill_(1.0)  # one branch opened: the other stays shut
    alone = x + model.a2(F.gelu(model.a1(model.n1(x))))
    torch.testing.assert_close(model(x), alone)


def test_fixup_leaves_the_attention_query_and_key_projections_as_initialized():
    """Fixup scaled q and k by L^-1/2 each, so the logits started 1/L smaller (1/24 for a
    12-layer GPT); T-Fixup scales only the value path."""
    torch.manual_seed(0)
    model = gpt(depth=3, width=32, heads=4, vocab_size=16, context=8)
    before = copy.deepcopy(model)
    result = apply_residual(model, "fixup")
    attention = result.structure.branches[0]
    assert attention.scores == ["blocks.0.attn.q", "blocks.0.attn.k"]
    for name in ("q", "k"):
        assert torch.equal(model.blocks[0].attn.get_submodule(name).weight,
                           before.blocks[0].attn.get_submodule(name).weight)  # fmt: skip
    assert _ratio(model, before, "blocks.0.attn.v") == pytest.approx(6**-0.5, rel=1e-5)
    assert _ratio(model, before, "blocks.0.mlp.fc") == pytest.approx(6**-0.5, rel=1e-5)


@pytest.mark.parametrize("rule", ["depth_scaled", "fixup"])
def test_a_rule_a_norm_undoes_says_so(rule):
    """A ResNet's conv2 → bn2: in training the norm rescales the branch, so depth_scaled
    changed nothing the next layer saw (logits within 2e-5 of rule none) without a word."""
    with pytest.warns(UserWarning, match=r"all 3 branches end in a norm \(layer1.0.bn2, ...\)"):
        initialize(resnet(depth=8, width=4), "he_normal", residual_init=rule)


def test_the_plan_shows_the_factor_applied_once():
    text = str(plan(Shared(), "he_normal", residual_init="depth_scaled"))
    assert "block.fc2.weight  he_normal, then × 0.7071 (depth_scaled)" in text


class AttentionDropPath(nn.Module):
    """As :class:`OneDropPath`, the attention an ``nn.MultiheadAttention``."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 4, batch_first=True)
        self.m1, self.m2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.drop_path = nn.Identity()

    def forward(self, x):
        h = self.n1(x)
        x = x + self.drop_path(self.attn(h, h, h)[0])
        return x + self.drop_path(self.m2(F.gelu(self.m1(self.n2(x)))))


def test_an_attention_branch_gets_its_gate_on_the_attention_not_its_out_proj():
    """The gate went on attn.out_proj, which nn.MultiheadAttention reads without calling:
    its hook never fired and the attention branch stayed open."""
    model = AttentionDropPath()
    apply_residual(model, "skipinit")
    gates = [n for n, _ in model.named_parameters() if n.endswith("skipinit_gate")]
    assert gates == ["attn.skipinit_gate", "m2.skipinit_gate"]
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(model(x), x)


class AroundTwice(nn.Module):
    """A long skip around one block called twice: h + blk(blk(h))."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.inp, self.blk, self.head = nn.Linear(8, width), Block(width), nn.Linear(width, 3)

    def forward(self, x):
        h = self.inp(x)
        return self.head(h + self.blk(self.blk(h)))


def test_a_residual_around_a_block_called_twice_is_unnested_too():
    """Its layers equal the inner branches' (not a strict superset): L was 3 and fixup and
    skipinit refused the model; nesting is read from the graph, not from layer names."""
    structure = find_structure(AroundTwice())
    assert [b.layers for b in structure.branches] == [["blk.fc1", "blk.fc2"]] * 2
    for rule in ("fixup", "skipinit"):
        apply_residual(AroundTwice(), rule)  # no refusal


class FusedAttention(nn.Module):
    """nanoGPT's attention: one c_attn for q, k and v, split."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.ln, self.c_attn, self.c_proj = (
            nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        )  # fmt: skip

    def forward(self, x):
        q, k, v = self.c_attn(self.ln(x)).split(x.shape[-1], dim=2)
        return x + self.c_proj(F.scaled_dot_product_attention(q, k, v))


def test_fixup_says_it_leaves_a_fused_qkv_projection_whole():
    """A fused c_attn reaches the scores and the values: it was left unscaled without a
    word, while the docs said fixup scales the values as T-Fixup does."""
    model = nn.Sequential(FusedAttention(), FusedAttention())
    before = copy.deepcopy(model)
    result = apply_residual(model, "fixup")
    assert [b.fused for b in result.structure.branches] == [["0.c_attn"], ["1.c_attn"]]
    assert torch.equal(model[0].c_attn.weight, before[0].c_attn.weight)
    assert sum("(a fused projection)" in n for n in result.structure.notes) == 1
    separate = find_structure(gpt(depth=1, width=16, heads=2, vocab_size=8, context=4))
    assert separate.branches[0].fused == []  # q, k and v are three layers there
