"""Preparing the runs of ``compare``, ``sweep`` and ``study``: the target options applied to
a spec, and everything checked before anything runs or any file is created."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from initlab.compare import preflight_configs
from initlab.config import RunConfig
from initlab.errors import InitlabError, check_positive
from initlab.results import ResultSet
from initlab.sweep.runner import check_backend
from initlab.sweep.spec import Spec
from initlab.sweep.ui import run_and_report
from initlab.sweep.values import MODEL_ARG, check_setting


def override_spec(spec: Spec, settings: dict[str, Any]) -> Spec:
    """``spec`` with ``settings`` (from the command line) replacing its fixed values.

    ``model_args`` entries are merged into the spec's ``model_args`` one by one. A setting
    the spec sweeps (or sets in ``[[include]]``) cannot be fixed from the command line: that
    raises :class:`InitlabError` rather than silently dropping the spec's values.
    """
    if not settings:
        return spec
    swept = set(spec.swept)
    fixed = dict(spec.fixed)
    for key, value in settings.items():
        if key == "model_args":
            args = dict(fixed.get("model_args", {}))
            for name, item in value.items():
                _refuse_swept(f"{MODEL_ARG}{name}", swept, f"--model-arg {name}")
                args[name] = check_setting(f"{MODEL_ARG}{name}", item)
            fixed["model_args"] = args
            continue
        _refuse_swept(key, swept, f"--{'data' if key == 'dataset' else key}")
        fixed[key] = check_setting(key, value)
    return replace(spec, fixed=fixed)


def _refuse_swept(key: str, swept: set[str], option: str) -> None:
    if key in swept:
        raise InitlabError(
            f"{option}: the spec varies '{key}' between runs; remove it from the spec's "
            "[sweep]/[[zip]]/[[include]] to fix it from the command line"
        )


def run_checked(
    spec: Spec,
    configs: Sequence[RunConfig],
    out: Path | None,
    *,
    title: str,
    ctx: typer.Context,
    console: Console,
    err: Console,
) -> ResultSet:
    """:func:`prepare`, then :func:`initlab.sweep.ui.run_and_report`. The run options are
    the command's own ``--backend``, ``--address``, ``--workers``, ``--engine``,
    ``--data-dir`` and ``--gpus-per-trial`` (read from ``ctx.params``)."""
    given = ctx.params
    options = prepare(
        configs,
        backend=given["backend"],
        address=given["address"],
        data_dir=str(given["data_dir"]) if given.get("data_dir") else None,
        gpus_per_trial=given.get("gpus_per_trial"),
        workers=given["workers"],
        engine=given["engine"],
    )
    return run_and_report(
        spec, list(configs), out, title=title, console=console, err=err, ctx=ctx, **options
    )


def prepare(
    configs: Sequence[RunConfig],
    *,
    backend: str,
    address: str | None,
    data_dir: str | None,
    gpus_per_trial: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Check everything that can be checked before a run starts — the backend, every device
    and precision, every distinct model on its data (:func:`initlab.compare.preflight_configs`)
    — and return the options of :func:`initlab.sweep.ui.run_and_report` (with the loaded data
    of the first run, reused in-process)."""
    if gpus_per_trial is not None:
        check_positive("--gpus-per-trial", gpus_per_trial, allow_zero=True)
        options["gpus_per_trial"] = gpus_per_trial
    check_backend(backend, address, options.get("gpus_per_trial", 0.0))
    loaded = preflight_configs(configs, data_dir)
    return dict(options, backend=backend, address=address, data_dir=data_dir, dataset=loaded)
