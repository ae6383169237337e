"""What :func:`initlab.compare` and :func:`initlab.sweep.run` share: the target keywords as
settings, the checks of how to run, the run itself and what it says after.

Both build a spec from their keywords and hand it to :func:`run_from_python` with its configs:
every check (the backend, ``workers``, what exists only in this process, then every run's
:func:`~initlab.sweep.preflight.preflight_configs`) passes before anything trains or ``out``
is created; a failed run is named in a note, and an unfinished store in a hint that says how
to continue it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from initlab.config import RunConfig, plain
from initlab.errors import InitlabError
from initlab.notes import note
from initlab.results import ResultSet, retry_hint
from initlab.run_status import FAILED
from initlab.sweep.engine import Outcome
from initlab.sweep.executor import plan_workers
from initlab.sweep.preflight import preflight_configs
from initlab.sweep.runner import SweepProgress, check_backend, run_study
from initlab.sweep.spec import Spec
from initlab.train.result import RunResult
from initlab.usercode.inprocess import data_spec, is_array_data, is_registered, model_spec

ProgressCallback = Callable[[RunConfig, dict | None, RunResult | None], None]
"""Called with ``(config, epoch_record, None)`` after every epoch and with
``(config, None, result)`` when a run ends."""


def run_from_python(
    spec: Spec,
    configs: Sequence[RunConfig],
    out: str | Path | None,
    *,
    backend: str,
    workers: int | None,
    address: str | None,
    engine: str,
    gpus_per_trial: float,
    data_dir: str | None,
    progress: ProgressCallback | None,
    again: str,
) -> ResultSet:
    """Check how to run ``configs`` (the runs of ``spec``), check every run, then run them
    into ``out`` and return their :class:`ResultSet`. ``workers`` as :func:`check_workers`
    returned it; ``again``: how the retry hint tells the caller to continue the store
    (``"call compare again with the same out="``)."""
    check_backend(backend, address, gpus_per_trial or 0.0)  # a typo before its consequences
    plan_workers(1, workers)  # its check of workers (>= 1), before any work
    check_in_process(configs, backend, workers)
    loaded = preflight_configs(configs, data_dir)
    results, _ = run_study(
        spec,
        out,
        configs=configs,
        backend=backend,
        workers=workers,
        address=address,
        engine=engine,
        gpus_per_trial=gpus_per_trial,
        data_dir=data_dir,
        dataset=loaded,  # reused in this process, and put in Ray's object store as it is
        progress=_CallbackProgress(progress) if progress else None,
    )
    _note_failures(results)
    results.progress = retry_hint(results.progress, again) if out is not None else ""
    return results


def check_workers(workers: Any) -> int | None:
    """``workers`` as a Python int (a numpy integer is one), or ``None``; anything else, a
    float included, → one line."""
    workers = plain(workers)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise InitlabError(
            f"workers must be a whole number (or None: one per core), got {workers!r}"
        )
    return workers


def target_settings(model, data, model_args, dataset) -> dict[str, Any]:
    """The ``model``, ``model_args`` and ``dataset`` settings the caller gave, as specs."""
    if data is not None and dataset is not None:
        raise InitlabError("give data= or dataset= (its older name), not both")
    target: dict[str, Any] = {}
    if model is not None:
        target["model"] = model_spec(model)
    if model_args:
        target["model_args"] = dict(model_args)
    if data is not None or dataset is not None:
        target["dataset"] = data_spec(data if data is not None else dataset)
    return target


def check_in_process(configs: Sequence[RunConfig], backend: str, workers: int | None) -> None:
    """Refuse (one line) worker processes or Ray for models/data registered in this process."""
    registered = sorted({s for c in configs for s in (c.model, c.dataset) if is_registered(s)})
    if not registered or (backend == "local" and workers == 1):
        return
    arrays = [s for s in registered if is_array_data(s)]
    functions = [s.split(":")[1] for s in registered if not is_array_data(s)]
    what = [f"{', '.join(functions)} (defined in __main__ or a notebook)"] if functions else []
    what += ["the data given as tensors or arrays"] if arrays else []
    fixes = ["put the function in a module and pass 'module:function'"] if functions else []
    fixes += ["save the data (torch.save or numpy.savez with keys x_train, y_train, x_test, "
              "y_test) and pass the file's path"] if arrays else []  # fmt: skip
    raise InitlabError(
        f"{' and '.join(what)} exist only in this process: use workers=1 and "
        f"backend='local', or {' and '.join(fixes)}"
    )


def _note_failures(results: ResultSet) -> None:
    """A note naming the first failed run's error (the command line prints one per group;
    a notebook saw only a ``failed`` status in ``results.runs``)."""
    runs = results.runs
    if runs.empty or "status" not in runs:
        return
    failed = runs[runs["status"] == FAILED]
    if len(failed):
        row = failed.iloc[0]
        first = str(row["message"]) if "message" in failed else ""
        keys = [k for k in results.group_by if k in failed and k != "seed"] or ["init"]
        named = ", ".join(f"{k}={row[k]}" for k in keys) if keys != ["init"] else row["init"]
        note(
            f"{len(failed)} of {len(runs)} run(s) failed, e.g. {named} seed {row['seed']}: "
            f"{first} (every message: results.runs['message'])"
        )


class _CallbackProgress(SweepProgress):
    """Adapts a :data:`ProgressCallback` to the sweep's progress hooks. A callback that
    raises is called no more, with a note naming its error: raised inside training, it
    failed every run of the stack; raised after one, it ended the sweep, and with
    ``out=None`` lost every run trained."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback: ProgressCallback | None = callback

    def epoch(self, config: RunConfig, record: dict) -> None:
        self._call(config, record, None)

    def finished(self, outcome: Outcome) -> None:
        self._call(outcome.result.config, None, outcome.result)

    def _call(self, config: RunConfig, record: dict | None, result: RunResult | None) -> None:
        if self.callback is None:
            return
        try:
            self.callback(config, record, result)
        except Exception as exc:  # the user's code: training goes on without it
            self.callback = None
            note(
                f"the progress callback raised {type(exc).__name__}: {exc}; it is not "
                "called again, and training goes on"
            )
