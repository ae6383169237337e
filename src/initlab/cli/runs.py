"""Preparing the runs of ``compare``, ``sweep`` and ``study``: everything checked before
anything runs or any file is created (the target options are applied to a spec by
:mod:`initlab.sweep.targets`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from initlab.atomic_files import check_output_dir
from initlab.checkpoints import checkpoint_seconds
from initlab.config import RunConfig
from initlab.errors import check_positive
from initlab.results import SAVED_FILES, ResultSet
from initlab.store import study_dir
from initlab.sweep.engine import resolve_engine
from initlab.sweep.estimate import check_buildable
from initlab.sweep.preflight import preflight_configs
from initlab.sweep.runner import check_backend
from initlab.sweep.spec import Spec
from initlab.sweep.ui import run_and_report
from initlab.train.stack import preferred_strategy


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
    """``out`` checked, :func:`~initlab.sweep.estimate.check_buildable`, :func:`prepare`,
    then :func:`initlab.sweep.ui.run_and_report`. The run options are the command's own
    ``--backend``, ``--address``, ``--workers``, ``--engine``, ``--data-dir`` and
    ``--gpus-per-trial`` (read from ``ctx.params``)."""
    given = ctx.params
    if out is not None:  # before any model is built or data loaded (sweep checks it earlier)
        check_output_dir(study_dir(out), files=SAVED_FILES)  # a read-only summary.csv too
    check_buildable(configs)  # a model of absurd size (the widths named), a dataset's task
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
    and precision, every distinct model on its data
    (:func:`initlab.sweep.preflight.preflight_configs`) — and return the options of
    :func:`initlab.sweep.ui.run_and_report` (with the loaded data of the first run, reused
    in-process)."""
    if gpus_per_trial is not None:
        options["gpus_per_trial"] = gpus_per_trial
    check_run_options(
        backend, address, options.get("engine", "auto"), options.get("workers"), gpus_per_trial
    )
    loaded = preflight_configs(configs, data_dir)
    return dict(options, backend=backend, address=address, data_dir=data_dir, dataset=loaded)


def check_run_options(
    backend: str, address: str | None, engine: str, workers: int | None, gpus: float | None = None
) -> None:
    """``--backend``/``--address``/``--gpus-per-trial`` (``None``: not given; beyond the
    GPUs of a local Ray cluster), ``--engine``, ``--workers`` and
    ``INITLAB_CHECKPOINT_SECONDS`` and ``INITLAB_STRATEGY``, checked before any store is
    created (a dry run checks them too)."""
    if gpus is not None:
        check_positive("--gpus-per-trial", gpus, allow_zero=True)
    check_backend(backend, address, gpus or 0.0)
    resolve_engine(engine)
    if workers is not None:
        check_positive("--workers", workers)
    checkpoint_seconds()
    preferred_strategy()
