"""``auto``'s strategy trial (initlab.train.stack.ModelStack.prepare) on scripted step times:
how many rounds it times and what it keeps. The real timings are measured, not asserted
(benchmarks/README.md); here the clock is injected so every decision is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.train import stack as stack_module
from initlab.train.engine import CPU
from initlab.train.stack import CLEAR, MARGIN, TIMED_ROUNDS, ModelStack

M = 4


def scripted_stack(monkeypatch, batched: list[float], one_model: list[float]) -> tuple:
    """A stack of M small MLPs whose batched steps take ``batched`` seconds in turn and whose
    single-model steps ``one_model`` (looped counts M of those); returns it and the calls."""
    monkeypatch.setattr(stack_module, "_CHOSEN", {})
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(M)]
    stack = ModelStack(models, CPU)
    calls = {"batched": 0, "one": 0}
    steps, ones = iter(batched), iter(one_model)

    def timed_step(x, loss):
        calls["batched"] += 1
        return next(steps)

    def timed_one(x, loss):
        calls["one"] += 1
        return next(ones)

    monkeypatch.setattr(stack, "_timed_step", timed_step)
    monkeypatch.setattr(stack, "_timed_one", timed_one)
    return stack, calls


def prepare(stack: ModelStack) -> None:
    x = torch.randn(M, 8, 6)
    stack.prepare(x, lambda out: out.square().mean())


def test_a_clear_win_decides_after_the_first_rounds(monkeypatch):
    low = TIMED_ROUNDS[0]
    # batched: the runnable check and the warm-up, then the rounds; looped: a warm-up, rounds
    stack, calls = scripted_stack(monkeypatch, [1.0, 1.0] + [0.5 * M] * 8, [1.0] * 9)
    prepare(stack)
    assert stack.strategy == "stacked"
    assert calls["one"] == 1 + low and calls["batched"] == 2 + low


@pytest.mark.parametrize(
    ("ratio", "kept"),
    [((MARGIN + CLEAR[1]) / 2, "looped"), ((CLEAR[0] + MARGIN) / 2, "stacked")],
)
def test_a_close_call_is_timed_longer_and_a_tie_goes_to_looped(monkeypatch, ratio, kept):
    high = TIMED_ROUNDS[1]
    stack, calls = scripted_stack(
        monkeypatch, [9.0, 9.0] + [ratio * M] * high, [9.0] + [1.0] * high
    )
    prepare(stack)
    assert stack.strategy == kept
    assert calls["one"] == 1 + high  # every round: the ratio stayed inside CLEAR


def test_slower_batching_keeps_looped_after_the_first_rounds(monkeypatch):
    low = TIMED_ROUNDS[0]
    stack, calls = scripted_stack(monkeypatch, [1.0, 1.0] + [2.0 * M] * 8, [1.0] + [1.0] * 8)
    prepare(stack)
    assert stack.strategy == "looped" and calls["one"] == 1 + low


def test_one_noisy_round_does_not_decide(monkeypatch):
    """The best of each strategy counts: a slow batched round (a neighbour's burst) among
    fast ones leaves the batched strategy ahead."""
    steps = [1.0, 1.0, 3.0 * M, 0.7 * M, 0.7 * M, 0.7 * M]
    stack, _ = scripted_stack(monkeypatch, steps + [0.7 * M] * 5, [1.0] * 9)
    prepare(stack)
    assert stack.strategy == "stacked"
