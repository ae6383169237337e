"""``strategy="auto"``: keep the batched strategy of a stack only where it is faster.

A :class:`~initlab.train.stack.ModelStack` of M > 1 models takes ``"stacked"`` where the
model allows it, otherwise ``"vmap"``; :class:`StrategyTrial` then decides whether that
batched strategy beats ``"looped"`` (the models one after the other, what a plain loop
costs) on this model, input shape, device and thread count:

1. :meth:`StrategyTrial.prepare`, before training, on the first minibatch: one batched
   forward and backward (it checks the strategy runs at all: a model ``vmap`` cannot run
   falls back to ``looped`` with a one-line :attr:`ModelStack.note`; it is also the
   warm-up), then ``looped`` timed on the first model alone, ``1 + TIMED_ROUNDS`` times,
   and counted M times (best of the rounds after the warm-up). Gradients, buffers and the
   RNG are restored: nothing of this trains.
2. The first :data:`TIMED_ROUNDS` **real training steps** of the batched strategy are the
   batched timings (:meth:`StrategyTrial.timer` around the forward and backward,
   :meth:`StrategyTrial.observe` after the update): they train, so the trial wastes one
   batched step and a few single-model ones instead of six batched steps (on the small
   ResNet's one-epoch benchmark the old trial was 14% of a stack's run).
3. After them the batched strategy is kept only if its best step took under
   :data:`MARGIN` times looped's; otherwise the stack runs ``looped`` from the next step
   on (both share the tensors and the optimizer state, so the switch is seamless).

Every timing is process CPU time at one thread on the CPU (other jobs on a shared machine
do not count; at two threads CPU time would charge a batched step's two busy threads
against looped's mostly single-threaded small products), wall time on accelerators. The
outcome is remembered in the process (:data:`_CHOSEN`) by the architecture (its ``repr``),
M, the input shape, device and thread count, so the chunks of a sweep pay for one trial.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from initlab.train.layers import restore
from initlab.train.stack import LOOPED, STACKED, VMAP, ModelStack, rng_devices, synchronize

TIMED_ROUNDS = 3
"""Timed rounds per strategy (the best counts): single-model ``looped`` steps before
training, and the first real training steps of the batched strategy."""
MARGIN = 0.9
"""The batched strategy is kept only if its best step takes under ``MARGIN`` times looped's:
looped costs what a plain loop costs, so a close or noisy call goes its way."""

LossFn = Callable[[Tensor], Tensor]
_CHOSEN: dict[tuple, tuple[str, str]] = {}
"""Outcomes of finished trials in this process (see the module docstring)."""


class StrategyTrial:
    """The ``auto`` decision of one stack (module docstring): :meth:`prepare` before
    training, :meth:`timer` and :meth:`observe` around its first training steps."""

    def __init__(self, stack: ModelStack) -> None:
        self.stack = stack
        self.pending_steps = 0
        """Training steps still to be timed (:meth:`observe`); 0: decided or no trial."""
        self.looped_seconds = self.batched_seconds = math.inf
        self.key: tuple = ()

    def prepare(self, x: Tensor, loss: LossFn) -> None:
        """Step 1 of the module docstring on the minibatch ``x`` (``[M, b, ...]``) and
        ``loss(out)``; a remembered outcome is reused at once."""
        stack = self.stack
        if stack.strategy == LOOPED:
            return
        self.key = trial_key(stack, x)
        if self.key in _CHOSEN:
            strategy, stack.note = _CHOSEN[self.key]
            stack.use(strategy)
            return
        saved = {k: v.clone() for k, v in stack.buffers.items()}
        try:
            with torch.random.fork_rng(devices=rng_devices(stack.device)):
                self._prepare(x, loss)
        finally:
            for k, v in stack.buffers.items():
                v.copy_(saved[k])
            stack.zero_grad()
        if not self.pending_steps:
            _CHOSEN[self.key] = (stack.strategy, stack.note)

    def _prepare(self, x: Tensor, loss: LossFn) -> None:
        stack = self.stack
        batched = runnable(stack, x, loss)
        if batched is None or not stack.auto:
            return
        with trial_threads(stack.device):
            stack.use(LOOPED)
            rounds = [timed_one(stack, x, loss) for _ in range(TIMED_ROUNDS + 1)]  # warm-up
            stack.use(batched)
        self.looped_seconds = stack.size * min(rounds[1:])
        self.batched_seconds = math.inf
        self.pending_steps = TIMED_ROUNDS

    @contextlib.contextmanager
    def timer(self) -> Iterator[list[float]]:
        """Time the enclosed training step (forward and backward) while the trial is
        pending, at one thread on the CPU as ``looped`` was; yields a list whose one element
        holds the seconds afterwards (NaN when no trial is pending: nothing changes)."""
        seconds = [math.nan]
        if not self.pending_steps:
            yield seconds
            return
        device = self.stack.device
        with trial_threads(device):
            synchronize(device)
            start = clock(device)
            yield seconds
            synchronize(device)
            seconds[0] = clock(device) - start

    def observe(self, seconds: float) -> None:
        """Count one timed training step of the batched strategy (:meth:`timer`); call it
        after the step's update, since switching strategy discards gradients. The last one
        decides (step 3 of the module docstring) and remembers the outcome."""
        if not self.pending_steps or math.isnan(seconds):
            return
        self.batched_seconds = min(self.batched_seconds, seconds)
        self.pending_steps -= 1
        if self.pending_steps:
            return
        if not self.batched_seconds < MARGIN * self.looped_seconds:
            self.stack.use(LOOPED)
        _CHOSEN[self.key] = (self.stack.strategy, self.stack.note)


def trial_key(stack: ModelStack, x: Tensor) -> tuple:
    """What a trial's outcome depends on: architecture, M, input, device, threads."""
    kind = type(stack.template)
    model = (kind.__module__, kind.__qualname__, repr(restore(stack.template)))
    shape = (stack.size, tuple(x.shape), x.dtype, str(stack.device))
    return (*model, *shape, torch.get_num_threads(), stack.auto, stack.strategy)


