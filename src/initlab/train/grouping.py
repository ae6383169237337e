"""Which configs can train together in one model stack.

Models train together when they have the same shapes and the same step schedule: the same
data (dataset, validation size, training limit, task), the same architecture (model,
model_args, an MLP's hidden widths, activation, batch norm, dropout, residual), the same
batch size, number of epochs, optimizer kind, learning-rate schedule, warmup and gradient
clipping, precision, device and tracking cadence.
Everything else — learning rate, momentum, weight decay, init, output init, bias policy,
residual rule, seed — may differ inside a group: those become per-model tensors or
per-model initial weights.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import fields

from initlab.activations import get as get_activation
from initlab.config import RunConfig
from initlab.data import canonical_name
from initlab.errors import InitlabError
from initlab.residual.names import ADDS_PARAMETERS

PER_MODEL = (
    "lr", "momentum", "weight_decay", "init", "output_init", "embedding_init", "bias",
    "residual_init", "seed", "data_seed",
)  # fmt: skip
"""Settings that may differ inside a group (per-model tensors or initial weights)."""
SHARED = (
    "dataset", "val_size", "limit_train", "task", "model", "model_args", "hidden", "activation",
    "batch_norm", "dropout", "residual", "batch_size", "epochs", "optimizer", "precision",
    "device", "track", "extra", "lr_schedule", "warmup_steps", "clip_norm",
)  # fmt: skip
"""Settings that must agree inside a group (they make up :func:`group_key`)."""
_DEFAULTS = {f.name: getattr(RunConfig(), f.name) for f in fields(RunConfig)}


def _dataset(name: str) -> str:
    try:
        return canonical_name(name)
    except InitlabError:
        return str(name)


def _activation(name: str) -> str:
    try:
        return get_activation(name).name
    except InitlabError:
        return str(name)


def _text(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=repr) if value else ""


def group_key(config: RunConfig) -> tuple[Hashable, ...] | None:
    """The fields that must agree for ``config`` to train with others (:data:`SHARED`, names
    in their canonical spelling: ``fmnist`` and ``fashion-mnist`` agree, so do ``swish``
    and ``silu``); ``None`` if ``config`` sets a :class:`RunConfig` field this engine does
    not know (it then trains alone)."""
    if _unknown_settings(config):
        return None
    return (
        _dataset(config.dataset),
        config.val_size,
        config.limit_train,
        config.task,
        config.model,
        _text(config.model_args),
        tuple(config.hidden),
        _activation(config.activation),
        bool(config.batch_norm),
        float(config.dropout),
        bool(config.residual),
        config.residual_init if config.residual_init in ADDS_PARAMETERS else "",
        int(config.batch_size),
        int(config.epochs),
        config.optimizer,
        config.precision,
        config.device,
        config.track,
        _text(config.extra),
        config.lr_schedule,
        int(config.warmup_steps),
        config.clip_norm,
    )


def _unknown_settings(config: RunConfig) -> list[str]:
    """Settings this engine does not implement that ``config`` sets (a field added to
    :class:`RunConfig` later): such a config goes to the single engine, which knows them."""
    known = set(PER_MODEL) | set(SHARED)
    return [
        name
        for name, default in _DEFAULTS.items()
        if name not in known and getattr(config, name) != default
    ]


def group_configs(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """Split ``configs`` into groups that :func:`initlab.train.run.train_configs` accepts.

    Groups come in the order of their first member and keep the callers' order inside.
    A config that cannot be grouped (``group_key`` is ``None``) gets a group of its own, so
    every config appears exactly once.
    """
    groups: dict[Hashable, list[RunConfig]] = {}
    for i, config in enumerate(configs):
        key = group_key(config)
        groups.setdefault(("single", i) if key is None else ("batch", key), []).append(config)
    return list(groups.values())


def check_group(configs: Sequence[RunConfig]) -> None:
    """Raise :class:`InitlabError` unless ``configs`` is a non-empty group."""
    if not configs:
        raise InitlabError("train_configs needs at least one config")
    keys = [group_key(c) for c in configs]
    if len(configs) > 1 and keys[0] is None:
        raise InitlabError(
            f"{configs[0].label} sets a setting the engine cannot share; train it alone"
        )
    for config, key in zip(configs, keys, strict=True):
        if key != keys[0]:
            raise InitlabError(
                f"configs cannot train together: {config.label} differs from "
                f"{configs[0].label} in a setting that must agree (see group_key; "
                "use group_configs to split them)"
            )
