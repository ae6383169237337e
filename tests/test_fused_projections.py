"""A fused projection (nanoGPT's ``c_attn = nn.Linear(d, 3d)`` cut into q, k, v) is drawn
per row span, each ``d × d`` map with its own fans, as ``MultiheadAttention``'s in_proj is.

One draw over the whole ``[3d, d]`` weight is wrong for three maps: a semi-orthogonal
``[3d, d]`` matrix leaves each ``d × d`` block with mean squared singular value 1/3, and
Glorot's fan_out = 3d gives Var = 2/(d + 3d), half of each map's 2/(d + d).
"""

import functools
import json
import math
import warnings

import pytest
import torch
from torch import nn

import initlab
import nanogpt
from initlab.compound_layers import spanned
from initlab.doctor import recommend
from initlab.doctor.snippet import make_snippet
from initlab.errors import InitlabError
from initlab.probe.split import column_spans
from initlab.probe.trace import trace

D, HEADS = 64, 4
THIRDS = ((0, D), (D, 2 * D), (2 * D, 3 * D))


Block = functools.partial(nanogpt.Block, D, HEADS)


class Gated(nn.Module):
    """A fused projection cut in two gates, ``tanh(a) · sigmoid(b)``: its rule is Glorot."""

    def __init__(self, act: str = "tanh") -> None:
        super().__init__()
        self.act = act
        self.fused, self.out = nn.Linear(D, 2 * D), nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.fused(x).chunk(2, dim=-1)
        first = torch.tanh(a) if self.act == "tanh" else torch.relu(a)
        return self.out(first * torch.sigmoid(b))


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("how", ["split", "chunk", "timm"])
def test_the_doctor_plans_a_fused_qkv_as_three_spans_drawn_orthogonal(how):
    """Each ``d × d`` block of ``c_attn.weight`` gets all singular values = 1 (the plan's
    gain); float32 QR and SVD: 1e-5 relative. The whole-tensor draw would not: its blocks'
    squared singular values sum to d over the three blocks, 1/3 each on average."""
    torch.manual_seed(0)
    model, x = Block(how), _x(2, 6, D)
    plan = recommend(model, x)
    assert plan["attn.c_attn"] == spanned("orthogonal", THIRDS)
    assert plan.spans == {"attn.c_attn": THIRDS} and dict(plan) == plan.specs()
    entry = next(e for e in plan.entries if e.layer == "attn.c_attn")
    assert "q, k, v: 3 spans" in entry.reason and "each its own fans" in entry.reason
    record = initlab.initialize(model, plan, generator=_seeded())
    for block in model.attn.c_attn.weight.detach().split(D):
        torch.testing.assert_close(torch.linalg.svdvals(block), torch.ones(D), rtol=1e-5, atol=1e-5)
    row = next(r for r in record.rows if r["layer"] == "attn.c_attn")
    assert (row["fan_in"], row["fan_out"]) == (D, D) and row["scheme"].startswith("orthogonal")


def test_a_scheme_without_a_plan_keeps_whole_tensor_fans():
    """``initialize(model, scheme)`` runs no forward pass: one draw, fan_out = 3d, and a
    semi-orthogonal ``[3d, d]`` matrix whose blocks are not orthogonal."""
    model = Block()
    record = initlab.initialize(model, "orthogonal", generator=_seeded())
    row = next(r for r in record.rows if r["layer"] == "attn.c_attn")
    assert (row["fan_in"], row["fan_out"]) == (D, 3 * D)
    weight = model.attn.c_attn.weight.detach()
    torch.testing.assert_close(weight.T @ weight, torch.eye(D), rtol=1e-5, atol=1e-5)
    assert torch.linalg.svdvals(weight[:D]).max() < 0.99  # a block of 1/3 mean square


