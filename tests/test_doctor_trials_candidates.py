"""Candidates of the doctor's trials: what auto picks, and plans expressed as runs."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from initlab.config import RunConfig
from initlab.doctor import recommend
from initlab.doctor.candidates import (
    PLANNED,
    auto_candidates,
    buildable,
    check_listed,
    listed_candidates,
    plan_candidate,
)
from initlab.errors import InitlabError
from initlab.models import MLP
from initlab.train.build import build_architecture, build_initialized_model
from initlab.train.run import load_data


def _tanh_mlp():
    base = RunConfig(dataset="digits", hidden=(32,) * 4, activation="tanh", init="default")
    data = load_data(base)
    model = build_architecture(base, data.input_shape, data.num_classes)
    return base, data, model


def test_auto_candidates_of_a_tanh_mlp():
    base, data, model = _tanh_mlp()
    x = data.x_train[:256]
    plan = recommend(model, x)
    found = auto_candidates(base, model, x, plan, "random_normal(stddev=0.01)")
    names = [c.name for c in found]
    # glorot_normal + glorot_uniform output is the plan itself: listed once, as "plan"
    assert names == ["default", "random_normal(stddev=0.01)", "plan", "orthogonal_plan", "lsuv"]
    assert found[2].settings == {"init": "glorot_normal", "output_init": "glorot_uniform"}


def test_listed_orthogonal_is_the_initializer_and_orthogonal_plan_the_family_plan():
    """``orthogonal`` means what it means in compare (gain 1 on every hidden layer); the
    per-layer-gain family plan has its own name (they used to share ``orthogonal``)."""
    base, data, model = _tanh_mlp()
    x = data.x_train[:256]
    names = check_listed(["orthogonal", "orthogonal_plan"])
    found = listed_candidates(names, base, model, x, recommend(model, x))
    by_name = {c.name: c for c in found}
    assert by_name["orthogonal"].settings == {"init": "orthogonal"}
    plan = {"init": "orthogonal(gain=1)", "output_init": "glorot_uniform"}  # tanh's gain 1
    assert by_name["orthogonal_plan"].settings == plan


def test_a_listed_name_that_is_the_same_run_as_another_is_dropped_with_a_note():
    """glorot_normal is the tanh plan itself: it vanished from the ranking without a word."""
    import warnings

    from initlab import InitlabNote

    base, data, model = _tanh_mlp()
    x = data.x_train[:256]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InitlabNote)
        found = listed_candidates(["plan", "glorot_normal"], base, model, x, recommend(model, x))
    assert [c.name for c in found] == ["default", "plan"]
    said = [str(w.message) for w in caught if issubclass(w.category, InitlabNote)]
    assert said == ["glorot_normal is the same run as plan here: trained once, as plan"]


def test_plan_with_a_rule_can_be_listed_as_auto_names_it():
    """--candidates plan+depth_scaled, a name the doctor prints, was an unreadable init spec."""
    base, data, model = _tanh_mlp()
    x = data.x_train[:256]
    names = check_listed(["plan+depth_scaled", "plan+zero"])
    by_name = {c.name: c for c in listed_candidates(names, base, model, x, recommend(model, x))}
    assert by_name["plan+depth_scaled"].settings["residual_init"] == "depth_scaled"
    assert by_name["plan+zero_last_layer"].settings["residual_init"] == "zero_last_layer"
    planned = plan_candidate("plan", recommend(model, x), base, "").settings
    assert by_name["plan+depth_scaled"].settings == {**planned, "residual_init": "depth_scaled"}
    with pytest.raises(InitlabError, match="plan\\+fixup'\\]: the trials take plan\\+ with a rule"):
        check_listed(["plan+fixup"])
    with pytest.raises(InitlabError, match="did you mean 'depth_scaled'"):
        check_listed(["plan+depth_scaeld"])


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(64, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.relu(self.a(x.flatten(1))))))


def build_mixed():
    return Mixed()


def test_a_mixed_plan_trains_as_the_wrapped_factory():
    base = RunConfig(dataset="digits", model=f"{__name__}:build_mixed", init="default")
    data = load_data(base)
    model = build_mixed()
    plan = recommend(model, data.x_train[:256])
    candidate = plan_candidate("plan", plan, base, "test")
    assert candidate.settings["model"] == PLANNED
    kept, notes = buildable([candidate], base, data)
    assert kept == [candidate] and notes == []
    built = build_initialized_model(
        candidate.config(base.replace(seed=3)), data.input_shape, data.num_classes
    )
    # he_normal on a (fan_in 64) and glorot_normal on b (fans 256, 256): post-truncation stds
    for layer, std in ((built.a, math.sqrt(2 / 64)), (built.b, math.sqrt(2 / 512))):
        w = layer.weight.detach()
        se = std / math.sqrt(2 * w.numel())  # std error of a sample std
        assert abs(float(w.std()) - std) < 6 * se + 1e-3 * std
    assert float(built.a.bias.detach().abs().max()) == 0  # the plan's biases: zero


def test_data_seed_moves_only_the_data_order():
    assert RunConfig(data_seed=None).key() == RunConfig().key()  # existing keys unchanged
    base = RunConfig(dataset="digits", hidden=(16,), epochs=2, lr=0.1, limit_train=256, track="off")
    configs = [base, base.replace(data_seed=0), base.replace(data_seed=1)]
    from initlab.train import train_configs

    loss = [r.final_train_loss for r in train_configs(configs, load_data(base))]
    # None means the run's seed (0): the same run up to float rounding; another order differs
    atol = 50 * torch.finfo(torch.float32).eps * math.sqrt(256)
    assert abs(loss[0] - loss[1]) < atol
    assert abs(loss[0] - loss[2]) > 10 * atol  # were data_seed ignored: equal within atol


def test_residual_candidates_are_the_plan_with_each_rule():
    """``plan+<rule>`` is the plan's own settings and the rule, whatever else is listed (it
    once took the third candidate, which without --init and a preset is ``orthogonal_plan``)."""
    args = {"depth": 8, "width": 4, "in_channels": 1}
    base = RunConfig(dataset="digits", model="initlab.models.resnet:resnet", model_args=args)
    data = load_data(base)
    model = build_architecture(base, data.input_shape, data.num_classes)
    x = data.x_train[:64]
    found = {c.name: c for c in auto_candidates(base, model, x, recommend(model, x), None)}
    rules = [name for name in found if name.startswith("plan+")]
    assert rules and "orthogonal_plan" in found
    for name in rules:
        rule = name.removeprefix("plan+")
        assert found[name].settings == {**found["plan"].settings, "residual_init": rule}
        # the per-layer schemes too: without them the winner's init_snippet.py kept every
        # layer as built and applied only the rule
        assert found[name].schemes == found["plan"].schemes and found[name].schemes


def test_residual_rules_that_would_change_nothing_get_no_trial():
    from initlab.doctor.candidates import residual_rules
    from initlab.models.gpt import gpt
    from initlab.models.resnet import resnet
    from initlab.residual import find_structure

    def rules(model, inputs):
        return residual_rules(find_structure(model, inputs))

    tokens = torch.randint(0, 16, (4, 8))
    prenorm = rules(gpt(vocab_size=16, width=16, depth=2, heads=2, context=8), tokens)
    assert prenorm == ["zero_last_layer", "depth_scaled"]  # no branch ends in a norm
    images = torch.randn(4, 1, 8, 8)
    normed = rules(resnet(8, 4, in_channels=1), images)  # every branch ends in its bn2
    assert normed == ["zero_last_layer", "zero_last_norm"]  # depth_scaled: undone by bn2
    assert rules(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), images) == []
    # a ReLU after each branch's zeroed module (linear -> [norm] -> relu, then x + h): the
    # zero rules would leave every branch as drawn, so their trials would train the plan
    vectors = torch.randn(4, 8)
    relu = MLP(8, [8, 8, 8], 3, "relu", residual=True)
    assert rules(relu, vectors) == ["depth_scaled"]
    assert rules(MLP(8, [8, 8, 8], 3, "relu", residual=True, batch_norm=True), vectors) == []
    tanh = MLP(8, [8, 8, 8], 3, "tanh", residual=True, batch_norm=True)
    assert rules(tanh, vectors) == ["zero_last_layer", "zero_last_norm"]


def test_a_candidate_that_gives_the_same_weights_as_an_earlier_one_is_left_out():
    # depth_scaled on a net with one residual branch scales by 1/sqrt(1): plan again
    from initlab.doctor.candidates import Candidate

    base = RunConfig(dataset="digits", hidden=(16, 16), residual=True, init="default")
    data = load_data(base)
    plan = Candidate("plan", {"init": "he_normal"})
    same = Candidate("plan+depth_scaled", {"init": "he_normal", "residual_init": "depth_scaled"})
    other = Candidate("glorot_normal", {"init": "glorot_normal"})
    default = Candidate("default", {"init": "default"})
    kept, notes = buildable([default, plan, same, other], base, data)
    assert [c.name for c in kept] == ["default", "plan", "glorot_normal"]
    assert notes == ["plan+depth_scaled left out: on this model it gives the same weights as plan"]
    # a reference is kept even when it matches an earlier candidate
    kept, _ = buildable([plan, same], base, data, references=["plan+depth_scaled"])
    assert len(kept) == 2


LSUV_LM = """
import torch
from torch import nn

