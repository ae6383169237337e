"""Zero rules on branches a ReLU ends: ``linear → [norm] → relu``, then ``x + h`` (initlab's
residual MLP). Zeroed, such a branch outputs relu(0) = 0, and every weight of it gets a
gradient carrying relu'(0) = 0: it would never train. The zero rules leave such branches as
initialized, noted; a ResNet's ``relu(bn2(conv2(...)) + x)`` (the ReLU after the sum) and a
squeeze-excite's ReLU (on the gate only) are zeroed as before."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import initialize
from initlab.models import MLP
from initlab.models.resnet import resnet
from initlab.notes import InitlabNote
from initlab.residual import apply_residual, find_structure
from initlab.residual.plan import plan

STEPS, LR = 5, 0.1


def _mlp(activation: str = "relu", batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return MLP(8, [8, 8, 8], 3, activation, residual=True, batch_norm=batch_norm)


def _branch_weights(model: nn.Module) -> list[torch.Tensor]:
    return [block.linear.weight.detach().clone() for block in model.blocks if block.residual]


def _train(model: nn.Module) -> None:
    """``STEPS`` SGD steps of cross-entropy on one fixed random batch."""
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 8, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def _initialized(model: nn.Module, rule: str) -> nn.Module:
    initialize(model, "he_normal", generator=torch.Generator().manual_seed(0), residual_init=rule)
    return model


class Untraceable(nn.Module):
    """Data-dependent control flow (fx cannot trace it): branches recorded from a run, one
    ending in ``x.relu()``, one in ``F.relu``, one in tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.head = (nn.Linear(8, 8) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:
            x = x + self.a(x).relu()
            x = x + F.relu(self.b(x))
            x = x + torch.tanh(self.c(x))
        return self.head(x)


def test_the_branches_a_relu_ends_are_found_by_fx_and_by_a_run():
    fx = find_structure(_mlp(batch_norm=True))
    assert fx.method == "fx"
    assert fx.branches[0].dead_if_zeroed == {
        "blocks.0.linear": "blocks.0.act (ReLU)",
        "blocks.0.norm": "blocks.0.act (ReLU)",
    }
    assert all(not b.dead_if_zeroed for b in find_structure(_mlp("tanh")).branches)
    run = find_structure(Untraceable(), torch.randn(4, 8))
    assert run.method == "run"
    assert [b.dead_if_zeroed for b in run.branches] == [{"a": "relu"}, {"b": "relu"}, {}]


class SqueezeExcite(nn.Module):
    """``x + v * sigmoid(gate2(relu(gate1(v))))``, ``v = norm(fc(x))``: the ReLU is on the
    gate only, so a zeroed ``fc`` or ``norm`` leaves the value path to carry a gradient;
    ``branching``: behind a data-dependent test (recorded from a run)."""

    def __init__(self, branching: bool) -> None:
        super().__init__()
        self.branching = branching
        self.fc, self.norm = nn.Linear(8, 8), nn.LayerNorm(8)
        self.gate1, self.gate2, self.head = nn.Linear(8, 2), nn.Linear(2, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            v = self.norm(self.fc(x))
            if not self.branching or x.shape[0] > 0:
                x = x + v * torch.sigmoid(self.gate2(F.relu(self.gate1(v))))
        return self.head(x)


def test_a_relu_after_the_sum_or_on_a_squeeze_excite_gate_does_not_count():
    images, vectors = torch.randn(4, 1, 8, 8), torch.randn(4, 8)
    for model, example, method in (
        (resnet(8, 4, in_channels=1), images, "fx"),  # relu(bn2(conv2(...)) + x)
        (SqueezeExcite(branching=False), vectors, "fx"),
        (SqueezeExcite(branching=True), vectors, "run"),
    ):
        structure = find_structure(model, example)
        assert structure.method == method and structure.depth >= 2
        assert all(not b.dead_if_zeroed for b in structure.branches)
    gated = find_structure(SqueezeExcite(branching=False)).branches[0]
    assert gated.layers[-1] == "fc" and gated.last_norm == "norm"  # what the rules zero


@pytest.mark.parametrize(
    ("rule", "batch_norm", "module"),
    [
        ("zero_last_layer", False, "linear"),
        ("zero", False, "linear"),
        ("zero_last_norm", True, "norm"),
    ],
)
def test_a_zero_rule_leaves_a_branch_a_relu_ends_as_initialized_and_it_learns(
    rule, batch_norm, module
):
    """Before, the rule zeroed them and their weights got exactly 0 gradient: after any
    number of steps they were still exactly what the rule set."""
    plain = _branch_weights(_initialized(_mlp(batch_norm=batch_norm), "none"))
    model = _mlp(batch_norm=batch_norm)
    with pytest.warns(InitlabNote) as said:
        _initialized(model, rule)
    lines = [str(w.message) for w in said if issubclass(w.category, InitlabNote)]
    assert len(lines) == 1  # one line: which branches, why, what to use instead
    branch = f"(branch 1: blocks.0.act (ReLU) follows blocks.0.{module}, the module it zeroes"
    assert f"leaves all 3 branches as initialized {branch}" in lines[0]
    assert "relu'(0)" in lines[0] and "'skipinit'" in lines[0]
    assert "equals residual 'none'" in lines[0]
    start = _branch_weights(model)
    for before, now in zip(plain, start, strict=True):
        assert torch.equal(before, now)  # as the scheme drew them
    norms = [b.norm.weight for b in model.blocks] if batch_norm else []
    assert all(bool((w == 1).all()) for w in norms)  # BatchNorm's default scale
    _train(model)
    for before, after in zip(start, _branch_weights(model), strict=True):
        # each of 64 weights moves by lr x its gradient; a dead branch's stayed exactly put
        assert float((after - before).abs().max()) > 0


def test_a_branch_of_a_zero_rule_that_a_relu_does_not_end_is_zeroed_and_learns_from_zero():
    model = _initialized(_mlp("tanh"), "zero_last_layer")
    assert all(not w.any() for w in _branch_weights(model))
    _train(model)  # tanh'(0) = 1: the gradient reaches the zeroed layer
    assert all(w.any() for w in _branch_weights(model))


def test_a_resnets_basic_blocks_are_still_zeroed_without_a_note():
    images = torch.randn(4, 1, 8, 8)
    for rule, norm, zeroed in (
        ("zero_last_layer", False, "conv2"),
        ("zero_last_norm", True, "bn2"),
    ):
        torch.manual_seed(0)
        model = resnet(8, 4, in_channels=1, norm=norm)
        with warnings.catch_warnings():
            warnings.simplefilter("error", InitlabNote)
            result = apply_residual(model, rule, example=images)
        assert result.kept == [] and result.structure.depth == 3
        blocks = [model.layer1[0], model.layer2[0], model.layer3[0]]
        assert all(not getattr(b, zeroed).weight.any() for b in blocks)


class Mixed(nn.Module):
    """Two branches: ``relu(fc1(x))`` and ``fc2(relu(x))`` (a ReLU before its layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + F.relu(self.fc1(x))
        x = x + self.fc2(F.relu(x))
        return self.head(x)


def test_the_result_and_the_plan_name_the_branches_kept():
    with pytest.warns(InitlabNote, match=r"leaves 1 of 2 branches as initialized \(branch 1: "):
        result = apply_residual(Mixed(), "zero_last_layer")
    assert result.kept == [(0, "fc1", "relu")]
    assert set(result.actions) == {"fc2.weight", "fc2.bias"}  # the other branch is zeroed
    with pytest.warns(InitlabNote, match="leaves 1 of 2"):
        made = plan(Mixed(), "he_normal", residual_init="zero")
    rules = {row["name"]: row["rule"] for row in made.parameters}
    assert rules["fc1.weight"] == "he_normal, not zeroed: relu follows (zero_last_layer)"
    assert rules["fc2.weight"] == "he_normal, then zeroed (zero_last_layer)"
    assert "fc1.weight" in [row["name"] for row in made.residual_rows()]


class TwoLayerReluEnd(nn.Module):
    """Branches ``relu(fc2(relu(fc1(x))))`` added to the stream: Fixup zeroes fc2."""

    def __init__(self, blocks: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.ModuleList(nn.Linear(8, 8) for _ in range(blocks))
        self.fc2 = nn.ModuleList(nn.Linear(8, 8) for _ in range(blocks))
        self.out = nn.ModuleList(nn.ReLU() for _ in range(blocks))  # fixup's output hook
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fc1, fc2, out in zip(self.fc1, self.fc2, self.out, strict=True):
            x = x + out(fc2(torch.relu(fc1(x))))
        return self.head(x)


def test_fixup_does_not_zero_the_last_layer_a_relu_ends_and_the_branch_trains():
    torch.manual_seed(0)
    model = TwoLayerReluEnd()
    with pytest.warns(InitlabNote, match="'fixup' does not zero the last layer of all 3"):
        _initialized(model, "fixup")
    before = [fc.weight.detach().clone() for fc in model.fc2]
    torch.manual_seed(0)  # the same draw without the rule: fc2 left as it was drawn
    drawn = _initialized(TwoLayerReluEnd(), "none")
    assert all(torch.equal(w, fc.weight) for w, fc in zip(before, drawn.fc2, strict=True))
    _train(model)
    assert all(not torch.equal(fc.weight, w) for fc, w in zip(model.fc2, before, strict=True))
