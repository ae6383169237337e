"""The training engine: M >= 1 models of one architecture trained together by autograd.

Step ``s`` of epoch ``e``, for all models at once (:class:`StackTrainer`):

1. ``idx[m] = perm_m[s*B : (s+1)*B]`` where ``perm_m = randperm(n, generator=data_m)`` is
   drawn at the start of epoch ``e`` from model m's own ``"data"`` stream — exactly the batch
   model m sees when it trains alone (the last partial batch included, and joined to the one
   before when it would hold one example: :func:`steps_per_epoch`);
2. ``x[idx]`` for every model with one ``index_select`` (the data sits on the device once);
   forward of all models (:class:`~initlab.train.stack.ModelStack`: stacked leaves, ``vmap``
   or one after the other, as its timed trial on the first minibatch chose), under
   ``torch.autocast`` for ``bf16``;
3. loss = ``sum_m mean-loss_m`` (:func:`initlab.train.tasks.losses`): each model's gradient
   is that of its own mean loss; one ``backward()``;
4. each model's gradient clipped to its own norm bound, and an elementwise update of the
   stacked tensors with per-model hyperparameters, at the schedule's rate
   (:mod:`~initlab.train.schedule`, :class:`~initlab.train.optimizers.StackedOptimizer`).

**Divergence.** A model whose loss becomes NaN/inf is frozen from that step on (its update
masked to zero, see the optimizer) and reported ``diverged`` with the message
``loss became non-finite at epoch E, step S`` (S counted from 0 within the epoch); the other
models continue, unaffected (no operation mixes models). Until a first divergence the host
reads the sum of the losses after every step and the update is unmasked. That read costs
nothing on the CPU, and on a GPU less than masking would: it waits for a forward the host
has just queued, while masking costs about 20 launches per step (seed MLP M = 1 on an
H200: 0.84 s per epoch with the read, 1.29 masked; benchmarks/README.md). After a first
divergence every step is masked on the device; on the CPU the host reads the divergence
record after each step, on accelerators every :data:`CHECK_STEPS` steps and at epoch ends.

**Randomness.** Model m's ``nn.Dropout`` masks come from its own generator, seeded from
its ``"dropout"`` stream (:mod:`initlab.train.dropout_streams`): the masks it gets alone, in
any stack, under ``stacked`` or ``looped``. Other dropout (inside attention, ``F.dropout``,
any dropout under ``vmap``) draws from the global RNG, seeded from the first model's
``"stack dropout"`` stream and forked (the caller's RNG state is untouched); ``vmap`` with
``randomness="different"`` gives every model its own, independent masks.

**Checkpoints.** A sweep's stack saves each run's state after an epoch now and then, and
an interrupted run continues from it (:mod:`initlab.train.checkpoint`).

**Time.** The wall time of the stack is shared equally by its models (``train_seconds``,
each epoch record's ``seconds``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from initlab.data.dataset import first_look
from initlab.notes import note
from initlab.probe.tracking import PROBE_SIZE, Tracker
from initlab.run_status import DIVERGED, SHARE_TASKS
from initlab.train import checkpoint, trial
from initlab.train.device import autocast, device_name
from initlab.train.evaluate import eval_rows, evaluate_stack
from initlab.train.memory import activations_per_example
from initlab.train.optimizers import StackedOptimizer
from initlab.train.result import RunResult, dataset_baseline, final_status
from initlab.train.schedule import Member, StackSettings, clip_per_model, lr_factor, steps_per_epoch
from initlab.train.seeding import derive_seed, make_generator, seed_global
from initlab.train.stack import STACKED, ModelStack, rng_devices
from initlab.train.tasks import Meter, losses, model_loss

CHECK_STEPS = 64
"""On accelerators, steps between two host reads of the divergence record."""

EpochHook = Callable[[int, dict[str, float]], None]
"""``on_epoch(m, record)``: called after each epoch of model ``m`` (its index in the stack)."""
SaveHook = Callable[["StackTrainer", int], None]
"""``saver(trainer, epoch)``: called after each epoch but the last (epoch checkpoints)."""


class StackTrainer:
    """The state of one stack while it trains (see the module docstring)."""

    def __init__(
        self, models: Sequence[nn.Module], data, shared: StackSettings, members: Sequence[Member]
    ):
        self.shared, self.members, self.size = shared, list(members), len(models)
        self.device = shared.device
        dropout_seeds = [derive_seed(m.seed, "dropout") for m in members]
        self.stack = ModelStack(models, self.device, shared.strategy, shared.prefer, dropout_seeds)
        self.opt = StackedOptimizer(
            shared.optimizer,
            list(self.stack.params.values()),
            [m.lr for m in members],
            [m.momentum for m in members],
            [m.weight_decay for m in members],
        )
        self.data = data
        self.x = data.x_train.to(self.device)
        self.y = data.y_train.to(self.device)
        self.eval_sets = {  # on the device once, shared by every model and epoch
            split: (
                getattr(data, f"x_{split}").to(self.device),
                getattr(data, f"y_{split}").to(self.device),
            )
            for split in ("val", "test")
        }
        self.n = int(self.x.shape[0])
        self.steps_per_epoch = steps_per_epoch(self.n, shared.batch_size)
        self.data_gens = [make_generator(m.seed, "data") for m in members]
        where = device_name(self.device)
        self.results = [
            RunResult(config=None, status="running", task=shared.task, device=where)
            for _ in members
        ]
        self.alive = torch.ones(self.size, dtype=torch.bool, device=self.device)
        self.dead_at = torch.full((self.size,), -1, dtype=torch.long, device=self.device)
        self.dead: set[int] = set()
        self.masked = False  # until a first non-finite loss (module docstring)
        self.global_step = 0
        self.start_epoch = 0  # the epoch a resumed stack continues after (checkpoint.restore)
        self.dropout_state: Tensor | None = None
        self.saved_seconds = [0.0] * self.size  # each model's time before it was resumed
        self.seconds = 0.0
        self.trackers = self._trackers()
        wds = self.opt.wds
        self.momentum = members[0].momentum if shared.optimizer == "momentum" else 0.0
        one_momentum = shared.optimizer == "sgd" or len({m.momentum for m in members}) == 1
        self.fusable = (
            shared.optimizer in ("sgd", "momentum")
            and one_momentum
            and not any(wds)
            and shared.precision == "fp32"
            and (shared.lr_schedule, shared.warmup_steps, shared.clip_norm) == ("constant", 0, None)
        )  # the fused update is inside the backward: no per-step rate, nor clipping
        self.fused = False

    def _trackers(self) -> list[Tracker] | None:
        if self.shared.track == "off":
            return None
        x, y = first_look(self.data, PROBE_SIZE)
        x, y = x.to(self.device), y.to(self.device)
        return [
            Tracker(self.shared.track, x, y, model_loss(self.shared.task)) for _ in self.members
        ]

    def track(self, epoch: int) -> None:
        """Record the per-layer statistics of every live model now (a real module each)."""
        if self.trackers is None:
            return
        for m, tracker in enumerate(self.trackers):
            if m not in self.dead:
                tracker.record(self.stack.materialize(m), epoch, self.global_step)

    def batches(self) -> list[Tensor]:
        """This epoch's index blocks ``[M, b]``: every model's own permutation, cut in
        :func:`steps_per_epoch` steps."""
        perms = torch.stack([torch.randperm(self.n, generator=g) for g in self.data_gens])
        blocks = list(perms.to(self.device).split(self.shared.batch_size, dim=1))
        if len(blocks) != steps_per_epoch(self.n, self.shared.batch_size):
            blocks[-2:] = [torch.cat(blocks[-2:], dim=1)]
        return blocks

    def gather(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """``x[idx]`` and ``y[idx]`` shaped ``[M, b, ...]`` with one ``index_select`` each."""
        m, b = idx.shape
        flat = idx.reshape(-1)
        x = self.x.index_select(0, flat).view(m, b, *self.x.shape[1:])
        y = self.y.index_select(0, flat).view(m, b, *self.y.shape[1:])
        return x, y

    def step(self, idx: Tensor, meter: Meter) -> None:
        """One optimizer step of every model on its own minibatch ``idx[m]``."""
        x, y = self.gather(idx)
        with autocast(self.shared.precision, self.device):
            out = self.stack.forward(x, train=True)
            loss = losses(self.shared.task, out, y)
        total = self.total(loss)
        self.stack.zero_grad()
        self.fuse(self.fusable and not self.masked)
        total.backward()
        alive, grads, shared = self.alive if self.masked else None, self.stack.grads(), self.shared
        if shared.clip_norm is not None:
            clip_per_model(grads, shared.clip_norm)
        total_steps = shared.epochs * self.steps_per_epoch
        scale = lr_factor(self.global_step, total_steps, shared.lr_schedule, shared.warmup_steps)
        self.opt.step(alive, grads, self.stack.present(), scale)
        meter.add(out, y, loss_mean=loss)
        self.global_step += 1

    def fuse(self, on: bool) -> None:
        """SGD (with momentum: the optimizer's buffers) of the stacked linear layers inside
        their backward (``on``), or not: :class:`initlab.train.layers.FusedSGD` (off once a
        model is frozen: the masked update needs the gradients)."""
        if on != self.fused:
            lrs = self.opt.lr0 if self.opt.uniform else self.opt.lr[0].view(-1)  # one, or [M]
            lr = lrs if on else None
            fused = self.stack.fuse_sgd(lr, self.momentum, self.opt.momentum_buffer)
            self.fused = fused and on

    def total(self, loss: Tensor) -> Tensor:
        """``sum_m loss_m`` over the live models; freezes models whose loss is not finite.

        Unmasked (until a first divergence): one host read of the sum. Masked: the
        divergence record is kept on the device and read by the host after every step on
        the CPU, every :data:`CHECK_STEPS` steps elsewhere.
        """
        if not self.masked:
            total = loss.sum() if self.size > 1 else loss.reshape(())
            if math.isfinite(float(total.detach())):
                return total
            self.masked = True
        finite = torch.isfinite(loss.detach())
        newly = self.alive & ~finite
        self.dead_at = torch.where(newly, self.global_step, self.dead_at)
        self.alive &= finite
        if self.device.type == "cpu" or (self.global_step + 1) % CHECK_STEPS == 0:
            self.collect_dead()
        return torch.where(self.alive, loss, 0.0).sum()

    def prepare(self) -> None:
        """Let the stack check and choose its strategy on the first minibatch of rows."""
        rows = torch.arange(min(self.shared.batch_size, self.n), device=self.device)
        x, y = self.gather(rows.expand(self.size, -1))

        def loss(out: Tensor) -> Tensor:
            return losses(self.shared.task, out, y).float().sum()

        with autocast(self.shared.precision, self.device):
            trial.prepare(self.stack, x, loss)
        self.fusable = self.fusable and self.stack.strategy == STACKED

    def collect_dead(self) -> None:
        """Read the divergence record; mark newly diverged models in their results."""
        for m, at in enumerate(self.dead_at.tolist()):
            if at >= 0 and m not in self.dead:
                self.dead.add(m)
                epoch, step = divmod(at, self.steps_per_epoch)
                result = self.results[m]
                result.status = DIVERGED
                result.message = f"loss became non-finite at epoch {epoch + 1}, step {step}"

    def train_epoch(self, epoch: int) -> Meter:
        """One pass over the training data for every model; tracking every N steps."""
        meter = Meter(self.shared.task, self.size, self.device)
        every = self.shared.track if self.trackers and self.trackers[0].per_step else 0
        for idx in self.batches():
            self.step(idx, meter)
            if every and self.global_step % every == 0:
                self.track(epoch)
            if len(self.dead) == self.size:
                break
        self.collect_dead()
        self.fuse(False)
        return meter

    def evaluate(self, split: str, meter: Meter | None = None) -> tuple[list[float], list[float]]:
        """Every model's mean loss and score on ``split`` (``"val"`` or ``"test"``), in
        ``meter`` if given."""
        x, y = self.eval_sets[split]
        acts = self.shared.activations_per_example
        if not acts:  # a StackSettings built by hand: measure it once (two examples, eval mode)
            acts = activations_per_example(self.stack.template, x[:2])
            self.shared = dataclasses.replace(self.shared, activations_per_example=acts)
        together = self.size if self.stack.strategy == STACKED else 1  # else model by model
        rows = eval_rows(together, acts)
        return evaluate_stack(
            self.stack,
            x,
            y,
            self.shared.task,
            precision=self.shared.precision,
            rows=rows,
            meter=meter,
        )

    def end_epoch(self, epoch: int, meter: Meter, t0: float, on_epoch: EpochHook | None) -> None:
        """Validate; append every live model's epoch record; call ``on_epoch`` in order."""
        train_loss, train_score = meter.result()
        val_loss, val_score = self.evaluate("val")
        seconds = (time.perf_counter() - t0) / self.size
        self.seconds += seconds * self.size
        for m, result in enumerate(self.results):
            if m in self.dead:
                continue
            record = dict(
                epoch=epoch,
                train_loss=train_loss[m],
                train_accuracy=train_score[m],
                val_loss=val_loss[m],
                val_accuracy=val_score[m],
                seconds=seconds,
            )
            result.epochs.append(record)
            if on_epoch is not None:
                on_epoch(m, record)

    def finish(self) -> list[RunResult]:
        """Test the live models; set status, time, per-layer rows and the vmap note."""
        t0 = time.perf_counter()
        tested = Meter(self.shared.task, self.size, self.device, per_example=True)
        if len(self.dead) < self.size:
            test_loss, test_score = self.evaluate("test", tested)
        improvement = tested.improvement_p()  # the "learned?" tests (per sequence for tokens)
        accuracy = tested.accuracy_p()
        self.seconds += time.perf_counter() - t0
        baseline = dataset_baseline(self.data) if self.shared.task in SHARE_TASKS else None
        for m, result in enumerate(self.results):
            result.train_seconds = self.seconds / self.size + self.saved_seconds[m]
            result.strategy = self.stack.strategy if self.size > 1 else ""
            if self.trackers is not None:
                result.layer_stats = list(self.trackers[m].rows)
            if self.stack.note:
                result.message = "; ".join(s for s in (result.message, self.stack.note) if s)
            if m in self.dead:
                result.test_loss = result.test_accuracy = math.nan
                continue
            result.test_loss, result.test_accuracy = test_loss[m], test_score[m]
            result.status = final_status(
                result.test_accuracy, baseline, self.shared.task, result.test_loss,
                improvement[m], accuracy[m],
            )  # fmt: skip
        return self.results

    def run(
        self, on_epoch: EpochHook | None = None, saver: SaveHook | None = None
    ) -> list[RunResult]:
        """Train all epochs (trial step, tracking at step 0, epochs) and test; a resumed
        stack (:func:`initlab.train.checkpoint.restore`) continues after its saved epoch.
        ``saver(self, epoch)`` after each epoch but the last (it may save a checkpoint)."""
        seed = derive_seed(self.members[0].seed, "stack dropout")
        with torch.random.fork_rng(devices=rng_devices(self.device)):
            self.prepare()  # leaves the RNG as it found it
            if self.stack.note:
                note(self.stack.note)
            if self.start_epoch:
                checkpoint.apply_dropout_state(self)
            else:
                seed_global(seed, self.device)
                self.track(0)
            for epoch in range(self.start_epoch + 1, self.shared.epochs + 1):
                t0 = time.perf_counter()
                meter = self.train_epoch(epoch)
                if len(self.dead) == self.size:
                    self.seconds += time.perf_counter() - t0
                    break
                if self.trackers is not None and not self.trackers[0].per_step:
                    self.track(epoch)
                self.end_epoch(epoch, meter, t0, on_epoch)
                if saver is not None and epoch < self.shared.epochs:
                    saver(self, epoch)
        return self.finish()


def train_stack(
    models: Sequence[nn.Module],
    data,
    shared: StackSettings,
    members: Sequence[Member],
    on_epoch: EpochHook | None = None,
    *,
    write_back: bool = False,
    resume: Sequence[dict] | None = None,
    saver: SaveHook | None = None,
) -> list[RunResult]:
    """Train ``models`` (same architecture, initialized) together; one result each, in order.

    ``members[m]`` holds model m's seed (data order) and hyperparameters; ``shared`` what they
    share. The stack trains copies; with ``write_back`` each model gets its final state
    (a diverged model: its state when it was frozen). ``resume``: each model's checkpoint
    (:mod:`initlab.train.checkpoint`, all at one epoch; ``models`` hold its weights), to
    continue from; ``saver``: called after each epoch but the last, to save them.
    """
    if len(models) != len(members):
        raise ValueError("train_stack needs one member per model")
    trainer = StackTrainer(models, data, shared, members)
    if resume:
        checkpoint.restore(trainer, resume)
    results = trainer.run(on_epoch, saver)
    if write_back:
        for m, model in enumerate(models):
            model.load_state_dict(trainer.stack.state_dict(m))
    return results
