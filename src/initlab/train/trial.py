"""Which strategy a :class:`~initlab.train.stack.ModelStack` runs: the batched one only if it
runs the model, gives the model's own outputs, and (``auto``) is faster than ``looped``.

:func:`prepare` runs once before training, on the first minibatch ``x`` (``[M, b, ...]``)
and the training loss ``loss(out)``:

1. **Runs**: one forward and backward of ``stacked`` (else ``vmap``; a stacked forward
   that refuses on the data, ``x[h > 0]``, leaves its reason in
   :attr:`ModelStack.unstackable`); a model ``vmap`` cannot run (data-dependent control
   flow, ``.item()`` in ``forward``...) is trained ``looped``, and :attr:`ModelStack.note`
   says why in one line.
2. **Same outputs**: every model's batched output on its minibatch against its own module's
   (train mode, no gradients; skipped when the model has active dropout, whose masks differ
   by construction; for ``stacked`` also in eval mode, where torch may run a module
   otherwise). The tolerance is loose on purpose: it catches models mixed up or
   computed wrongly (differences of the order of the outputs), not rounding. A mismatch
   trains ``looped`` with a note under ``auto`` and is an error for a forced strategy.
3. **Faster** (``auto`` only): interleaved timed steps of both strategies, each as it
   trains (``looped``: every model in turn; module constants), the batched one kept only if
   its best step takes under :data:`MARGIN` times ``looped``'s. ``looped`` was once timed
   on its first model and counted M times: the loss then ran on all M models' outputs M
   times over, and one model's weights stayed in the caches, so the estimate was off both
   ways (8 small attention blocks, d = 64: 65-70 ms estimated against 53-55 ms measured,
   and ``auto`` kept ``stacked``, which trained 8% slower). A model that cannot be stacked
   and trains ``looped`` because ``vmap`` was no faster gets a note naming what blocks
   stacking (:attr:`ModelStack.unstackable`): it trained one at a time, without a word.

Parameters, gradients, buffers and the RNG are left as they were. The outcome is remembered
for the process by the architecture (its ``repr``), M, the input shape, device and thread
count, so the chunks of a sweep pay for one trial.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from initlab.errors import first_line
from initlab.train.layers import NotStackable, restore
from initlab.train.stack import (
    BATCHED,
    LOOPED,
    STACKED,
    VMAP,
    ModelStack,
    rng_devices,
    synchronize,
)

TIMED_ROUNDS = (3, 8)
"""Interleaved timed steps per strategy (the best counts): at least the first, at most the
second, more only while the call is close (:data:`CLEAR`). On a 2-core AMD EPYC whose
neighbours share its caches, one ResNet step took 71-125 ms from one round to the next: with
3 rounds the trial's ratio of 8 small ResNets went 0.87-1.42, with 7 it stayed at 0.88-0.92
(2026-12-03)."""
CLEAR = (0.8, 1.0)
"""A best-step ratio batched / looped outside this range decides after the first rounds."""
MARGIN = 0.95
"""The batched strategy is kept only if its best step takes under ``MARGIN`` times looped's:
looped costs what a plain loop costs, so a tie goes its way. The trial times forward and
backward only (not the optimizer or the evaluation); 5% rather than the 10% it was, with
which 8 small ResNets (trial ratio 0.88-0.92, looped estimated from one model) kept looped
though stacked trains in 0.77-0.83 of its time."""

LossFn = Callable[[Tensor], Tensor]
_CHOSEN: dict[tuple, tuple[str, str]] = {}
"""Outcomes of :func:`prepare` in this process."""


def prepare(stack: ModelStack, x: Tensor, loss: LossFn) -> None:
    """Check, and for ``auto`` choose, the strategy of ``stack`` (module docstring)."""
    if stack.strategy == LOOPED:
        return
    key = _trial_key(stack, x)
    if key in _CHOSEN:
        strategy, stack.note = _CHOSEN[key]
        stack.use(strategy)
        return
    saved = {k: v.clone() for k, v in stack.buffers.items()}
    try:
        with torch.random.fork_rng(devices=rng_devices(stack.device)), stack.streams.kept():
            _choose(stack, x, loss)
    finally:
        for k, v in stack.buffers.items():
            v.copy_(saved[k])
        stack.zero_grad()
    _CHOSEN[key] = (stack.strategy, stack.note)


def _trial_key(stack: ModelStack, x: Tensor) -> tuple:
    kind = type(stack.template)
    model = (kind.__module__, kind.__qualname__, repr(restore(stack.template)))
    shape = (stack.size, tuple(x.shape), x.dtype, str(stack.device))
    return (*model, *shape, torch.get_num_threads(), stack.auto, stack.strategy, stack.prefer)


def _choose(stack: ModelStack, x: Tensor, loss: LossFn) -> None:
    batched = runnable(stack, x, loss)  # also the batched strategy's warm-up
    if batched is None or not verified(stack, x) or not stack.auto:
        return
    if stack.prefer in (batched, LOOPED, BATCHED):  # resumed as it ran, or pinned
        stack.use(batched if stack.prefer == BATCHED else stack.prefer)
        return
    best = {batched: math.inf, LOOPED: math.inf}
    with trial_threads(stack.device):
        timed_step(stack, x, loss)  # warm-up at this thread count
        stack.use(LOOPED)
        timed_step(stack, x, loss)
        for done in range(1, TIMED_ROUNDS[1] + 1):
            for strategy in (batched, LOOPED):
                stack.use(strategy)
                best[strategy] = min(best[strategy], timed_step(stack, x, loss))
            ratio = best[batched] / max(best[LOOPED], 1e-9)
            if done >= TIMED_ROUNDS[0] and not CLEAR[0] <= ratio <= CLEAR[1]:
                break
    stack.use(batched if best[batched] < MARGIN * best[LOOPED] else LOOPED)
    if stack.looped and stack.unstackable:  # vmap ran, no faster: say what blocks stacking
        stack.note = (
            f"models trained one at a time: they cannot be stacked ({stack.unstackable}) and "
            "torch.func.vmap was no faster"
        )


def runnable(stack: ModelStack, x: Tensor, loss: LossFn) -> str | None:
    """The batched strategy that runs on ``x`` (stacked, else vmap), or ``None`` (the stack
    then runs looped, with a note)."""
    if stack.strategy == STACKED:
        try:
            timed_step(stack, x, loss)
            return STACKED
        except Exception as exc:  # refused on the first minibatch (x[h > 0], need_weights)
            stack.unstackable = str(exc) if isinstance(exc, NotStackable) else first_line(exc)
            stack.use(VMAP)
    try:
        timed_step(stack, x, loss)
    except Exception as exc:
        reason = first_line(exc)
        reason = reason.split(". ")[0].rstrip(".")[:160]
        stack.use(LOOPED)
        stack.note = (
            f"models trained one at a time (torch.func.vmap cannot run this model: {reason})"
        )
        return None
    return VMAP


def verified(stack: ModelStack, x: Tensor) -> bool:
    """Whether the batched strategy gives every model's own outputs on ``x`` (step 2 of the
    module docstring), in train mode (unless dropout is active) and, for ``stacked``, in eval
    mode too: torch runs some modules otherwise there (an ``nn.TransformerEncoder`` with a
    padding mask takes its nested-tensor fast path, which zeroes the padded positions), and
    a stack that matched in training only evaluated every model wrongly. If not, the stack
    runs looped with a note (``auto``) or this raises ``ValueError`` (a forced strategy)."""
    batched = stack.strategy
    modes = [] if has_active_dropout(stack.template) else [True]
    for train in modes + ([False] if batched == STACKED else []):
        with torch.no_grad():
            got = stack.forward(x, train=train)
            stack.use(LOOPED)
            want = stack.forward(x, train=train)
        if (problem := output_mismatch(got, want)) is not None:
            where = "" if train else " in eval mode"
            message = (
                f"the {batched} strategy does not reproduce this model's outputs{where} ({problem})"
            )
            if not stack.auto:
                raise ValueError(f"{message}; use strategy 'auto' or 'looped'")
            stack.note = f"models trained one at a time ({message})"
            return False
        stack.use(batched)
    return True


def output_mismatch(got: Tensor, want: Tensor) -> str | None:
    """Why ``got`` is not ``want`` up to rounding, or ``None``: the same non-finite entries,
    and the largest difference of the finite ones at most 1e-3 (fp32, fp64) or 0.1 (16-bit
    dtypes) of their largest magnitude."""
    if got.shape != want.shape:
        return f"output shape {tuple(got.shape)} instead of {tuple(want.shape)}"
    finite = torch.isfinite(want)
    if not torch.equal(finite, torch.isfinite(got)):
        return "non-finite outputs in other places"
    g, w = got[finite].double(), want[finite].double()
    if w.numel() == 0:
        return None
    scale, err = w.abs().max().item(), (g - w).abs().max().item()
    relative = 1e-3 if torch.finfo(want.dtype).eps < 1e-4 else 0.1
    if err <= relative * scale:
        return None
    return f"largest difference {err:.3g} at output scale {scale:.3g}"


def has_active_dropout(module: nn.Module) -> bool:
    """Whether a forward in train mode draws random masks (dropout modules with p > 0,
    attention with dropout)."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0:
            return True
        if isinstance(sub, nn.MultiheadAttention) and sub.dropout > 0:
            return True
    return False


def timed_step(stack: ModelStack, x: Tensor, loss: LossFn) -> float:
    """Seconds of one forward and backward pass of the stack on ``x`` (gradients discarded)."""
    synchronize(stack.device)
    start = clock(stack.device)
    loss(stack.forward(x, train=True)).backward()
    synchronize(stack.device)
    stack.zero_grad()
    return clock(stack.device) - start


def clock(device: torch.device) -> float:
    """Seconds for the trial: this process's CPU time on the CPU (other jobs on a shared
    machine do not count, so one preempted step cannot decide), wall time on accelerators
    (after :func:`~initlab.train.stack.synchronize`)."""
    return time.process_time() if device.type == "cpu" else time.perf_counter()


@contextlib.contextmanager
def trial_threads(device: torch.device) -> Iterator[None]:
    """The trial's thread count: one on the CPU. Process CPU time counts every thread, so at
    two threads a batched step whose large products use both threads was charged up to
    twice its wall time against looped's small ones, which mostly do not: ``auto`` kept
    ``looped`` for 7 seed MLPs at 2 threads (41 s for compare's 21 models instead of 11 s).
    Batching gains at least as much with more threads as with one."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
