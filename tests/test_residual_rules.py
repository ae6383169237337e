"""Residual structure and rules on the built-in ResNet and GPT and on untraceable models."""

import copy
import math

import pytest
import torch
from torch import nn

from initlab import initialize
from initlab.models.gpt import gpt
from initlab.models.resnet import BasicBlock, resnet
from initlab.residual import apply_residual, find_structure

ATOL = 50 * torch.finfo(torch.float32).eps * math.sqrt(64 * 8 * 8)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _skip_only(model: nn.Module) -> nn.Module:
    """The same network with every residual branch removed: relu(shortcut(x)) per block."""
    ref = copy.deepcopy(model)
    for block in ref.modules():
        if isinstance(block, BasicBlock):
            block.forward = lambda x, b=block: b.relu(b.shortcut(x))
    return ref


def _three_block_resnet(norm: bool) -> nn.Module:
    torch.manual_seed(0)
    model = resnet(depth=8, width=8, num_classes=5, norm=norm, in_channels=1)
    initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    return model


def test_zero_last_norm_zeroes_exactly_the_three_last_norm_scales():
    model = _three_block_resnet(norm=True)
    before = _weights(model)
    result = apply_residual(model, "zero_last_norm")
    after = _weights(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    expected = {f"layer{i}.0.bn2.weight" for i in (1, 2, 3)}
    assert changed == expected and set(result.actions) == expected
    assert all(float(after[n].abs().max()) == 0.0 for n in expected)
    x = torch.randn(4, 1, 16, 16)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        ref = getattr(_skip_only(model), mode)()
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref(x), atol=ATOL, rtol=0)


def test_fixup_zeroes_each_branch_last_conv_and_the_output_layer():
    model = _three_block_resnet(norm=False)
    result = apply_residual(model, "fixup")
    zero = {n for n, p in model.named_parameters() if n.endswith("weight") and not p.any()}
    assert zero == {
        "layer1.0.conv2.weight",
        "layer2.0.conv2.weight",
        "layer3.0.conv2.weight",
        "fc.weight",
    }
    # L = 3, m = 2: the first conv of each branch × 3^(-1/2)
    assert result.actions["layer2.0.conv1.weight"] == f"× {3**-0.5:.4g}"
    added = {n for n, _ in model.named_parameters() if "fixup" in n}
    assert len(added) == 3 * (2 + 2)  # a bias before each conv, a scale and a bias per branch
    assert model.layer1[0].bn2.fixup_scale.item() == 1.0


def test_fixup_keeps_a_readout_tied_to_the_token_embedding_and_says_so():
    model = gpt(vocab_size=16, width=16, depth=2, heads=2, context=8)
    model.head.weight = model.tok_emb.weight  # tied, as GPT-2
    before = model.tok_emb.weight.detach().clone()
    with pytest.warns(UserWarning, match="tied to tok_emb.weight"):
        result = apply_residual(model, "fixup")
    # never written (no arithmetic on it): exact on any CPU
    torch.testing.assert_close(model.tok_emb.weight.detach(), before, rtol=0, atol=0)
    assert model.head.weight is model.tok_emb.weight and "head.weight" not in result.actions
    assert not model.head.bias.any() and result.actions["head.bias"] == "zeroed"
    untied = gpt(vocab_size=16, width=16, depth=2, heads=2, context=8)
    apply_residual(untied, "fixup")
    assert not untied.head.weight.any() and untied.tok_emb.weight.any()


def test_fixup_scales_the_branch_layers_by_L_power():
    torch.manual_seed(1)
    model = resnet(depth=20, width=4, num_classes=3, norm=False, in_channels=1)
    plain = copy.deepcopy(model)
    apply_residual(model, "fixup")
    scale = 9 ** (-1.0 / 2)  # L = 9 branches of m = 2: L^(-1/(2m-2))
    torch.testing.assert_close(
        model.layer2[1].conv1.weight, plain.layer2[1].conv1.weight * scale, atol=1e-7, rtol=0
    )


