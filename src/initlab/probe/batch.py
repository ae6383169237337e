"""The model, data and batch a probe looks at, checked before anything runs: what
``initlab diagnose``, ``initlab doctor`` and :func:`initlab.trials` share (built-in or the
user's own ``model``/``data``), with the probe batch on the chosen device."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.train.device import check_precision, resolve_device
from initlab.train.preflight import preflight
from initlab.train.run import build_initialized_model, load_data
from initlab.train.seeding import make_generator
from initlab.train.tasks import model_loss, resolve_task

Status = Callable[[str], AbstractContextManager]
"""Shows what is going on while a block runs (``rich.console.Console.status``)."""


@dataclass
class Probe:
    """A config, its data, the device and a probe batch ``x``, ``y`` (on the device)."""

    config: RunConfig
    data: Dataset
    device: torch.device
    x: Tensor
    y: Tensor

    @property
    def loss(self) -> Callable[[Tensor, Tensor], Tensor]:
        """The task's loss of one model (cross-entropy, MSE or token cross-entropy)."""
        return model_loss(resolve_task(self.config.task, self.data))

    def build(self, init: str) -> nn.Module:
        """The config's model with ``init`` applied (``default``: as built), on the device."""
        config = self.config.replace(init=init)
        model = build_initialized_model(
            config, self.data.input_shape, self.data.num_classes, data=self.data
        )
        return model.to(self.device)


def prepare_probe(
    config: RunConfig,
    batch: int,
    data_dir: str | None,
    status: Status | None = None,
    trains: bool = False,
) -> Probe:
    """Check the device and precision, load the data (under ``status``), :func:`preflight`
    the model on it (one-line :class:`~initlab.errors.InitlabError` for every mistake), draw
    the batch. ``trains``: the caller also trains (the doctor's trials), so the training set
    must hold a batch of ``config.batch_size``; a probe alone takes what there is."""
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    with (status or (lambda _: contextlib.nullcontext()))(f"loading {config.dataset}"):
        data = load_data(config, data_dir=data_dir)
    preflight(config if trains else config.replace(batch_size=1), data)
    x, y = probe_batch(data.x_train, data.y_train, batch, config.seed)
    return Probe(config, data, device, x.to(device), y.to(device))


def probe_batch(x: Tensor, y: Tensor, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``size`` training examples drawn without replacement from the ``"probe"`` stream."""
    idx = torch.randperm(len(x), generator=make_generator(seed, "probe"))[:size]
    return x[idx], y[idx]
