"""``initlab.sweep.run``: a whole spec from Python, with ``compare``'s keywords.

``initlab sweep spec.toml --model m.py:build --data d.npz --device cuda`` runs a spec with
its targets replaced from the command line; :func:`run` is the same from Python, where the
model may be a function defined in a notebook and the data a tuple of arrays, as
:func:`initlab.compare` takes them. A spec sweeps anything a spec file can, a factory's
``model_args`` included (``{"sweep": {"model_args": {"width": [64, 128, 256]}}}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from initlab.arguments import check_compare_arguments
from initlab.errors import InitlabError, UnknownNameError
from initlab.results import ResultSet
from initlab.setting_names import is_setting
from initlab.sweep.grid import DEFAULT_MAX_RUNS, expand
from initlab.sweep.python_api import (
    ProgressCallback,
    check_workers,
    run_from_python,
    target_settings,
)
from initlab.sweep.spec import Spec, load_spec, parse_spec
from initlab.sweep.targets import check_models, override_spec

SpecLike = Spec | Mapping[str, Any] | str | Path
RUN_KEYWORDS = (
    "model", "data", "model_args", "task", "device", "precision", "backend", "workers",
    "address", "engine", "gpus_per_trial", "data_dir", "progress", "max_runs",
)  # fmt: skip
""":func:`run`'s own keywords (besides ``spec`` and ``out``)."""


def run(
    spec: SpecLike,
    out: str | Path | None = None,
    *,
    model: str | Callable | None = None,
    data: str | Callable | tuple | None = None,
    model_args: Mapping[str, Any] | None = None,
    task: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    engine: str = "auto",
    gpus_per_trial: float = 0.0,
    data_dir: str | None = None,
    progress: ProgressCallback | None = None,
    max_runs: int | None = DEFAULT_MAX_RUNS,
    **settings: Any,
) -> ResultSet:
    """Run every point of ``spec`` (a :class:`Spec`, a dict as a spec file reads, or a spec
    file's path) into the store in ``out`` (a directory or ``.db`` file, resumable; in
    memory when ``None``) and return its runs as a :class:`ResultSet`.

    ``model``, ``data``, ``model_args``, ``task``, ``device`` and ``precision`` replace the
    spec's fixed values, as the command line's options do (``model_args`` entries one by
    one), and take what :func:`initlab.compare` takes: a factory (a notebook's function is
    registered in this process, so it needs ``workers=1`` and the local backend), a tuple of
    arrays, a dataset name or spec. A setting the spec sweeps cannot also be given here.
    The run options are :func:`initlab.compare`'s; the other settings (``epochs``, ``lr``,
    ...) go in the spec, which says what the runs are. ``out`` holds the store only
    (``initlab results``/``report`` read it): ``results.save(out)`` adds the CSVs and plot
    that ``initlab sweep --out`` writes beside it. Every mistake — a typo in the spec, a
    factory that fails, data the model cannot run on, a device this machine lacks — raises
    :class:`~initlab.errors.InitlabError` (one line) before anything trains and before
    ``out`` is created; Ctrl-C raises :class:`~initlab.sweep.SweepInterrupted` whose
    ``results`` holds the runs finished so far.
    """
    _refuse_settings(settings)
    check_compare_arguments(None, model_args, out, progress)
    settings = target_settings(model, data, model_args, None)
    given = {"task": task, "device": device, "precision": precision}
    settings.update({k: v for k, v in given.items() if v is not None})
    spec = override_spec(as_spec(spec), settings)
    check_models(spec, given=settings)
    configs = expand(spec, max_runs)
    return run_from_python(
        spec, configs, out, backend=backend, workers=check_workers(workers), address=address,
        engine=engine, gpus_per_trial=gpus_per_trial, data_dir=data_dir, progress=progress,
        again="call initlab.sweep.run again with the same out=",
    )  # fmt: skip


def _refuse_settings(settings: Mapping[str, Any]) -> None:
    """A keyword :func:`run` does not take → one line: a run setting (``epochs=1``) belongs
    in the spec's ``fixed`` (a keyword beside it would be a second place to say what the
    runs are), ``seeds``/``group_by`` at the spec's top level; anything else is a typo of
    one of run's own keywords (the closest named)."""
    if not settings:
        return

    key = next(iter(settings))
    if key in ("seeds", "group_by"):
        raise InitlabError(f"run takes no {key}=: give it in the spec ({{{key!r}: ...}})")
    if is_setting(key):
        raise InitlabError(
            f"run takes no {key}=: run settings go in the spec ({{'fixed': {{{key!r}: ...}}}}, "
            "or a sweep axis); its keywords are the target (model, data, model_args, task, "
            "device, precision) and how to run (backend, workers, out...)"
        )
    raise UnknownNameError("keyword of initlab.sweep.run", key, RUN_KEYWORDS)


def as_spec(spec: SpecLike) -> Spec:
    """``spec`` as a :class:`Spec`: a spec file read (:func:`load_spec`), a dict parsed
    (:func:`parse_spec`); anything else → one line."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    if isinstance(spec, Mapping):
        return parse_spec(spec)
    raise InitlabError(
        f"spec takes a spec file's path, a dict as a spec file reads or a Spec, got "
        f"{type(spec).__name__}"
    )