def test_skipinit_gates_start_at_zero_learn_and_leave_the_skip_path():
    model = _three_block_resnet(norm=False)
    apply_residual(model, "skipinit")
    gates = {n: p for n, p in model.named_parameters() if n.endswith("skipinit_gate")}
    assert sorted(gates) == [f"layer{i}.0.bn2.skipinit_gate" for i in (1, 2, 3)]
    assert all(float(g.detach()) == 0.0 for g in gates.values())
    x = torch.randn(4, 1, 16, 16)
    out = model(x)
    with torch.no_grad():
        torch.testing.assert_close(out, _skip_only(model)(x), atol=ATOL, rtol=0)
    out.square().mean().backward()
    assert any(float(g.grad.abs()) > 0 for g in gates.values())  # the gates can move
    copied = copy.deepcopy(model)
    copied.layer1[0].bn2.skipinit_gate.data.fill_(1.0)
    assert not torch.allclose(copied(x), out, atol=1e-4)  # the hook reads the gate


def test_depth_scaled_is_gpt2s_projection_rule():
    torch.manual_seed(2)
    model = gpt(vocab_size=16, width=32, depth=3, heads=4, context=8)
    plain = copy.deepcopy(model)
    result = apply_residual(model, "depth_scaled")
    assert result.structure.depth == 6  # two branches per block
    c = 6**-0.5  # GPT-2: 0.02 / sqrt(2 · n_layer)
    for i in range(3):
        for proj in ("attn.proj", "mlp.proj"):
            a = model.get_submodule(f"blocks.{i}.{proj}").weight
            b = plain.get_submodule(f"blocks.{i}.{proj}").weight
            torch.testing.assert_close(a, b * c, atol=1e-7, rtol=0)
    torch.testing.assert_close(model.blocks[0].attn.q.weight, plain.blocks[0].attn.q.weight)


def test_gpt_structure_has_prenorm_branches_without_a_last_norm():
    structure = find_structure(gpt(depth=2))
    assert structure.method == "fx" and structure.depth == 4
    attn, mlp = structure.branches[:2]
    assert attn.layers[-1] == "blocks.0.attn.proj" and attn.last_norm is None
    assert mlp.layers == ["blocks.0.mlp.fc", "blocks.0.mlp.proj"]
    assert structure.output_layer == "head"


