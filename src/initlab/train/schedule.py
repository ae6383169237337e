"""The step schedule of a stack: what its models share (:class:`StackSettings`), what each has of
its own (:class:`Member`), steps per epoch, the learning-rate schedule and gradient clipping.

A transformer is rarely trained without them (nanoGPT: linear warmup, cosine decay, gradient
norm clipped at 1), and an init compared without them is compared under conditions its user
will not train in: Adam at a transformer's usual rate without warmup can diverge in the
first steps whatever the init.

``lr_schedule`` multiplies each model's learning rate ``η`` by ``f(t)`` at step ``t``
(0-based) of ``T = epochs × steps per epoch``, after ``W = warmup_steps`` steps of linear
warmup:

- warmup (``t < W``): ``f = (t + 1) / W``
- ``constant``: ``f = 1``
- ``linear``: ``f = 1 - p``, ``p = (t - W) / (T - W)``
- ``cosine``: ``f = (1 + cos(π p)) / 2``: from 1 down to 0 at the last step's end, as
  ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``eta_min = 0``.

``clip_norm = c`` rescales each model's gradient, all its parameters together, to norm at
most ``c`` (``g ← g · min(1, c / (‖g‖ + 1e-6))``, ``torch.nn.utils.clip_grad_norm_``'s
rule), model by model: one model's large gradient never shrinks another's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from initlab.errors import option
from initlab.notes import note
from initlab.task_names import CLASSIFICATION

CPU = torch.device("cpu")

CLIP_EPS = 1e-6
"""Added to the norm before dividing, as ``torch.nn.utils.clip_grad_norm_`` does."""


def steps_per_epoch(n: int, batch: int) -> int:
    """Steps in one pass over ``n`` examples in batches of ``batch``: ``ceil(n / batch)``,
    one fewer when the last would hold one example: batch norm cannot normalize one (PyTorch
    raises "Expected more than 1 value per channel"), so it joins the batch before it."""
    steps = math.ceil(n / batch)
    return steps - 1 if steps > 1 and n % batch == 1 else steps


@dataclass(frozen=True)
class StackSettings:
    """What the models of one stack share: the task and the step schedule."""

    task: str = CLASSIFICATION
    optimizer: str = "sgd"
    batch_size: int = 32
    epochs: int = 5
    device: torch.device = CPU
    precision: str = "fp32"
    track: str | int = "off"
    activations_per_example: int = 0
    strategy: str = "auto"
    """How the stack runs its models (:mod:`initlab.train.stack`): auto, stacked, vmap, looped."""
    prefer: str = ""
    """For ``auto``: the strategy to take without timing when it runs and checks out (a
    resumed stack's, :mod:`initlab.train.checkpoint`: the same numerics as before)."""
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    clip_norm: float | None = None
    """The step rules of :func:`lr_factor` and :func:`clip_per_model`."""


@dataclass(frozen=True)
class Member:
    """What one model of the stack has of its own (besides its initial weights)."""

    seed: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float | None = None  # the optimizer's default (0; adamw 0.01)


def lr_factor(step: int, total: int, schedule: str = "constant", warmup: int = 0) -> float:
    """``f(step)``, the factor on the learning rate at 0-based ``step`` of ``total`` (module
    docstring)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / (total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule {schedule!r}")


def clip_per_model(grads: Sequence[Tensor | None], max_norm: float) -> Tensor | None:
    """Rescale in place the stacked gradients ``grads`` (``[M, ...]`` each) so that model
    ``m``'s norm over all of them is at most ``max_norm``; returns the norms before, ``[M]``
    (``None`` without gradients)."""
    present = [g for g in grads if g is not None]
    if not present:
        return None
    squares = torch.stack([g.detach().reshape(len(g), -1).float().pow(2).sum(1) for g in present])
    norms = squares.sum(0).sqrt()
    scale = (max_norm / (norms + CLIP_EPS)).clamp(max=1.0)
    for g in present:
        g.mul_(scale.to(g.dtype).view(-1, *[1] * (g.dim() - 1)))
    return norms


def note_long_warmup(warmup: int, total: int) -> None:
    """A note when ``warmup`` steps are at least the ``total`` a run takes: the rate never
    reaches ``lr`` (it ends at ``total / warmup`` of it) and the schedule after warmup never
    starts, so runs of other schedules train alike."""
    if warmup and warmup >= total:
        note(
            f"{option(f'--warmup-steps {warmup}')} is at least the {total} optimizer steps each "
            f"run takes: the learning rate ends at {min(total / warmup, 1):.0%} of "
            f"{option('--lr')} and the schedule after warmup never starts; warm up for a "
            f"tenth of them (about {max(1, total // 10)})"
        )