@pytest.mark.parametrize("how", ["split", "timm"])
def test_glorot_per_span_has_each_maps_variance(how):
    """Glorot normal per span: std sqrt(2/(d + d)) in each block, not the whole tensor's
    sqrt(2/(d + 3d)) (0.71× as large). The sample std of n = d² draws has relative standard
    error about 1/sqrt(2n) (less for Glorot's truncated normal): 4 of them as tolerance."""
    model = Block(how)
    spans = recommend(model, _x(2, 6, D)).spans["attn.c_attn"]
    initlab.initialize(model, {"attn.c_attn": spanned("glorot_normal", spans)}, generator=_seeded())
    want, tol = math.sqrt(2 / (D + D)), 4 / math.sqrt(2 * D * D)
    for block in model.attn.c_attn.weight.detach().split(D):
        assert abs(float(block.std()) / want - 1) < tol
    assert tol < 1 - math.sqrt(2 / (D + 3 * D)) / want  # the test tells the two apart


def test_the_doctors_glorot_rule_on_gates_is_drawn_per_gate_and_a_fan_in_rule_is_not():
    """A tanh gate gets the Glorot rule, whose fan_out changes with the spans: two spans,
    each block with std sqrt(2/(d + d)). A ReLU gate gets He (fan_in only), whose law is the
    same either way: no spans."""
    plan = recommend(Gated("tanh"), _x(200, D))
    assert plan["fused"] == spanned("glorot_normal", ((0, D), (D, 2 * D)))
    assert plan.spans == {"fused": ((0, D), (D, 2 * D))}
    model = Gated("tanh")
    initlab.initialize(model, plan, generator=_seeded())
    want, tol = math.sqrt(2 / (D + D)), 4 / math.sqrt(2 * D * D)
    for block in model.fused.weight.detach().split(D):
        assert abs(float(block.std()) / want - 1) < tol
    relu = recommend(Gated("relu"), _x(200, D))
    assert relu["fused"] == "he_normal" and relu.spans == {}


@pytest.mark.parametrize("bias", ["zeros", "torch_default"])
@pytest.mark.parametrize("how", ["split", "timm"])
def test_the_snippet_reproduces_the_plans_draws_exactly(how, bias):
    """init_snippet.py on a fresh model, same seed: the very weights ``initialize(model,
    plan)`` gives (the same calls in the same order), from the plan or its JSON specs."""
    plan = recommend(Block(how), _x(2, 6, D))
    reference = Block(how)
    initlab.initialize(reference, plan, bias=bias, generator=_seeded(3))
    specs = json.loads(json.dumps(plan.specs()))
    assert specs["attn.c_attn"] == f"orthogonal per rows 0:{D}, {D}:{2 * D}, {2 * D}:{3 * D}"
    for schemes in (plan, specs):
        space: dict = {}
        exec(make_snippet(Block(how), schemes, name="t", message="m", bias=bias), space)
        mine = space["apply_init"](Block(how), _seeded(3))
        for (name, got), want in zip(
            mine.state_dict().items(), reference.state_dict().values(), strict=True
        ):
            # exact: the same torch calls (normal_, qr, sign, mul) on the same generator
            # state and shapes, in the same process; no other summation order is involved
            assert torch.equal(got, want), name
    again = Block(how)
    initlab.initialize(again, specs, bias=bias, generator=_seeded(3))
    assert torch.equal(again.attn.c_attn.weight, reference.attn.c_attn.weight)


def test_an_interleaved_split_falls_back_to_whole_tensor_fans():
    """Megatron's per-head ``[q_h, k_h, v_h]`` layout: each piece holds H separate column
    blocks, no contiguous span: one draw, as before."""
    model, x = Block("interleaved"), _x(2, 6, D)
    layers = {layer.name: layer for layer in trace(model, x)[0]}
    assert layers["attn.c_attn"].spans is None
    plan = recommend(model, x)
    assert plan["attn.c_attn"] == "orthogonal" and plan.spans == {}
    assert "fused" not in next(e.reason for e in plan.entries if e.layer == "attn.c_attn")