class DataDependent(nn.Module):
    """A residual net fx cannot trace: the forward branches on the data."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.layer = nn.Sequential(BasicBlock(4, 4, 1, True), BasicBlock(4, 4, 1, True))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.stem(x)
        if h.mean() > 0:  # data-dependent control flow
            h = -h
        return self.fc(self.layer(h).mean((2, 3)))


def test_untraceable_model_gets_a_fallback_structure_with_a_note():
    model = DataDependent()
    structure = find_structure(model)
    assert structure.method == "fallback"
    assert "torch.fx could not trace" in structure.notes[0]
    assert [b.last_norm for b in structure.branches] == ["layer.0.bn2", "layer.1.bn2"]
    with pytest.warns(UserWarning, match="branches guessed from module names"):
        result = apply_residual(model, "zero_last_norm")  # a guess is never applied silently
    assert set(result.actions) == {"layer.0.bn2.weight", "layer.1.bn2.weight"}


def test_untraceable_model_without_blocks_changes_nothing_and_says_so():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x) + self.b(x) if x.sum() > 0 else x

    model = Odd()
    before = _weights(model)
    result = apply_residual(model, "fixup")
    assert result.actions == {} and result.structure.method == "fallback"
    assert any("no residual branch" in n for n in result.structure.notes)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_a_branch_ending_in_a_function_is_refused_by_skipinit():
    class FunctionEnd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return x + torch.tanh(self.fc2(torch.relu(self.fc1(x))))

    from initlab.errors import InitlabError

    with pytest.raises(InitlabError, match="end in a function call"):
        apply_residual(FunctionEnd(), "skipinit")
    assert apply_residual(FunctionEnd(), "zero_last_layer").structure.depth == 1


def test_branches_are_found_through_linear_subclasses():
    # fx's default tracer traces through nn.Linear subclasses defined outside torch.nn
    # (muP's learning-rate carriers are one): their layers must still count
    from torch import nn

    from initlab.residual import find_structure

    class Scaled(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 0.5

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = Scaled(8, 8), Scaled(8, 8)

        def forward(self, x):
            return x + self.fc2(self.fc1(x).relu())

    structure = find_structure(nn.Sequential(Block(), Block()))
    assert structure.method == "fx"
    assert [b.layers for b in structure.branches] == [["0.fc1", "0.fc2"], ["1.fc1", "1.fc2"]]


def test_a_rule_on_a_model_without_branches_says_it_changes_nothing():
    from initlab.notes import InitlabNote

    plain = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.warns(InitlabNote, match="'fixup' changes nothing in Sequential: no residual"):
        initialize(plain, "he_normal", residual_init="fixup")


class SwiGLU(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate, self.up, self.down = (nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim),
                                         nn.Linear(2 * dim, dim))  # fmt: skip

    def forward(self, x):
        return x + self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))


def test_parallel_layers_count_once_in_fixups_depth():
    # LLaMA's MLP: gate and up side by side, then down, is two layers deep (m = 2), not three
    model = nn.Sequential(nn.Linear(4, 8), *[SwiGLU(8) for _ in range(4)], nn.Linear(8, 2))
    [branch, *_] = find_structure(model).branches
    assert branch.chain == 2 and [branch.depth_of(n) for n in branch.layers] == [1, 1, 2]
    result = apply_residual(model, "fixup")
    assert result.actions["1.gate.weight"] == result.actions["1.up.weight"] == f"× {4**-0.5:.4g}"
    assert result.actions["1.down.weight"] == "zeroed" and not model[1].down.weight.any()


class _MHABlock(nn.Module):
    """A pre-norm block adding ``self.attn(h, h, h)[0]``: the branch ends in the first item
    of nn.MultiheadAttention's tuple, which the rules refused as 'a function call'."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        h = self.n1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(torch.relu(self.fc1(self.n2(x))))


@pytest.mark.parametrize("rule", ["skipinit", "fixup"])
def test_a_branch_ending_in_multihead_attentions_first_output_takes_the_rules(rule):
    torch.manual_seed(0)
    model = nn.Sequential(_MHABlock(), _MHABlock())
    x = torch.randn(2, 5, 16)
    record = initialize(model, "he_normal", residual_init=rule)
    assert f"0.attn.{'skipinit_gate' if rule == 'skipinit' else 'fixup_scale'}" in dict(
        model.named_parameters()
    )
    assert record.residual_result.structure.depth == 4
    if rule == "skipinit":  # every branch gated to 0: each block passes x through exactly
        assert torch.equal(model(x), x)


def test_fixup_counts_multihead_attentions_input_projection_as_the_layer_before_out_proj():
    """nn.MultiheadAttention reads in_proj_weight itself, so the branch showed out_proj
    alone and fixup took it for a one-layer branch (out_proj × L^-1/2, q/k/v untouched). Its
    q, k, v are the first layer (m = 2): v scales by L^-1/2 and out_proj is zeroed; q and k
    stay (as in T-Fixup: both × c scaled the attention logits by c², 1/L here)."""
    torch.manual_seed(0)
    model = nn.Sequential(_MHABlock(), _MHABlock())
    before = copy.deepcopy(model)
    result = apply_residual(model, "fixup")
    structure = result.structure
    assert structure.depth == 4  # L: two blocks, two branches each
    [attention, *_] = structure.branches
    assert attention.layers == ["0.attn.out_proj"] and attention.attention_inputs == ["0.attn"]
    assert attention.chain == 2 and attention.depth_of("0.attn.out_proj") == 2
    assert structure.role_of("0.attn") == "branch 1, layer 1 of 2 (q, k, v)"
    for k in range(2):
        attn, old = model[k].attn, before[k].attn
        assert torch.equal(attn.in_proj_weight[:32], old.in_proj_weight[:32])  # q, k rows
        assert torch.equal(attn.in_proj_weight[32:], old.in_proj_weight[32:] * 0.5)  # × 4^-½
        assert not attn.out_proj.weight.any() and not attn.out_proj.bias.any()
        assert result.actions[f"{k}.attn.in_proj_weight"] == "values' rows × 0.5"
        assert result.factors[f"{k}.attn.in_proj_weight"] == pytest.approx((2.25 / 3) ** 0.5)
        assert torch.equal(model[k].fc1.weight, before[k].fc1.weight * 4**-0.5)
        assert not model[k].fc2.weight.any()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(model[:-1](x), x)  # out_proj and fc2 zero: identity blocks
    separate = nn.MultiheadAttention(16, 4, kdim=8, vdim=8, batch_first=True)
    block = _MHABlock()
    block.attn = separate  # q, k, v as three weights (keys and values of another width)
    old = [w.clone() for w in (separate.q_proj_weight, separate.v_proj_weight)]
    result = apply_residual(nn.Sequential(block, _MHABlock()), "fixup")  # fx: never run
    assert result.actions["0.attn.v_proj_weight"] == f"× {4**-0.5:.4g}"
    assert "0.attn.k_proj_weight" not in result.actions
    assert torch.equal(separate.q_proj_weight, old[0])
    assert torch.equal(separate.v_proj_weight, old[1] * 0.5)