def runnable(stack: ModelStack, x: Tensor, loss: LossFn) -> str | None:
    """The batched strategy that runs on ``x`` (stacked, else vmap), or ``None`` (the stack
    then runs ``looped`` and its note says why)."""
    if stack.strategy == STACKED:
        try:
            trial_step(stack, x, loss)
            return STACKED
        except Exception:
            stack.use(VMAP)
    try:
        trial_step(stack, x, loss)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        reason = reason.split(". ")[0].rstrip(".")[:160]
        stack.use(LOOPED)
        stack.note = (
            f"models trained one at a time (torch.func.vmap cannot run this model: {reason})"
        )
        return None
    return VMAP


def trial_step(stack: ModelStack, x: Tensor, loss: LossFn) -> None:
    """One forward and backward pass of every model on ``x``; the gradients discarded."""
    loss(stack.forward(x, train=True)).backward()
    stack.zero_grad()


def timed_one(stack: ModelStack, x: Tensor, loss: LossFn) -> float:
    """Seconds of the first model's forward and backward alone (``looped`` costs M times
    that: its models run one after the other)."""
    synchronize(stack.device)
    start = clock(stack.device)
    out = stack.modules()[0](x[0])
    loss(out.unsqueeze(0).expand(stack.size, *out.shape)).backward()
    synchronize(stack.device)
    stack.zero_grad()
    return clock(stack.device) - start


def clock(device: torch.device) -> float:
    """Seconds for the strategy trial: this process's CPU time on the CPU (other jobs on a
    shared machine do not count, so one preempted step cannot decide), wall time on
    accelerators (after :func:`synchronize`)."""
    return time.process_time() if device.type == "cpu" else time.perf_counter()


@contextlib.contextmanager
def trial_threads(device: torch.device) -> Iterator[None]:
    """The strategy trial's thread count: one on the CPU. Process CPU time counts every
    thread, so at two threads a batched step whose large products use both threads was
    charged up to twice its wall time against looped's small ones, which mostly do not:
    ``auto`` kept ``looped`` for 7 seed MLPs at 2 threads (41 s for compare's 21 models
    instead of 11 s). Batching gains at least as much with more threads as with one."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
