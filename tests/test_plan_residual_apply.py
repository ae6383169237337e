"""A plan's residual rule travels with it: ``initialize(model, plan)`` applies what
``initlab.plan`` showed, and ``str(plan)`` says what the rule does to each parameter."""

import pytest
import torch
from torch import nn

import initlab
from initlab.errors import InitlabError
from initlab.models.gpt import gpt


class Block(nn.Module):
    """A two-layer residual branch: x + fc2(relu(fc1(x)))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


def residual_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), Block(16), Block(16), nn.Linear(16, 3))


def small_gpt() -> nn.Module:
    torch.manual_seed(0)
    return gpt(depth=2, width=16, heads=2, vocab_size=16, context=8)


def initialized(make, scheme, **options) -> dict[str, torch.Tensor]:
    model = make()
    initlab.initialize(model, scheme, generator=torch.Generator().manual_seed(3), **options)
    return model.state_dict()


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Exact: both paths draw the same initializers from the same seeded generator and
    apply the same rule's multiplications, in one process on the same kernels."""
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("rule", ["fixup", "skipinit", "zero_last_layer", "depth_scaled"])
def test_initialize_with_a_plan_applies_its_residual_rule(rule):
    plan = initlab.plan(residual_mlp(), "he_normal", residual_init=rule)
    assert plan.residual_rule == rule
    from_plan = initialized(residual_mlp, plan)
    direct = initialized(residual_mlp, "he_normal", residual_init=rule)
    assert_same_state(from_plan, direct)
    assert_same_state(from_plan, initialized(residual_mlp, plan, residual_init=rule))  # said twice


def test_a_fixup_plan_zeroes_the_branch_ends_and_adds_its_scalars():
    model = residual_mlp()
    record = initlab.initialize(model, initlab.plan(model, "he_normal", residual_init="fixup"))
    assert record.residual == "fixup"
    assert torch.count_nonzero(model[1].fc2.weight) == 0
    assert torch.count_nonzero(model[3].weight) == 0  # fixup's zero readout
    added = {n for n, _ in model.named_parameters() if "fixup" in n}
    assert {"1.fc2.fixup_scale", "1.fc2.fixup_bias", "1.fc1.fixup_bias_in"} <= added


@pytest.mark.parametrize("rule", ["fixup", "depth_scaled"])
def test_a_gpt_plan_applies_its_residual_rule(rule):
    plan = initlab.plan(small_gpt(), "normal(std=0.02)", residual_init=rule)
    direct = initialized(small_gpt, "normal(std=0.02)", residual_init=rule)
    assert_same_state(initialized(small_gpt, plan), direct)


def test_str_of_a_plan_shows_the_rule_per_parameter():
    plan = initlab.plan(residual_mlp(), "he_normal", residual_init="fixup")
    lines = str(plan).splitlines()
    assert "residual rule fixup, L = 2 branches, after the schemes:" in lines
    by_name = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert by_name["1.fc2.weight"].endswith("he_normal, then zeroed (fixup)")
    assert by_name["2.fc1.weight"].endswith("× 0.7071 (fixup)")  # L^(-1/(2m-2)), L = m = 2
    assert by_name["1.fc2.fixup_scale"].endswith("added = 1 (fixup)")
    assert "0.weight" not in by_name  # a layer the rule leaves alone is not listed
    assert "residual rule" not in str(initlab.plan(residual_mlp(), "he_normal"))


def test_a_residual_that_contradicts_the_plan_is_one_line():
    plan = initlab.plan(residual_mlp(), "he_normal", residual_init="fixup")
    with pytest.raises(InitlabError, match=r"^the plan applies the residual rule 'fixup'") as e:
        initlab.initialize(residual_mlp(), plan, residual_init="skipinit")
    assert "\n" not in str(e.value)
    with pytest.raises(InitlabError, match="'fixup' and residual_init='none'"):
        initlab.initialize(residual_mlp(), plan, residual_init="none")
    zero = initlab.plan(residual_mlp(), "he_normal", residual_init="zero")
    assert zero.residual_rule == "zero_last_layer"
    assert (
        initlab.initialize(residual_mlp(), zero, residual_init="zero").residual == "zero_last_layer"
    )


def test_a_plan_of_a_plan_keeps_its_rule():
    first = initlab.plan(residual_mlp(), "he_normal", residual_init="skipinit")
    again = initlab.plan(residual_mlp(), first)
    assert again.residual_rule == "skipinit"
    assert [r["rule"] for r in again.parameters] == [r["rule"] for r in first.parameters]


class _Untraceable(nn.Module):
    """A residual block with data-dependent control flow: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        if x.sum() > -1e9:
            return x + self.b(torch.relu(self.a(x)))
        return x


def test_a_plan_found_from_data_applies_its_rule_without_the_data():
    # initialize(model, plan) looked for the branches again, without the data, found none
    # in an untraceable model, and dropped the plan's zero_last_layer silently
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), _Untraceable(), _Untraceable(), nn.Linear(8, 2))
    plan = initlab.plan(
        model, "he_normal", residual_init="zero_last_layer", data=torch.randn(16, 4)
    )
    record = initlab.initialize(model, plan)
    assert record.residual == "zero_last_layer"
    assert model[1].b.weight.abs().max() == 0 and model[2].b.weight.abs().max() == 0
