"""The attention recorder and ``saturated_attention``: weights recomputed exactly as torch
computes them, every attention form seen (SDPA, nn.MultiheadAttention, a hand-written
softmax), the forward pass unchanged, and the finding on transformers initialized too large."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.probe import diagnose
from initlab.probe.attention import AttentionRecorder, _sdpa_logits
from initlab.probe.hooks import collect

GEN = torch.Generator().manual_seed(0)
TOL = 1e-5  # float32 products of length 16 and sums of 8 probabilities


@pytest.mark.parametrize("form", ["plain", "causal", "bool_mask", "float_mask", "scale"])
def test_recomputed_weights_give_torchs_own_attention(form):
    q, k, v = (torch.randn(2, 3, 8, 16, generator=GEN) for _ in range(3))
    kwargs = {
        "plain": {},
        "causal": {"is_causal": True},
        "bool_mask": {"attn_mask": torch.rand(8, 8, generator=GEN) > 0.3},
        "float_mask": {"attn_mask": torch.randn(8, 8, generator=GEN)},
        "scale": {"scale": 0.5},
    }[form]
    if form == "bool_mask":
        kwargs["attn_mask"].fill_diagonal_(True)  # every query sees a key
    expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    weights = torch.softmax(_sdpa_logits(q, k, v, **kwargs), -1)
    assert torch.allclose(weights @ v, expected, atol=TOL)


class HandAttention(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(-2, -1) / math.sqrt(x.shape[-1])
        return x + torch.softmax(scores, dim=-1) @ self.v(x)


class MHABlock(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4, dropout=0.5, batch_first=True)

    def forward(self, x):
        return x + self.attn(x, x, x, need_weights=False)[0]


def test_each_form_is_recorded_under_its_module_and_mha_matches_its_own_weights():
    x = torch.randn(4, 8, 16, generator=GEN)
    model = nn.Sequential(HandAttention(), MHABlock(), nn.Linear(16, 3)).eval()
    with AttentionRecorder(model) as recorder:
        model(x)
    assert [r.module for r in recorder.records] == ["0", "1.attn"]
    h = model[0](x)  # what the MHA block sees
    _, weights = model[1].attn(h, h, h, need_weights=True, average_attn_weights=False)
    top = weights.amax(-1).mean().item()
    assert recorder.records[1].top_weight == pytest.approx(top, abs=TOL)
    assert all(r.keys == 8 for r in recorder.records)


def test_the_forward_pass_and_its_dropout_draws_are_unchanged():
    # the MHA is run once more for its weights, with dropout off: the random stream, and so
    # every number of the diagnosis, is the one without the recorder (same ops, same draws)
    torch.manual_seed(0)
    model = nn.Sequential(MHABlock(), nn.Dropout(0.5), nn.Linear(16, 3))  # draws after it
    x, y = torch.randn(32, 8, 16, generator=GEN), torch.randint(0, 3, (32, 8), generator=GEN)
    plain = collect(model, x, y, seed=3)
    watched = collect(model, x, y, seed=3, watch=AttentionRecorder(model))
    for a, b in zip(plain, watched, strict=True):
        for name in ("pre", "post", "pre_grad"):
            one, other = getattr(a, name), getattr(b, name)
            assert (one is None and other is None) or torch.equal(one, other), (a.name, name)


def _gpt_like(init: str) -> nn.Module:
    from initlab.models.gpt import gpt

    torch.manual_seed(0)
    model = gpt(depth=2)
    initlab.initialize(model, init)
    return model


def test_a_transformer_initialized_with_unit_normal_weights_starts_saturated():
    tokens = torch.randint(0, 64, (8, 32), generator=GEN)
    found = diagnose(_gpt_like("normal(std=1.0)"), tokens, tokens)
    attention = [f for f in found.findings if f.name == "saturated_attention"]
    assert attention and attention[0].values["top_weight"] > 0.9
    assert "xavier_uniform" in attention[0].suggestion
    healthy = diagnose(_gpt_like("normal(std=0.02)"), tokens, tokens)
    assert "saturated_attention" not in healthy.names


def test_branches_whose_every_layer_is_tiny_start_at_a_saddle():
    # std 0.001 everywhere (gain 0.008 at width 64): was "healthy"; a thirtieth of LeCun scale
    # in every layer of every branch is the small-init saddle, not a switched-off branch
    tokens = torch.randint(0, 64, (8, 32), generator=GEN)
    found = {f.name: f for f in diagnose(_gpt_like("normal(std=0.001)"), tokens, tokens).findings}
    assert "dormant_branches" in found
    assert (
        found["dormant_branches"].values["dormant"] == found["dormant_branches"].values["branches"]
    )
    assert "zero_last_layer" in found["dormant_branches"].suggestion
    # a zeroed last layer switches branches off with full-scale inner layers: no saddle
    torch.manual_seed(0)
    from initlab.models.gpt import gpt

    model = gpt(depth=2)
    initlab.initialize(model, "normal(std=0.02)", residual_init="zero_last_layer")
    assert "dormant_branches" not in diagnose(model, tokens, tokens).names


def test_fully_saturated_rows_count_and_script_modules_neither_crash_nor_keep_hooks():
    # std 30 q/k: every other weight of a row underflows to exactly 0; reading "allowed keys"
    # from the weights dropped every row and called the worst attention healthy
    torch.manual_seed(0)
    block = HandAttention()
    nn.init.normal_(block.q.weight, std=30.0)
    nn.init.normal_(block.k.weight, std=30.0)
    x = torch.randn(4, 8, 16, generator=GEN)
    with AttentionRecorder(block) as recorder:
        block(x)
    assert recorder.records and recorder.records[0].top_weight > 0.99
    # a TorchScript submodule takes no hooks (register_forward_pre_hook raised, and the
    # hooks already added stayed on the user's model)
    model = nn.Sequential(torch.jit.script(nn.Linear(16, 16)), HandAttention(), nn.Linear(16, 3))
    y = torch.randint(0, 3, (4, 8), generator=GEN)
    diagnose(model, x, y)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model[1:].modules())


def test_a_segmentation_heads_softmax_is_not_attention():
    # a channels-last softmax over classes [B, H, W, C] was counted as attention
    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(16, 5)

        def forward(self, x):  # x: [B, H, W, 16]
            return torch.softmax(self.head(x) * 50, dim=-1)

    model = Segmenter()
    with AttentionRecorder(model) as recorder:
        model(torch.randn(2, 6, 7, 16, generator=GEN))
    assert recorder.records == []


class CausalSDPA(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        q, k = self.q(x).unsqueeze(1), self.k(x).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, x.unsqueeze(1), is_causal=True)
        return x + out.squeeze(1)


def test_uniform_attention_under_a_causal_mask_is_the_mean_of_one_over_the_visible_keys():
    """The finding compared a causal model's top weight with 1/T (0.03 at T = 32), where
    uniform attention over each query's visible keys (two or more) gives (H_T - 1)/(T - 1),
    0.099."""
    t = 32
    model = nn.Sequential(CausalSDPA(), nn.Linear(16, 3))
    for layer in (model[0].q, model[0].k):  # zero logits: exactly uniform weights
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    with AttentionRecorder(model) as recorder:
        model(torch.randn(2, t, 16, generator=GEN))
    (record,) = recorder.records
    expected = sum(1 / n for n in range(2, t + 1)) / (t - 1)  # queries with >= 2 keys
    assert record.uniform == pytest.approx(expected, abs=TOL)
    assert record.top_weight == pytest.approx(expected, abs=TOL)
    with torch.no_grad():  # now saturate it: the message states the causal baseline
        model[0].q.weight.copy_(torch.eye(16) * 30)
        model[0].k.weight.copy_(torch.eye(16) * 30)
    found = diagnose(model, torch.randn(8, t, 16, generator=GEN)).finding("saturated_attention")
    assert found is not None and f"may see: {expected:.2f})" in found.message