def test_the_init_record_describes_the_weights_after_the_residual_rule():
    """The record's std was measured before the rule, so a depth_scaled out_proj showed the
    scheme's 0.02 while its weights had 0.01; the rule now has a column and both stds follow."""
    torch.manual_seed(0)
    model = nn.Sequential(_MHABlock(), _MHABlock(), nn.Linear(16, 3))
    record = initialize(model, "normal(std=0.02)", residual_init="depth_scaled")
    rows = record.to_frame().set_index("layer")
    scaled = rows.loc["0.fc2"]
    assert scaled["residual"] == "× 0.5 (depth_scaled)"
    assert scaled["expected_std"] == 0.01  # 0.02 × 0.5: halving a float is exact
    assert scaled["std"] == pytest.approx(model[0].fc2.weight.std().item(), rel=1e-6)
    # 512 draws: the sample std is within 4 standard errors (std / sqrt(2 n)) of 0.01
    assert abs(scaled["std"] - 0.01) < 4 * 0.01 / math.sqrt(2 * 512)
    assert rows.loc["0.fc1", "residual"] == "" and rows.loc["0.fc1", "expected_std"] == 0.02
    fixup = initialize(model, "he_normal", residual_init="fixup").to_frame().set_index("layer")
    assert fixup.loc["0.attn", "residual"] == "values' rows × 0.5 (fixup)"  # the packed q, k, v
    # q, k, v of one std σ, v × 0.5: the whole weight's std is σ sqrt((1 + 1 + 0.25) / 3)
    expected = fixup.loc["0.attn", "expected_std"]
    assert fixup.loc["0.attn", "std"] == pytest.approx(expected, rel=4 / math.sqrt(2 * 768))
    assert fixup.loc["0.attn.out_proj", "std"] == fixup.loc["2", "expected_std"] == 0.0


class BareWeightBlock(nn.Module):
    """``x + gamma * F.linear(silu(fc1(norm(x))), w2)``: the branch's last weight is a bare
    parameter, so the rules' last module is fc1, in front of the activation."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.norm, self.fc1 = nn.LayerNorm(d), nn.Linear(d, 2 * d)
        self.w2 = nn.Parameter(torch.randn(d, 2 * d) / (2 * d) ** 0.5)
        self.gamma = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * nn.functional.linear(
            nn.functional.silu(self.fc1(self.norm(x))), self.w2
        )


@pytest.mark.parametrize("rule", ["depth_scaled", "zero_last_layer"])
def test_a_branch_ending_in_a_bare_weight_is_named(rule):
    model = nn.Sequential(nn.Linear(4, 8), BareWeightBlock(), BareWeightBlock(), nn.Linear(8, 2))
    with pytest.warns(UserWarning, match=r"2 of 2 branches end in a function call, and 1 holds "
                      r"the bare weight w2 \(1\.fc1 is the last module the rule sets"):  # fmt: skip
        apply_residual(model, rule, example=torch.randn(3, 4))
