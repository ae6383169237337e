"""Check every run of a sweep or comparison before anything trains or touches a store.

:func:`preflight_configs` checks the device and precision of each distinct pair, then builds
one model per distinct (model, model_args, architecture, data, task, batch size) and runs it
on its data (:func:`initlab.train.preflight.preflight`), and initializes one per distinct
init (:func:`initlab.train.preflight.check_initializes`). Among several distinct models or
datasets, an error names the settings of the one that failed (``runs with dim=15: ...``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence

from torch import nn

from initlab.config import RunConfig
from initlab.config_checks import check_architecture_settings
from initlab.data import Dataset
from initlab.data.locate import user_dir
from initlab.errors import InitlabError
from initlab.model_notes import (
    note_frozen,
    note_fused,
    note_output_only,
    note_seeded_factory,
    note_untouched,
)
from initlab.sweep.engine import data_key
from initlab.train.device import check_precision, resolve_device
from initlab.train.preflight import check_initializes, preflight
from initlab.train.run import load_data
from initlab.usercode.specs import is_user_spec


def preflight_configs(configs: Sequence[RunConfig], data_dir: str | None = None) -> Dataset | None:
    """Check every run before anything trains or touches a store: the device and precision
    of each distinct pair, then :func:`initlab.train.preflight.preflight` for one config per
    distinct (model, model_args, architecture, data, task, batch size). Raises
    :class:`InitlabError` (one line); returns ``configs[0]``'s loaded data (or ``None``)."""
    if data_dir is not None:  # also where no dataset reads it (digits): a typo said nothing
        user_dir(data_dir)
    for device, precision in dict.fromkeys((c.device, c.precision) for c in configs):
        check_precision(precision, resolve_device(device))
    for config in configs:
        check_architecture_settings(config)
    loaded: dict[tuple, Dataset] = {}
    built: dict[tuple, nn.Module] = {}
    distinct = {_preflight_key(c): c for c in configs}
    for shape, config in distinct.items():
        key = _data_of(config)
        with _naming(config, list(distinct.values())):
            if key not in loaded:
                loaded[key] = load_data(config, data_dir=data_dir)
            built[shape] = preflight(config, loaded[key])
    inits = list({_init_key(c): c for c in configs}.values())
    for config in inits:
        with _naming(config, inits):
            check_initializes(config, loaded[_data_of(config)])
    data = {shape: loaded[_data_of(c)] for shape, c in distinct.items()}
    _preflight_notes(built, configs, data)  # notes only once every check has passed
    return loaded.get(_data_of(configs[0])) if configs else None


@contextlib.contextmanager
def _naming(config: RunConfig, configs: Sequence[RunConfig]) -> Iterator[None]:
    """A check's :class:`InitlabError` for one of several distinct models or datasets,
    prefixed with the settings that tell ``config`` apart (``runs with dim=15: ...``): a
    sweep's error named no swept value."""
    try:
        yield
    except InitlabError as exc:
        shown = _telling(config, configs)
        if shown:  # the same error, its type kept (UnknownNameError takes other arguments)
            exc.args = (f"runs with {shown}: {exc}", *exc.args[1:])
        raise


def _telling(config: RunConfig, configs: Sequence[RunConfig]) -> str:
    """``dim=15, batch_size=8``: ``config``'s values of the settings (and factory keywords)
    that differ among ``configs``."""
    rows = [{**_shape(c), **_factory_keywords(c)} for c in configs]
    mine = rows[configs.index(config)]
    names = dict.fromkeys(k for row in rows for k in row)
    differ = [n for n in names if len({repr(row.get(n)) for row in rows}) > 1]
    return ", ".join(f"{n}={mine.get(n)}" for n in differ)


def _factory_keywords(config: RunConfig) -> dict[str, object]:
    """``config.model_args`` by name (``width``), as ``model_args.hidden`` where the name is
    also a setting's, which would hide one behind the other."""
    settings = _shape(config)
    args = config.model_args or {}
    return {(f"model_args.{k}" if k in settings else k): v for k, v in args.items()}


def _shape(config: RunConfig) -> dict[str, object]:
    keep = ("model", "hidden", "activation", "batch_norm", "dropout", "residual", "dataset")
    return {n: getattr(config, n) for n in (*keep, "task", "batch_size")}


def _preflight_notes(
    built: dict[tuple, nn.Module], configs: Sequence[RunConfig], data: dict[tuple, Dataset]
) -> None:
    """The notes on the models built by the preflight (one per :func:`_preflight_key`):
    :mod:`initlab.model_notes`' untouched, frozen and fused layers once per model (``data``:
    each shape's dataset, whose first inputs the fused check runs), output-only models per
    model shape."""
    runs = {shape: [c for c in configs if _preflight_key(c) == shape] for shape in built}
    first: dict[str, tuple] = {}
    for shape in built:
        first.setdefault(runs[shape][0].model, shape)
    for name, shape in first.items():
        model = built[shape]
        note_untouched(model, name, configs)
        note_frozen(model, name, configs)
        if is_user_spec(name):  # the built-in MLP and CNN fuse nothing, nor seed torch
            note_fused(model, name, configs, data[shape].x_train[:2].cpu())
            note_seeded_factory(runs[shape][0], configs, data[shape])
    for shape, model in built.items():
        note_output_only(model, runs[shape])


def _data_of(config: RunConfig) -> tuple:
    return (*data_key(config), config.task)


def _init_key(config: RunConfig) -> tuple:
    """A run's model and what initializes it: one build checks each such pair."""
    inits = (config.init, config.output_init, config.embedding_init, config.bias)
    return (*_preflight_key(config), *inits, config.residual_init)


def _preflight_key(config: RunConfig) -> tuple:
    """What decides whether a run can start at all (not its init, seed or optimizer)."""
    shape = (config.hidden, config.activation, config.batch_norm, config.dropout, config.residual)
    args = json.dumps(config.model_args, sort_keys=True, default=str)
    where = (config.task, config.batch_size, config.device, config.precision)
    return (config.model, args, shape, _data_of(config), where)
