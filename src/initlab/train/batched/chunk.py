"""Train one chunk of same-shaped MLPs together: the loop, divergence, records, timing.

Step s of epoch e, for every live model m at once:

1. ``idx[m] = perm_m[s*B : (s+1)*B]`` where ``perm_m = randperm(n, generator=data_m)`` is
   drawn at the start of epoch e from model m's own ``"data"`` stream — the batch model m
   sees when it trains alone (the epoch's indices are laid out ``[step, model, example]``
   once, so each step's index block is contiguous);
2. gather ``x[idx]`` for all models with one ``index_select``; forward; per-model mean
   cross-entropy;
3. one vectorized check of the M losses (their sum; per model only when the sum is not
   finite) and one sync: a model whose loss is NaN/inf is *diverged* at (e, s): its state
   is saved as it is (before this step's update, like the single engine) and it leaves the
   chunk after the step (its slots are compacted away, so it can neither update again nor
   touch the others — no operation reduces over the model axis);
4. backward + optimizer update (fused where possible).

Timing is shared fairly: between two membership changes the wall time is split equally
among the models then in the chunk; a model's ``train_seconds`` is its share of training
and validation (not of the final test evaluation, nor of ``on_epoch`` callbacks), and an
epoch record's ``seconds`` is its share of that epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.train.batched import functional as fn
from initlab.train.batched.evaluate import evaluate_stack
from initlab.train.batched.network import backward, forward
from initlab.train.batched.optim import StackedOptimizer
from initlab.train.batched.stack import StackedMLP, stack_configs
from initlab.train.batched.tracking import BatchedTracker, LayerStats
from initlab.train.result import DIVERGED, RunResult, final_status
from initlab.train.seeding import make_generator

GroupEpochCallback = Callable[[RunConfig, dict[str, float]], None]


class ChunkRun:
    """The state of one chunk while it trains (see the module docstring)."""

    def __init__(self, configs: Sequence[RunConfig], data: Dataset) -> None:
        self.configs = list(configs)
        self.data = data
        self.net: StackedMLP = stack_configs(configs, data)
        self.opt = StackedOptimizer(configs, self.net.params)
        self.ids = list(range(len(configs)))
        self.results = [RunResult(config=c, status="running") for c in configs]
        self.states: list[dict[str, Tensor] | None] = [None] * len(configs)
        self.data_gens = [make_generator(c.seed, "data") for c in configs]
        self.drop_gens = [make_generator(c.seed, "dropout") for c in configs]
        self.x = data.x_train.reshape(data.num_train, -1)
        self.y = data.y_train
        self.seconds = [0.0] * len(configs)
        self.clock = time.perf_counter()
        self.order = self.tail = torch.empty(0, dtype=torch.long)
        self.loss_sum = torch.zeros(0, dtype=torch.float64)
        self.correct = torch.zeros(0, dtype=torch.long)
        self.global_step = 0

    @property
    def size(self) -> int:
        """Models still training."""
        return len(self.ids)

    def charge(self) -> None:
        """Split the wall time since the last charge equally among the live models."""
        now = time.perf_counter()
        if self.ids:
            share = (now - self.clock) / len(self.ids)
            for i in self.ids:
                self.seconds[i] += share
        self.clock = now

    def track(self, tracker: BatchedTracker | None, epoch: int) -> None:
        """Append the live models' per-layer statistics at this moment to their results."""
        if tracker is not None:
            rows = tracker.rows(self.net, epoch, self.global_step)
            for slot, i in enumerate(self.ids):
                self.results[i].layer_stats.extend(rows[slot])

    def train_epoch(self, epoch: int, tracker: BatchedTracker | None = None) -> None:
        """One pass over the training data for every live model (tracking every N steps)."""
        every = tracker.per_step if tracker is not None else 0
        n, batch = self.data.num_train, self.configs[0].batch_size
        perms = torch.stack([torch.randperm(n, generator=self.data_gens[i]) for i in self.ids])
        full = n // batch  # full batches as [step, model, example]: each step's slice is contiguous
        self.order = perms[:, : full * batch].reshape(self.size, full, batch).transpose(0, 1)
        self.order = self.order.contiguous()
        self.tail = perms[:, full * batch :].contiguous()
        self.loss_sum = torch.zeros(self.size, dtype=torch.float64)
        self.correct = torch.zeros(self.size, dtype=torch.long)
        for step in range(full + (1 if n % batch else 0)):
            self.step(self.order[step] if step < full else self.tail, epoch, step)
            self.global_step += 1
            if not self.ids:
                return
            if every and self.global_step % every == 0:
                self.track(tracker, epoch)

    def step(self, idx: Tensor, epoch: int, step: int) -> None:
        """One optimizer step of every live model on its own minibatch ``idx[m]``."""
        m, b = idx.shape
        flat = idx.view(-1)
        x = self.x.index_select(0, flat).view(m, b, -1)
        y = self.y.index_select(0, flat).view(m, b)
        trace = forward(self.net, x, train=True, masks=self.draw_masks(b))
        loss, dlogits = fn.cross_entropy(trace.logits, y)
        finite = None
        if not math.isfinite(float(loss.sum())):  # one reduction; per model only if needed
            finite = torch.isfinite(loss)
            self.diverge((~finite).nonzero().flatten().tolist(), epoch, step)
        self.opt.begin_step()
        backward(self.net, trace, dlogits, self.opt)
        self.net.steps += 1
        self.loss_sum.add_(loss, alpha=b)  # float64 += b * loss, as the single engine sums
        self.correct += (trace.logits.argmax(2) == y).sum(1)
        if finite is not None and not bool(finite.all()):
            self.compact(finite.nonzero().flatten())

    def draw_masks(self, b: int) -> list[Tensor | None] | None:
        """Inverted-dropout multipliers ``bernoulli(1 - p) / (1 - p)``, one per hidden block.

        Model m draws from its own ``"dropout"`` stream, block after block, exactly the calls
        the single engine's ``nn.Dropout`` makes: its masks are the single engine's masks.
        """
        p = self.net.dropout
        if p == 0:
            return None
        masks = [torch.empty(self.size, b, w) for w in self.net.widths[1:-1]]
        for slot, i in enumerate(self.ids):
            for mask in masks:
                mask[slot].bernoulli_(1 - p, generator=self.drop_gens[i])
        return [mask.div_(1 - p) for mask in masks]

    def diverge(self, slots: list[int], epoch: int, step: int) -> None:
        """Mark the models in ``slots`` diverged and save their state as it is now."""
        for slot in slots:
            i = self.ids[slot]
            result = self.results[i]
            result.status = DIVERGED
            result.message = f"loss became non-finite at epoch {epoch}, step {step}"
            self.states[i] = {k: v.clone() for k, v in self.net.state_dict(slot).items()}

    def compact(self, keep: Tensor) -> None:
        """Keep only the models in slots ``keep`` (charging the time spent so far first)."""
        self.charge()
        self.net = self.net.select(keep)
        self.opt.select(keep, self.net.params)
        self.order = self.order.index_select(1, keep)
        self.tail = self.tail.index_select(0, keep)
        self.loss_sum = self.loss_sum.index_select(0, keep)
        self.correct = self.correct.index_select(0, keep)
        self.ids = [self.ids[k] for k in keep.tolist()]

    def end_epoch(self, epoch: int, started: list[float], on_epoch: GroupEpochCallback | None):
        """Validate every live model, append its epoch record, call ``on_epoch`` in order."""
        val_loss, val_acc = evaluate_stack(self.net, self.data.x_val, self.data.y_val)
        self.charge()
        n = self.data.num_train
        train_loss = (self.loss_sum / n).tolist()
        correct = self.correct.tolist()
        for slot, i in enumerate(self.ids):
            record = dict(
                epoch=epoch,
                train_loss=train_loss[slot],
                train_accuracy=correct[slot] / n,
                val_loss=val_loss[slot],
                val_accuracy=val_acc[slot],
                seconds=self.seconds[i] - started[i],
            )
            self.results[i].epochs.append(record)
            if on_epoch is not None:
                on_epoch(self.configs[i], record)
        self.clock = time.perf_counter()  # callbacks are not charged to the models

    def finish(self) -> list[RunResult]:
        """Test the live models, set every result's status and time; return the results."""
        self.charge()
        if self.ids:
            test_loss, test_acc = evaluate_stack(self.net, self.data.x_test, self.data.y_test)
            for slot, i in enumerate(self.ids):
                result = self.results[i]
                result.test_loss, result.test_accuracy = test_loss[slot], test_acc[slot]
                result.status = final_status(result.test_accuracy, self.data.num_classes)
                self.states[i] = self.net.state_dict(slot)
        for i, result in enumerate(self.results):
            result.train_seconds = self.seconds[i]
            if result.status == DIVERGED:
                result.test_loss = result.test_accuracy = math.nan
        return self.results


def run_chunk(
    configs: Sequence[RunConfig],
    data: Dataset,
    on_epoch: GroupEpochCallback | None = None,
    stats: LayerStats | None = None,
) -> ChunkRun:
    """Train ``configs`` (one batchable group, small enough for memory) to the end.

    Per-layer statistics follow the configs' ``track`` (step 0, then every epoch or every N
    steps), computed by ``stats`` (default: the probe's metrics, see :mod:`.tracking`).
    """
    run = ChunkRun(configs, data)
    track = configs[0].track
    tracker = None if track == "off" else BatchedTracker(track, data, stats)
    run.track(tracker, 0)
    run.clock = time.perf_counter()
    for epoch in range(1, configs[0].epochs + 1):
        started = list(run.seconds)
        run.train_epoch(epoch, tracker)
        if not run.ids:
            break
        if track == "epoch":
            run.track(tracker, epoch)
        run.end_epoch(epoch, started, on_epoch)
    run.finish()
    return run
