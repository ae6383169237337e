"""Tied parameters (a language model's output layer sharing its embedding's weight) stay tied
in every strategy, in training and when the trained state is written back.

``stack_module_state`` stores a tied tensor once, under its first name; a per-model module
that replaced only that name would leave the other name on the template's tensor (model 0's
initial weight, never trained). Outputs are compared with a tolerance of
``50 eps(float32) sqrt(n)`` (n: the summation terms of one output, here the width).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.data.dataset import Dataset
from initlab.ties import tied_names
from initlab.train.engine import train_stack
from initlab.train.schedule import Member, StackSettings
from initlab.train.stack import ModelStack

VOCAB, DIM, T = 12, 16, 6
TOL = 50 * torch.finfo(torch.float32).eps * math.sqrt(DIM)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.mix = nn.Linear(DIM, DIM)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.embed(x))))


def models(n: int) -> list[nn.Module]:
    torch.manual_seed(0)
    return [TiedLM() for _ in range(n)]


def test_tied_names_map_every_alias_to_the_stored_name():
    names = tied_names(TiedLM())
    assert names["head.weight"] == names["embed.weight"] == "embed.weight"
    assert names["mix.bias"] == "mix.bias"


@pytest.mark.parametrize("strategy", ["vmap", "looped"])
def test_each_model_keeps_its_own_tie(strategy):
    real = models(3)
    stack = ModelStack(real, torch.device("cpu"), strategy)
    x = torch.randint(0, VOCAB, (4, T))
    out = stack.forward(x, train=True, shared=True)
    torch.testing.assert_close(
        out.detach(), torch.stack([m(x) for m in real]).detach(), rtol=TOL, atol=TOL
    )
    out.square().sum().backward()
    (grad,) = [g for k, g in zip(stack.params, stack.grads(), strict=True) if k == "embed.weight"]
    for m, model in enumerate(real):  # both uses of the tied weight reach its gradient
        model(x).square().sum().backward()
        torch.testing.assert_close(grad[m], model.embed.weight.grad, rtol=TOL, atol=TOL)
    if strategy == "looped":
        assert all(mod.head.weight is mod.embed.weight for mod in stack.modules())


def token_data(n: int = 96) -> Dataset:
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, VOCAB, (n, T + 1), generator=g)
    x, y = seq[:, :-1], seq[:, 1:]
    return Dataset(
        name="tokens",
        x_train=x,
        y_train=y,
        x_val=x[:16],
        y_val=y[:16],
        x_test=x[:16],
        y_test=y[:16],
        num_classes=VOCAB,
        input_shape=(T,),
        classes=(),
        source="test",
        task="sequence",
    )


def test_training_writes_back_a_trained_tied_state():
    data = token_data()
    real = models(2)
    before = [m.embed.weight.detach().clone() for m in real]
    shared = StackSettings(
        task="sequence",
        optimizer="adam",
        batch_size=16,
        epochs=1,
        device=torch.device("cpu"),
        track="off",
    )
    members = [Member(seed, 0.01, 0.9, 0.0) for seed in range(2)]
    results = train_stack(real, data, shared, members, write_back=True)
    assert {r.status for r in results} <= {"ok", "stuck"}  # random tokens: nothing to learn
    for model, weight in zip(real, before, strict=True):
        assert model.head.weight is model.embed.weight
        assert not torch.equal(model.embed.weight, weight)


class Versioned(nn.Linear):
    """A module with extra state: a ``_extra_state`` entry in its state dict, no tensor."""

    def get_extra_state(self) -> dict:
        return {"version": 2}

    def set_extra_state(self, state: dict) -> None:
        self.version = state["version"]


def test_extra_state_passes_through_the_stack():
    models = [nn.Sequential(Versioned(4, 3)) for _ in range(2)]
    stack = ModelStack(models, torch.device("cpu"), "looped")
    assert stack.state_dict(1)["0._extra_state"] == {"version": 2}
    torch.testing.assert_close(stack.materialize(1)[0].weight, models[1][0].weight)


def test_a_tied_embedding_is_an_embedding_table_and_the_plan_says_which_rule_set_it():
    """The compare note and the init record list the table as left alone without an
    embedding scheme (no readout scheme sets it); the plan names the table's rule for both
    names of the tensor."""
    from initlab import initialize
    from initlab.coverage import untouched_weights
    from initlab.residual.plan import plan

    model = TiedLM()
    assert [w.split(" ")[0] for w in untouched_weights(model)] == ["embed"]
    assert untouched_weights(model, embeddings=True) == []
    record = initialize(model, "he_normal", output_init="glorot_uniform")
    assert [s["layer"] for s in record.skipped] == ["embed"]
    for embedding_init, rule in ((None, "kept"), ("lecun_normal", "lecun_normal")):
        options = {"output_init": "glorot_uniform", "embedding_init": embedding_init}
        rules = {r["name"]: r["rule"] for r in plan(TiedLM(), "he_normal", **options).parameters}
        assert rules["embed.weight"].startswith(rule)
        assert rules["head.weight"] == f"tied to embed.weight: {rules['embed.weight']}"
