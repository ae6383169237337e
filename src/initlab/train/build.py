"""Build a config's model: the architecture under the run's ``"construct"`` seed, then its init.

Shared by :mod:`initlab.train.run` (training) and :mod:`initlab.train.preflight` (the
pre-training checks), which therefore do not import each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from initlab.apply import InitRecord, initialize
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.data.dataset import first_look
from initlab.models import build_model, build_user_model
from initlab.train.seeding import derive_seed, make_generator
from initlab.usercode.specs import is_user_spec

INIT_BATCH = 512
"""Data-dependent schemes (LSUV) see ``INIT_BATCH`` training examples
(:func:`~initlab.data.dataset.first_look`)."""


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
    dataset, needed by data-dependent schemes (``lsuv``), which see :data:`INIT_BATCH` of its
    training examples (:func:`~initlab.data.dataset.first_look`).
    """
    model = build_architecture(config, input_shape, num_classes)
    initialize_as_configured(model, config, data)
    return model


def initialize_as_configured(
    model: nn.Module, config: RunConfig, data: Dataset | None = None
) -> InitRecord | None:
    """Apply the config's init, embedding init and residual rule to ``model`` in place,
    from the run's ``"init"`` stream; ``None`` (nothing done) for the model as built."""
    as_built = (config.init, config.embedding_init, config.residual_init)
    if as_built == (DEFAULT_INIT, DEFAULT_INIT, "none"):
        return None  # the model as its factory built it (PyTorch's own defaults)
    return initialize(
        model,
        config.init,
        bias=config.bias,
        output_init=None if config.init == DEFAULT_INIT else config.output_init,
        embedding_init=config.embedding_init,
        generator=make_generator(config.seed, "init"),
        data=first_look(data, INIT_BATCH)[0] if data is not None else None,
        residual_init=config.residual_init,
    )
