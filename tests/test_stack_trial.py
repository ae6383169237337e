"""``auto``'s strategy trial (initlab.train.trial.prepare) on scripted step times:
how many rounds it times and what it keeps. The real timings are measured, not asserted
(benchmarks/README.md); here the clock is injected so every decision is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.train import trial
from initlab.train.schedule import CPU
from initlab.train.stack import ModelStack
from initlab.train.trial import CLEAR, MARGIN, TIMED_ROUNDS

M = 4


def scripted_stack(monkeypatch, batched: list[float], looped: list[float]) -> tuple:
    """A stack of M small MLPs whose timed steps take ``batched`` seconds in turn under the
    batched strategy and ``looped`` under looped; returns it and the calls of each."""
    monkeypatch.setattr(trial, "_CHOSEN", {})
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(M)]
    stack = ModelStack(models, CPU)
    calls = {"batched": 0, "looped": 0}
    times = {"batched": iter(batched), "looped": iter(looped)}

    def timed_step(stack, x, loss):
        kind = "looped" if stack.strategy == "looped" else "batched"
        calls[kind] += 1
        return next(times[kind])

    monkeypatch.setattr(trial, "timed_step", timed_step)
    return stack, calls


def prepare(stack: ModelStack) -> None:
    x = torch.randn(M, 8, 6)
    trial.prepare(stack, x, lambda out: out.square().mean())


def test_a_clear_win_decides_after_the_first_rounds(monkeypatch):
    low = TIMED_ROUNDS[0]
    # batched: the runnable check and a warm-up, then the rounds; looped: a warm-up, rounds
    stack, calls = scripted_stack(monkeypatch, [9.0, 9.0] + [0.5] * 8, [9.0] + [1.0] * 8)
    prepare(stack)
    assert stack.strategy == "stacked"
    assert calls == {"batched": 2 + low, "looped": 1 + low}


@pytest.mark.parametrize(
    ("ratio", "kept"),
    [((MARGIN + CLEAR[1]) / 2, "looped"), ((CLEAR[0] + MARGIN) / 2, "stacked")],
)
def test_a_close_call_is_timed_longer_and_a_tie_goes_to_looped(monkeypatch, ratio, kept):
    high = TIMED_ROUNDS[1]
    stack, calls = scripted_stack(monkeypatch, [9.0, 9.0] + [ratio] * high, [9.0] + [1.0] * high)
    prepare(stack)
    assert stack.strategy == kept
    assert calls["looped"] == 1 + high  # every round: the ratio stayed inside CLEAR


def test_slower_batching_keeps_looped_after_the_first_rounds(monkeypatch):
    low = TIMED_ROUNDS[0]
    stack, calls = scripted_stack(monkeypatch, [1.0, 1.0] + [2.0] * 8, [1.0] * 9)
    prepare(stack)
    assert stack.strategy == "looped" and calls["looped"] == 1 + low


class Cumulative(nn.Module):
    """Runs under vmap; the stacked strategy has no rule for ``torch.cumsum``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(torch.cumsum(x, 1))


def test_looped_says_what_blocks_stacking_when_vmap_is_no_faster(monkeypatch):
    """The ViT a user wrote trained one at a time without a word: it could not be stacked
    and vmap was no faster. Now the note names why; a stackable model that is merely
    faster looped says nothing (the engine chose the faster way)."""
    monkeypatch.setattr(trial, "_CHOSEN", {})
    stack = ModelStack([Cumulative() for _ in range(M)], CPU)
    times = {"vmap": iter([1.0, 1.0] + [1.0] * 8), "looped": iter([1.0] * 9)}
    monkeypatch.setattr(trial, "timed_step", lambda st, x, loss: next(times[st.strategy]))
    prepare(stack)
    assert stack.strategy == "looped"
    assert stack.note == (
        "models trained one at a time: they cannot be stacked (forward calls torch.cumsum, "
        "which the stacked strategy has no rule for) and torch.func.vmap was no faster"
    )
    slower, _ = scripted_stack(monkeypatch, [1.0, 1.0] + [2.0] * 8, [1.0] * 9)
    prepare(slower)
    assert slower.strategy == "looped" and slower.note == ""


