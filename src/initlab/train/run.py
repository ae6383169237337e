"""Run a :class:`~initlab.config.RunConfig`: build the model, initialize it, train it."""

from __future__ import annotations

import traceback
from collections.abc import Sequence

import torch
from torch import nn

from initlab.apply import initialize
from initlab.config import RunConfig
from initlab.data import Dataset, load
from initlab.errors import InitlabError
from initlab.models import build_model, build_user_model
from initlab.train.result import FAILED, RunResult
from initlab.train.seeding import derive_seed, make_generator
from initlab.train.single import EpochCallback, train_model
from initlab.usercode import is_user_spec


def load_data(config: RunConfig, data_dir: str | None = None) -> Dataset:
    """The dataset a config trains on, with its validation size and training limit."""
    return load(
        config.dataset,
        data_dir=data_dir,
        val_size=config.val_size,
        limit_train=config.limit_train,
    )


INIT_BATCH = 512
"""Data-dependent schemes (LSUV) see the first ``INIT_BATCH`` training examples."""


DEFAULT_INIT = "default"
"""The init that leaves the model as built: a user factory's own init, PyTorch's defaults."""


def build_architecture(
    config: RunConfig, input_shape: Sequence[int], num_classes: int
) -> nn.Module:
    """The config's model as constructed, under a forked global RNG seeded from the run's
    ``"construct"`` stream: built-in ``mlp``/``cnn``, or the user factory
    ``config.model`` called with ``**config.model_args`` (see
    :func:`initlab.models.build_user_model`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "construct"))
        if is_user_spec(config.model):
            return build_user_model(config.model, config.model_args)
        return build_model(
            config.model,
            input_shape,
            num_classes,
            hidden=config.hidden,
            activation=config.activation,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
            residual=config.residual,
        )


def build_initialized_model(
    config: RunConfig,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    data: Dataset | None = None,
) -> nn.Module:
    """The config's model with its initialization applied, from the run's ``"init"`` stream.

    Construction happens under a forked global RNG seeded from the run seed, so building a
    model neither depends on nor disturbs the caller's random state. ``data``: the run's
    dataset, needed by data-dependent schemes (``lsuv``), which see its first
    :data:`INIT_BATCH` training examples.
    """
    model = build_architecture(config, input_shape, num_classes)
    if config.init == DEFAULT_INIT:
        return model  # the model as its factory built it (PyTorch's own defaults)
    initialize(
        model,
        config.init,
        bias=config.bias,
        output_layer=config.output_init,
        generator=make_generator(config.seed, "init"),
        data=data.x_train[:INIT_BATCH] if data is not None else None,
        residual=config.residual_init,
    )
    return model


def run_config(
    config: RunConfig, data: Dataset | None = None, on_epoch: EpochCallback | None = None
) -> RunResult:
    """Train ``config`` with the single-model engine.

    User errors (an unknown init name...) raise :class:`InitlabError`; anything else that
    goes wrong inside the run is caught and returned as a ``failed`` result with the error,
    so one broken run never takes a whole comparison down.
    """
    data = data if data is not None else load_data(config)
    model = build_initialized_model(config, data.input_shape, data.num_classes, data=data)
    try:
        result = train_model(
            model,
            data,
            optimizer=config.optimizer,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=config.seed,
            on_epoch=on_epoch,
            track=config.track,
        )
    except InitlabError:
        raise
    except Exception as exc:  # a run failing must not end the comparison
        tail = traceback.format_exc(limit=3).strip().splitlines()[-1]
        result = RunResult(config=None, status=FAILED, message=f"{type(exc).__name__}: {tail}")
    result.config = config
    return result