def test_column_spans_accepts_clean_partitions_only():
    out = torch.randn(2, 5, 12)
    assert column_spans(out, out.split([2, 6, 4], dim=-1), 12) == ((0, 2), (2, 8), (8, 12))
    assert column_spans(out, out.chunk(2, dim=1), 12) is None  # along the sequence
    assert column_spans(out, out.split(6, dim=0)[:1], 12) is None  # one piece
    assert column_spans(out, [p.clone() for p in out.split(4, -1)], 12) is None  # copies
    assert column_spans(out, out[..., :8].split(4, -1), 12) is None  # not all of it
    strided = out.view(2, 5, 4, 3).unbind(3)  # columns {0, 3, 6, 9}, {1, 4, 7, 10}, ...
    assert column_spans(out, strided, 12) is None
    permuted = out.view(2, 5, 3, 4).transpose(2, 3).unbind(3)  # 0:4, 4:8, 8:12 again
    assert column_spans(out, permuted, 12) == ((0, 4), (4, 8), (8, 12))


def test_bad_row_spans_are_refused():
    model = Block()
    with pytest.raises(InitlabError, match="do not tile its 192 output rows"):
        initlab.initialize(model, {"attn.c_attn": "orthogonal per rows 0:64, 64:100"})
    with pytest.raises(InitlabError, match="a:b"):
        initlab.initialize(model, {"attn.c_attn": "orthogonal per rows 0-64"})


def test_multihead_attention_keeps_its_thirds_and_gets_no_spans():
    """``nn.MultiheadAttention`` sets its in_proj per third itself; the tracer records no
    spans for it."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn, self.head = (
                nn.MultiheadAttention(D, HEADS, batch_first=True),
                nn.Linear(D, 3),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.attn(x, x, x)[0])

    model = Net()
    plan = recommend(model, _x(2, 6, D))
    assert plan.spans == {}
    initlab.initialize(model, plan, generator=_seeded())
    want, tol = math.sqrt(6 / (D + D)) / math.sqrt(3), 4 / math.sqrt(2 * D * D)
    for block in model.attn.in_proj_weight.detach().split(D):
        assert abs(float(block.std()) / want - 1) < tol


def test_the_trials_plan_candidate_keeps_the_spans():
    """The doctor's trials rebuilt the plan from bare schemes: its 'plan' candidate, and so
    its init_snippet.py, drew c_attn whole. A plan with spans trains as the planned model."""
    from initlab.config import RunConfig
    from initlab.doctor.candidates import PLANNED, plan_candidate

    torch.manual_seed(0)
    model = Block()
    plan = recommend(model, _x(2, 6, D))
    base = RunConfig(model="my_models.py:block", init="default")
    found = plan_candidate("plan", plan, base, "the plan")
    assert found.schemes["attn.c_attn"] == spanned("orthogonal", THIRDS)
    assert found.settings["model"] == PLANNED  # not init + output_init: those draw whole
    planned = json.loads(found.settings["model_args"]["plan"])
    assert planned["attn.c_attn"] == spanned("orthogonal", THIRDS)


@pytest.mark.parametrize(("how", "named"), [("split", True), ("interleaved", False)])
def test_a_comparison_notes_the_schemes_that_draw_a_fused_projection_whole(how, named):
    """compare drew nanoGPT's c_attn whole under Glorot and orthogonal without a word, while
    the doctor's plan draws it per piece (NLP journey). He (fan_in) is the same per piece and
    is not named; an interleaved cut is no partition and gets no note."""
    x = torch.randint(0, 16, (64, 6), generator=_seeded(1))
    y = torch.randint(0, 5, (64, 6), generator=_seeded())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initlab.compare(
            ["he_normal", "glorot_uniform", "orthogonal"], seeds=1, data=(x, y, x, y),
            model=lambda: nn.Sequential(nn.Embedding(16, D), Block(how)),
            task="sequence", epochs=1, batch_size=32, track="off",
        )  # fmt: skip
    fused = [str(w.message) for w in caught if "fused projection" in str(w.message)]
    if not named:
        assert fused == []
        return
    assert len(fused) == 1
    assert fused[0].startswith("glorot_uniform, orthogonal draw 1.attn.c_attn of ")
    assert "whole, though the forward cuts it into pieces" in fused[0]