class ListIndex(nn.Module):
    """Builds a stacked graph, whose first forward refuses ``x[:, [0, 2]]`` (an index list
    would pick across models); vmap runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x)[:, [0, 2]]


def test_looped_says_what_the_stacked_forward_refused_at_its_first_step(monkeypatch):
    monkeypatch.setattr(trial, "_CHOSEN", {})
    stack = ModelStack([ListIndex() for _ in range(M)], CPU)
    assert stack.strategy == "stacked"
    real, times = trial.timed_step, {"vmap": iter([1.0] * 10), "looped": iter([1.0] * 9)}

    def timed_step(st, x, loss):
        return real(st, x, loss) if st.strategy == "stacked" else next(times[st.strategy])

    monkeypatch.setattr(trial, "timed_step", timed_step)
    prepare(stack)
    assert stack.strategy == "looped"
    assert stack.note == (
        "models trained one at a time: they cannot be stacked (forward indexes a tensor with a "
        "tensor or a list, which the stacked strategy has no rule for) and torch.func.vmap was "
        "no faster"
    )


def test_one_noisy_round_does_not_decide(monkeypatch):
    """The best of each strategy counts: a slow batched round (a neighbour's burst) among
    fast ones leaves the batched strategy ahead."""
    stack, _ = scripted_stack(monkeypatch, [1.0, 1.0, 3.0] + [0.7] * 7, [1.0] * 9)
    prepare(stack)
    assert stack.strategy == "stacked"


# -- the batched strategy must reproduce each model's own outputs ------------------------


def mixed_up_stack(strategy: str) -> ModelStack:
    """Stacked MLPs whose first stacked layer reads the models' weights in reverse order: a
    batched computation that runs but gives model m model M-1-m's layer."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)) for _ in range(M)]
    stack = ModelStack(models, CPU, strategy)
    first = next(mod for mod in stack._graph.modules() if type(mod).__name__ == "StackedLinear")
    first.weight = first.weight.flip(0)
    return stack


def test_auto_trains_one_at_a_time_when_batching_changes_the_outputs(monkeypatch):
    monkeypatch.setattr(trial, "_CHOSEN", {})
    stack = mixed_up_stack("auto")
    prepare(stack)
    assert stack.strategy == "looped"
    assert "does not reproduce this model's outputs" in stack.note
    assert "largest difference" in stack.note


def test_a_forced_strategy_that_changes_the_outputs_is_an_error(monkeypatch):
    monkeypatch.setattr(trial, "_CHOSEN", {})
    stack = mixed_up_stack("stacked")
    with pytest.raises(ValueError, match="stacked strategy does not reproduce"):
        prepare(stack)


def test_faithful_stacks_pass_the_check(monkeypatch):
    """An MLP with batch norm (per-model batch statistics) stays stacked when forced, and
    the check leaves its running statistics as they were."""
    monkeypatch.setattr(trial, "_CHOSEN", {})
    torch.manual_seed(0)
    models = [
        nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
        for _ in range(M)
    ]
    stack = ModelStack(models, CPU, "stacked")
    before = stack.buffers["1.running_mean"].clone()
    prepare(stack)
    assert stack.strategy == "stacked" and stack.note == ""
    assert torch.equal(stack.buffers["1.running_mean"], before)


def test_dropout_skips_the_check():
    assert trial.has_active_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    assert not trial.has_active_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)))
    attention = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    assert not trial.has_active_dropout(attention)
    assert trial.has_active_dropout(nn.MultiheadAttention(8, 2, dropout=0.2))


