"""Residual rules on branches gated by a sigmoid: squeeze-excite blocks and GLUs.

The gate's layers lie on the longest path of the graph, but they only scale the branch by a
factor in (0, 1): the rules act on the value path (initlab.residual.value_path)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.residual import apply_residual, find_structure


class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(mean(x)))))`` with 1×1 convolutions; ``classic``: timm's
    older form, Linear layers in a Sequential ending in ``nn.Sigmoid``, the gate reshaped by
    ``view`` and ``expand_as``, behind a size test fx cannot trace."""

    def __init__(self, c: int, classic: bool = False) -> None:
        super().__init__()
        self.classic = classic
        if classic:
            self.fc = nn.Sequential(
                nn.Linear(c, c // 4), nn.ReLU(), nn.Linear(c // 4, c), nn.Sigmoid()
            )
        else:
            self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.classic:
            return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        b, c = x.shape[0], x.shape[1]
        y = x.mean((2, 3))
        if b > 0:  # data-dependent control flow: recorded from a run, not traced by fx
            y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SEBlock(nn.Module):
    def __init__(self, c: int, norm: bool, classic: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c) if norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c) if norm else nn.Identity()
        self.se = SqueezeExcite(c, classic)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.branch(x))


class SENet(nn.Module):
    def __init__(self, norm: bool = False, classic: bool = False, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.blocks = nn.Sequential(*(SEBlock(16, norm, classic) for _ in range(blocks)))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(F.relu(self.stem(x))).mean((2, 3)))


def _example() -> torch.Tensor:
    return torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("classic", [False, True], ids=["fx", "run"])
def test_a_squeeze_excite_gate_is_not_on_the_branchs_chain(classic):
    model = SENet(norm=True, classic=classic)
    structure = find_structure(model, _example())
    assert structure.method == ("run" if classic else "fx")
    first = structure.branches[0]
    gate = (
        ["blocks.0.se.fc.0", "blocks.0.se.fc.2"]
        if classic
        else ["blocks.0.se.fc1", "blocks.0.se.fc2"]
    )
    assert first.layers == ["blocks.0.conv1", "blocks.0.conv2"] and first.gates == gate
    assert first.chain == 2  # not 4: the gate is bounded, whatever its weights
    assert first.last_norm == "blocks.0.bn2"  # the norm after the value's last layer
    assert first.output == "blocks.0.se"  # the module that returns the gated branch
    assert structure.role_of(gate[1]) == "branch 1, gate"
    assert structure.output_layer == "head"


@pytest.mark.parametrize(
    ("rule", "norm"), [("zero_last_layer", False), ("zero_last_norm", True), ("skipinit", False)]
)
def test_rules_that_zero_a_branch_zero_a_gated_one(rule, norm):
    """zero_last_layer zeroed the gate's last layer: sigmoid(0) = 1/2, the branch stayed
    on; zero_last_norm found no norm after that layer and changed nothing; SkipInit refused
    a branch ending in ``x * gate``."""
    torch.manual_seed(0)
    model = SENet(norm=norm)
    apply_residual(model, rule, example=_example())
    h = F.relu(model.stem(_example()))
    with torch.no_grad():
        for block in model.blocks:
            assert float(block.branch(h).abs().max()) == 0.0  # zero weights: exactly 0
            h = block(h)


def test_fixup_scales_the_value_layers_by_L_to_the_minus_half_and_leaves_the_gate():
    torch.manual_seed(0)
    model = SENet()
    plain = copy.deepcopy(model)
    apply_residual(model, "fixup", example=_example())
    block, before = model.blocks[1], plain.blocks[1]
    scale = 4 ** (-1.0 / 2)  # L = 4 branches of m = 2: L^(-1/(2m-2)), not L^(-1/6) for m = 4
    torch.testing.assert_close(block.conv1.weight, before.conv1.weight * scale, atol=1e-7, rtol=0)
    assert not block.conv2.weight.any()
    for name in ("fc1", "fc2"):
        assert torch.equal(getattr(block.se, name).weight, getattr(before.se, name).weight)


def test_a_glus_sigmoid_half_is_a_gate_and_its_value_half_is_not():
    class GLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(8)
            self.value, self.gate, self.out = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm(x)
            return x + self.out(self.value(h) * self.gate(h).sigmoid())

    structure = find_structure(nn.Sequential(GLU(), GLU(), nn.Linear(8, 2)))
    assert [b.layers for b in structure.branches] == [["0.value", "0.out"], ["1.value", "1.out"]]
    assert [b.gates for b in structure.branches] == [["0.gate"], ["1.gate"]]


def test_a_product_of_two_values_keeps_both_on_the_chain():
    """``a(x) * b(x)`` with no sigmoid (a bilinear layer, SwiGLU's silu(w1 x) * w3 x) gates
    nothing: both layers are the branch's."""

    class Bilinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.out(F.silu(self.a(x)) * self.b(x))

    (branch,) = find_structure(Bilinear()).branches
    assert branch.layers == ["a", "b", "out"] and branch.gates == [] and branch.chain == 2


def test_the_plan_reads_a_squeeze_excited_conv_as_linear_not_unknown():
    """conv2's output meets the squeeze's mean first, then the gate's product: it was
    'unknown' and the plan gave every block's conv2 LSUV (and a plan that needs data)."""
    from initlab.doctor.plan import plan_for

    torch.manual_seed(0)
    model = SENet()
    entries = {e.layer: e for e in plan_for(model, _example()).entries}
    for block in range(4):
        assert entries[f"blocks.{block}.conv2"].activation == "linear"
    assert "lsuv" not in {e.scheme for e in entries.values()}
    assert entries["blocks.0.se.fc1"].activation == "relu"


def test_a_shared_squeeze_excited_block_called_twice_takes_skipinit():
    """fx keys a module's second call 'b.se@1': taken for a module name, SkipInit and Fixup
    raised KeyError on a weight-shared block whose branch ends in its SE module."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.b, self.head = (
                nn.Conv2d(1, 16, 3, padding=1),
                SEBlock(16, False, False),
                nn.Linear(16, 5),
            )

        def forward(self, x):
            return self.head(self.b(self.b(F.relu(self.stem(x)))).mean((2, 3)))

    structure = find_structure(Twice(), _example())
    assert [b.output for b in structure.branches] == ["b.se", "b.se"]
    for rule in ("skipinit", "fixup"):
        apply_residual(Twice(), rule, example=_example())


def test_a_sigmoid_times_a_learned_scalar_is_the_branchs_value_not_a_gate():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.fc, self.b = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
            self.alpha = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x + self.b(torch.sigmoid(self.fc(F.relu(self.a(x)))) * self.alpha)

    (branch,) = find_structure(nn.Sequential(Scaled(), nn.Linear(8, 2))).branches
    assert branch.layers == ["0.a", "0.fc", "0.b"] and branch.gates == []
