"""Run a :class:`~initlab.config.RunConfig`: build the model, initialize it, train it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from torch import nn

from initlab.checkpoints import Checkpoints
from initlab.config import RunConfig
from initlab.data import Dataset, load
from initlab.errors import InitlabError
from initlab.notes import note
from initlab.probe.tracking import Tracker
from initlab.run_status import FAILED
from initlab.train import memory
from initlab.train.build import (  # noqa: F401  (re-exported: the public names stay here)
    DEFAULT_INIT,
    INIT_BATCH,
    build_architecture,
    build_initialized_model,
)
from initlab.train.checkpoint import (
    EpochSaver,
    ResumeError,
    load_model_state,
    resumed_result,
)
from initlab.train.device import resolve_device
from initlab.train.engine import train_stack
from initlab.train.grouping import check_group
from initlab.train.memory import activations_per_example
from initlab.train.preflight import preflight
from initlab.train.result import RunResult
from initlab.train.schedule import Member, StackSettings
from initlab.train.stack import preferred_strategy
from initlab.train.tasks import resolve_task
from initlab.usercode.specs import is_user_spec


def load_data(config: RunConfig, data_dir: str | None = None) -> Dataset:
    """The dataset a config trains on, with its validation size and training limit; for the
    built-in models, integer inputs as float features (:meth:`Dataset.as_features`: only a
    user's model can take token ids)."""
    data = load(
        config.dataset,
        data_dir=data_dir,
        val_size=config.val_size,
        limit_train=config.limit_train,
        task=config.task,
    )
    return data if is_user_spec(config.model) else data.as_features()


GroupEpochCallback = Callable[[RunConfig, dict[str, float]], None]
"""``on_epoch(config, record)``: called after each epoch of each run."""


def run_config(
    config: RunConfig,
    data: Dataset | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoints: Checkpoints | None = None,
) -> RunResult:
    """Train one ``config`` (the engine with a stack of one model).

    User errors (an unknown init name, a model that does not fit the data...) raise
    :class:`InitlabError` before training; anything else that goes wrong inside the run is
    returned as a ``failed`` result with the error, so one broken run never takes a whole
    comparison down.
    """
    hook = None if on_epoch is None else (lambda _config, record: on_epoch(record))
    return train_configs([config], data, on_epoch=hook, checkpoints=checkpoints)[0]


def train_configs(
    configs: Sequence[RunConfig],
    data: Dataset | None = None,
    *,
    on_epoch: GroupEpochCallback | None = None,
    chunk_size: int | None = None,
    checkpoints: Checkpoints | None = None,
) -> list[RunResult]:
    """Train configs of one group (:func:`~initlab.train.grouping.group_configs`) together;
    one :class:`RunResult` per config, in order.

    The group is checked first (:func:`~initlab.train.preflight.preflight`: one line per
    mistake, nothing trained), then split into stacks of at most ``chunk_size`` models
    (default: :func:`~initlab.train.memory.chunk_size`) of near-equal size, trained one after
    the other. Each result is what the config gives alone, up to float rounding (same initial
    weights, same data order, same formulas). ``on_epoch(config, record)`` after each epoch.
    ``checkpoints``: where the stacks save their runs now and then, and where runs saved
    before resume from (:mod:`initlab.train.checkpoint`: runs saved at the same epoch stack
    together and run the way their stack ran before when that still checks out (stacked,
    vmap or looped: the same numerics); a diverged run's saved result is returned as is).
    """
    check_group(configs)
    data = data if data is not None else load_data(configs[0])
    preflight(configs[0], data)
    shared, size = _shared_settings(configs[0], data, chunk_size)
    saved = _saved(configs, checkpoints)
    results: list[RunResult | None] = [None] * len(configs)
    by_start: dict[tuple[int, str], list[int]] = {}  # (saved epoch, strategy) → configs
    for i, state in enumerate(saved):
        if state is not None and state["final"]:
            results[i] = resumed_result(state, shared.task)
        else:
            start = (0, "") if state is None else (state["epoch"], state["strategy"])
            by_start.setdefault(start, []).append(i)
    for (epoch, strategy), indices in sorted(by_start.items()):
        stack_shared = replace(shared, prefer=strategy or preferred_strategy())
        for chunk in memory.split_evenly(indices, size):
            resume = [saved[i] for i in chunk] if epoch else None
            group = [configs[i] for i in chunk]
            trained = _train_chunk(group, data, stack_shared, on_epoch, resume, checkpoints)
            for i, result in zip(chunk, trained, strict=True):
                results[i] = result
    for config, result in zip(configs, results, strict=True):
        result.config = config
    return results


def _saved(configs: Sequence[RunConfig], checkpoints: Checkpoints | None) -> list[dict | None]:
    """Each config's checkpoint, or ``None``."""
    if checkpoints is None:
        return [None] * len(configs)
    return [checkpoints.load(c.key()) for c in configs]


def _shared_settings(
    config: RunConfig, data: Dataset, chunk_size: int | None
) -> tuple[StackSettings, int]:
    """The stack's shared :class:`StackSettings` and the models per stack (checked or computed)."""
    device = resolve_device(config.device)
    model = build_architecture(config, data.input_shape, data.num_classes)
    acts = activations_per_example(model, data.x_train[:2])
    if chunk_size is None:
        params = memory.parameter_count(model)
        chunk_size = memory.chunk_size(
            params, acts, config.optimizer, config.batch_size, len(data.y_train), device
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InitlabError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    shared = StackSettings(
        task=resolve_task(config.task, data),
        optimizer=config.optimizer,
        batch_size=config.batch_size,
        epochs=config.epochs,
        device=device,
        precision=config.precision,
        track=config.track,
        activations_per_example=acts,
        lr_schedule=config.lr_schedule,
        warmup_steps=config.warmup_steps,
        clip_norm=config.clip_norm,
    )
    return shared, chunk_size


def _train_chunk(
    configs: Sequence[RunConfig],
    data: Dataset,
    shared: StackSettings,
    on_epoch: GroupEpochCallback | None,
    resume: Sequence[dict] | None = None,
    checkpoints: Checkpoints | None = None,
) -> list[RunResult]:
    """One stack (from checkpoints: ``resume``); a failure (not a user error) makes
    ``failed`` results for its configs."""
    members = [
        Member(c.seed if c.data_seed is None else c.data_seed, c.lr, c.momentum, c.weight_decay)
        for c in configs
    ]
    hook = None if on_epoch is None else (lambda m, record: on_epoch(configs[m], record))
    saver = None if checkpoints is None else EpochSaver(checkpoints, [c.key() for c in configs])

    def train(models: list[nn.Module], saved: Sequence[dict] | None) -> list[RunResult]:
        return train_stack(models, data, shared, members, hook, resume=saved, saver=saver)

    try:
        return _train_resumed(configs, data, train, resume, checkpoints)
    except InitlabError:
        raise
    except Exception as exc:  # a run failing must not end the comparison
        message = f"{type(exc).__name__}: {exc}"  # named once (a traceback's tail named it twice)
        return [
            RunResult(config=None, status=FAILED, message=message, task=shared.task)
            for _ in configs
        ]


def _train_resumed(
    configs: Sequence[RunConfig],
    data: Dataset,
    train: Callable[[list[nn.Module], Sequence[dict] | None], list[RunResult]],
    resume: Sequence[dict] | None,
    checkpoints: Checkpoints | None,
) -> list[RunResult]:
    """``train(models, resume)`` from the saved states (read from ``checkpoints``); states
    that do not fit the models or the stack (:class:`~initlab.train.checkpoint.ResumeError`)
    are a note, are deleted, and the runs start over."""
    if resume and checkpoints is not None:
        try:
            return train(_models(configs, data, resume), resume)
        except ResumeError as exc:
            note(f"the checkpoints of {len(configs)} run(s) do not fit ({exc}): they start over")
            for config in configs:
                checkpoints.remove(config.key())
    return train(_models(configs, data), None)


def _models(
    configs: Sequence[RunConfig], data: Dataset, resume: Sequence[dict] | None = None
) -> list[nn.Module]:
    """The stack's models, initialized, then given their saved weights (``resume``);
    :class:`~initlab.train.checkpoint.ResumeError` if those do not fit."""
    shape, classes = data.input_shape, data.num_classes
    models = [build_initialized_model(c, shape, classes, data=data) for c in configs]
    for model, state in zip(models, resume or (), strict=False):
        try:
            load_model_state(model, state["model"])
        except (RuntimeError, KeyError) as exc:
            raise ResumeError(str(exc).strip().splitlines()[0]) from exc
    return models


def train_model(
    model: nn.Module,
    data: Dataset,
    *,
    optimizer: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float | None = None,
    batch_size: int = 32,
    epochs: int = 5,
    seed: int = 0,
    task: str = "auto",
    device: str = "cpu",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    track: str | int | Tracker = "off",
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    clip_norm: float | None = None,
) -> RunResult:
    """Train one given ``model`` in place (a stack of one), as a user's loop would.

    ``track``: ``"off"``, ``"epoch"``, N steps, or a :class:`~initlab.probe.tracking.Tracker`
    (its rows are appended to and also returned in ``result.layer_stats``).
    ``lr_schedule``, ``warmup_steps``, ``clip_norm``: :mod:`initlab.train.schedule`. Every
    setting is checked as a :class:`~initlab.config.RunConfig` field's (one line, before
    anything trains).
    """
    settings = dict(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    settings |= dict(batch_size=batch_size, epochs=epochs, seed=seed, task=task, device=device)
    RunConfig(lr_schedule=lr_schedule, warmup_steps=warmup_steps, clip_norm=clip_norm, **settings)
    tracker = track if isinstance(track, Tracker) else None
    shared = StackSettings(
        task=resolve_task(task, data),
        optimizer=optimizer,
        batch_size=batch_size,
        epochs=epochs,
        device=resolve_device(device),
        track=tracker.every if tracker is not None else track,
        lr_schedule=lr_schedule,
        warmup_steps=warmup_steps,
        clip_norm=clip_norm,
    )
    hook = None if on_epoch is None else (lambda _m, record: on_epoch(record))
    member = Member(seed, lr, momentum, weight_decay)
    result = train_stack([model], data, shared, [member], hook, write_back=True)[0]
    if tracker is not None:
        tracker.rows.extend(result.layer_stats)
    return result