def test_output_mismatch_tells_rounding_from_a_different_model():
    torch.manual_seed(0)
    want = torch.randn(4, 32, 10)
    eps = torch.finfo(torch.float32).eps
    assert trial.output_mismatch(want * (1 + 64 * eps), want) is None  # rounding
    assert "largest difference" in trial.output_mismatch(want.flip(0), want)
    assert "shape" in trial.output_mismatch(want[:, :31], want)
    nan = want.clone()
    nan[0, 0, 0] = float("nan")
    assert trial.output_mismatch(nan, nan.clone()) is None  # the same non-finite places
    assert "non-finite" in trial.output_mismatch(nan, want)
    half = want.bfloat16()
    assert trial.output_mismatch(half, (want * (1 + 2**-8)).bfloat16()) is None


# -- INITLAB_STRATEGY pins the choice: no timing, the same numbers on a busy machine -------


@pytest.mark.parametrize(("pinned", "kept"), [("batched", "stacked"), ("looped", "looped")])
def test_a_pinned_strategy_is_taken_untimed_whatever_the_clock_says(monkeypatch, pinned, kept):
    # the clock says the other way: batched 10x slower, or 10x faster
    slow = [9.0, 9.0] + ([10.0] if pinned == "batched" else [0.1]) * 8
    stack, calls = scripted_stack(monkeypatch, slow, [9.0] + [1.0] * 8)
    stack.prefer = pinned
    prepare(stack)
    assert stack.strategy == kept
    assert calls == {"batched": 1, "looped": 0}  # the runnable check only: nothing timed


def test_the_variable_is_read_and_checked(monkeypatch):
    from initlab.errors import InitlabError
    from initlab.train.stack import preferred_strategy

    for value, preferred in (
        ("", ""),
        ("auto", ""),
        (" Batched ", "batched"),
        ("looped", "looped"),
    ):
        monkeypatch.setenv("INITLAB_STRATEGY", value)
        assert preferred_strategy() == preferred
    monkeypatch.setenv("INITLAB_STRATEGY", "stacked")
    with pytest.raises(InitlabError, match=r"give auto .* batched .* or looped"):
        preferred_strategy()


def test_compare_trains_the_pinned_strategy(monkeypatch):
    import initlab

    monkeypatch.setattr(trial, "_CHOSEN", {})
    monkeypatch.setenv("INITLAB_STRATEGY", "looped")
    results = initlab.compare(["he_normal", "glorot_uniform"], seeds=2, data="digits",
                              hidden=(16,), epochs=1)  # fmt: skip
    assert set(results.runs["engine"]) == {"batched/looped"}


class PaddedEncoder(nn.Module):
    """Token ids with padding (0) through an ``nn.TransformerEncoder`` given the padding mask:
    in eval mode torch takes its nested-tensor fast path, which zeroes the padded positions
    that the mean then pools."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(16, 3)

    def forward(self, idx):
        return self.head(self.encoder(self.embed(idx), src_key_padding_mask=idx == 0).mean(1))


def test_a_stack_that_matches_only_in_training_is_caught_in_eval_mode(monkeypatch):
    """The stacked encoder trained every model right and evaluated each wrongly (test losses
    off by 5%, no word): the check now runs the eval-mode forward too."""
    monkeypatch.setattr(trial, "_CHOSEN", {})
    torch.manual_seed(0)
    idx = torch.randint(1, 11, (M, 6, 8))
    idx[:, :, 5:] = 0  # the last positions are padding
    stack = ModelStack([PaddedEncoder() for _ in range(M)], CPU, "stacked")
    with pytest.raises(ValueError, match="does not reproduce this model's outputs in eval mode"):
        trial.verified(stack, idx)
    auto = ModelStack([PaddedEncoder() for _ in range(M)], CPU)
    trial.prepare(auto, idx, lambda out: out.square().sum())
    assert auto.strategy == "looped" and "in eval mode" in auto.note