class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(64, 32), nn.Embedding(32, 32)
        self.mid1, self.mid2, self.head = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 64)

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        return self.head(torch.tanh(self.mid2(torch.relu(self.mid1(h)))))

def build():
    return LM()
"""


def test_a_planned_lsuv_layer_measures_the_tables_the_trials_train(tmp_path):
    """A plan trained through planned_model ran its LSUV on nn.Embedding's N(0, 1) tables;
    the embedding init redrew them afterwards, so mid2's output had std ~0.02, not 1."""
    (tmp_path / "lm.py").write_text(LSUV_LM)
    base = RunConfig(
        model=f"{tmp_path / 'lm.py'}:build", dataset="initlab.scaling.tokens:zipf_copies",
        init="default", embedding_init="normal(std=0.02)",
    )  # fmt: skip
    data = load_data(base)
    model = build_architecture(base, data.input_shape, data.num_classes)
    plan = recommend(model, data.x_train[:64], family="variance")
    assert plan.entries[1].layer == "mid2"
    plan.entries[1] = dataclasses.replace(plan.entries[1], scheme="lsuv")  # after mid1's
    found = plan_candidate("plan", plan, base, "test")
    built = build_initialized_model(found.config(base), data.input_shape, 64, data=data)
    seen = {}
    built.mid2.register_forward_hook(lambda m, i, o: seen.update(std=float(o.std())))
    with torch.no_grad():
        built(data.x_train[:256])
    assert abs(float(built.tok.weight.std()) - 0.02) < 0.002  # 2,048 values: 5 sds
    assert abs(seen["std"] - 1.0) < 0.1, seen  # LSUV's unit variance, on these tables
    assert found.settings["model"] == PLANNED and found.settings["embedding_init"] == "default"
