"""The ``auto`` strategy trial (initlab.train.trial): what it times, at how many threads,
what it leaves alone, and the decision taken on the first real training steps.

The decisions are forced with a fake clock (a batched step "costs" 10 units, a
single-model looped step 1): real timings on a 2-core machine are too noisy to test on.
Tolerances as in test_engine: ``50 eps(float32) sqrt(n)`` relative after one epoch.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.data import load
from initlab.train import engine, trial
from initlab.train.engine import Member, Plan, StackTrainer
from initlab.train.stack import ModelStack
from initlab.train.trial import TIMED_ROUNDS, StrategyTrial

EPS = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def mlps(n: int = 3, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
            for _ in range(n)]  # fmt: skip


@pytest.fixture
def fake_clock(monkeypatch):
    """``clock()`` advancing by ``cost[strategy]`` per call pair: a batched step lasts
    ``cost["batched"]``, one model's looped step ``cost["looped"]``."""
    cost = {"batched": 10.0, "looped": 1.0}
    state = {"now": 0.0, "open": False, "stack": None}

    def clock(_device):
        stack = state["stack"]
        if state["open"]:
            state["now"] += cost["looped" if stack.strategy == "looped" else "batched"]
        state["open"] = not state["open"]
        return state["now"]

    monkeypatch.setattr(trial, "clock", clock)
    monkeypatch.setattr(trial, "_CHOSEN", {})
    return cost, state


def test_preparing_leaves_weights_statistics_and_rng_alone():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)) for _ in range(3)]
    stack = ModelStack(models, torch.device("cpu"))
    before = {k: v.detach().clone() for k, v in {**stack.params, **stack.buffers}.items()}
    x = 5 + torch.randn(3, 8, 4)
    rng = torch.get_rng_state()
    StrategyTrial(stack).prepare(x, lambda out: out.square().sum())
    assert stack.strategy == "stacked"  # decided later, on the training steps
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in {**stack.params, **stack.buffers}.items():
        assert torch.equal(v.detach(), before[k]), k
    assert all(g is None for g in stack.grads())


def test_preparing_times_looped_at_one_thread_and_restores_the_thread_count(monkeypatch):
    """Process CPU time counts every thread: at two threads it charged a batched step whose
    products use both threads twice against looped's small ones (auto kept looped for 7
    seed MLPs, 3x slower). The timed steps run at one thread; the caller's count comes back."""
    monkeypatch.setattr(trial, "_CHOSEN", {})
    stack = ModelStack([nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2))] * 3,
                       torch.device("cpu"))  # fmt: skip
    seen: list[int] = []

    def loss(out: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return out.square().sum()

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chosen = StrategyTrial(stack)
        chosen.prepare(torch.randn(3, 8, 7), loss)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    # the batched check as called, then looped's warm-up and timed rounds at one thread
    assert seen == [2] + [1] * (1 + TIMED_ROUNDS)
    assert chosen.pending_steps == TIMED_ROUNDS and math.isfinite(chosen.looped_seconds)


def run_steps(trainer: StackTrainer, steps: int) -> list[int]:
    """Train ``steps`` steps by hand; the thread count each forward ran at."""
    threads: list[int] = []
    forward = trainer.stack.forward

    def spy(*args, **kwargs):
        threads.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    trainer.stack.forward = spy
    trainer.prepare()
    meter = engine.Meter(trainer.plan.task, trainer.size, trainer.device)
    for idx in trainer.batches()[:steps]:
        trainer.step(idx, meter)
    del trainer.stack.forward
    return threads


def test_the_first_training_steps_are_timed_at_one_thread_then_batched_is_kept(digits, fake_clock):
    cost, state = fake_clock
    cost["batched"] = 2.0  # 3 models: batched 2 < 0.9 x 3 x 1
    trainer = StackTrainer(mlps(), digits, Plan(epochs=1), [Member(seed=s) for s in range(3)])
    state["stack"] = trainer.stack
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = run_steps(trainer, TIMED_ROUNDS + 2)
    finally:
        torch.set_num_threads(threads)
    assert seen[1:] == [1] * TIMED_ROUNDS + [2, 2]  # seen[0]: prepare's batched check
    assert trainer.stack.strategy == "stacked" and trainer.trial.pending_steps == 0
    assert trainer.fused  # fused SGD only once decided (the trial times no update)
    assert trainer.trial.batched_seconds == 2.0 and trainer.trial.looped_seconds == 3.0


def test_a_slower_batched_strategy_is_dropped_and_training_goes_on_alike(digits, fake_clock):
    """After the timed steps the stack switches to looped mid-epoch: same tensors, same
    optimizer state, so the epoch ends as the batched strategy would have ended it."""
    _cost, state = fake_clock
    members = [Member(seed=s, lr=0.05) for s in range(3)]
    plan = Plan(epochs=1, optimizer="momentum")
    auto = StackTrainer(mlps(), digits, plan, members)
    state["stack"] = auto.stack
    result = auto.run()
    assert auto.stack.strategy == "looped"
    forced = StackTrainer(mlps(), digits, Plan(epochs=1, optimizer="momentum",
                                               strategy="stacked"), members).run()  # fmt: skip
    rel = 50 * EPS * math.sqrt(digits.num_train)
    for a, b in zip(result, forced, strict=True):
        assert a.status == b.status == "ok"
        assert a.epochs[0]["train_loss"] == pytest.approx(b.epochs[0]["train_loss"], rel=rel)
        assert a.test_loss == pytest.approx(b.test_loss, rel=rel, abs=rel)
    # remembered: the next stack of the same key is looped at once, with no timed steps
    again = StackTrainer(mlps(), digits, plan, members)
    again.prepare()
    assert again.stack.strategy == "looped" and again.trial.pending_steps == 0


def test_a_trial_cut_short_by_the_end_of_training_decides_nothing(digits, fake_clock):
    _cost, state = fake_clock
    tiny = type(digits)(**{**vars(digits), "x_train": digits.x_train[:64],
                           "y_train": digits.y_train[:64]})  # fmt: skip
    trainer = StackTrainer(mlps(), tiny, Plan(epochs=1), [Member(seed=s) for s in range(3)])
    state["stack"] = trainer.stack
    trainer.run()  # two steps < TIMED_ROUNDS
    assert trainer.stack.strategy == "stacked" and trainer.trial.pending_steps == 1
    assert trial._CHOSEN == {}
