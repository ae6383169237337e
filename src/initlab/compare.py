"""``initlab.compare``: the classic initialization lab, done fairly (several seeds per init).

Defaults reproduce the reference lab: Fashion-MNIST, a 784-300-100-10 ReLU MLP, SGD with
learning rate 0.01, batch 32, 5 epochs; the hidden layers get the scheme under study, the
output layer ``glorot_uniform`` (Keras's Dense default), biases zero; three seeds per init.

A comparison is a preset of the sweep machinery (:mod:`initlab.sweep`): a spec named
``compare`` that sweeps ``init`` over the given schemes and seeds, run into a results store
(in memory, or in ``out`` where it resumes), executed in this process, in worker processes
or on Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from initlab.config import RunConfig
from initlab.results import ResultSet
from initlab.sweep.engine import Outcome
from initlab.sweep.grid import expand
from initlab.sweep.runner import SweepProgress, run_study
from initlab.sweep.spec import Axis, Spec, seed_list
from initlab.sweep.values import check_setting
from initlab.train.result import RunResult

DEFAULT_INITS = (
    "zeros",
    "random_normal",
    "random_uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
)

ProgressCallback = Callable[[RunConfig, dict | None, RunResult | None], None]
"""Called with ``(config, epoch_record, None)`` after every epoch and with
``(config, None, result)`` when a run ends."""


def comparison_spec(
    inits: Sequence[str] = DEFAULT_INITS, seeds: int | Sequence[int] = 3, **settings
) -> Spec:
    """The spec of a comparison: ``settings`` fixed, ``init`` swept, ``seeds`` repeated.

    ``seeds`` is a count (seeds ``0..n-1``) or explicit seeds. Every setting and init spec
    is checked here, before anything runs.
    """
    seed_tuple = seed_list(list(seeds) if not isinstance(seeds, int) else seeds, "seeds")
    fixed = {key: check_setting(key, value) for key, value in settings.items()}
    checked = [check_setting("init", spec) for spec in inits]
    axis = Axis(("init",), tuple((spec,) for spec in dict.fromkeys(checked)))
    return Spec(name="compare", fixed=fixed, axes=(axis,), seeds=seed_tuple, group_by=("init",))


def comparison_configs(
    inits: Sequence[str] = DEFAULT_INITS, seeds: int | Sequence[int] = 3, **settings
) -> list[RunConfig]:
    """One :class:`RunConfig` per (init, seed), all other settings shared (checked first)."""
    return expand(comparison_spec(inits, seeds, **settings))


def compare(
    inits: Sequence[str] = DEFAULT_INITS,
    seeds: int | Sequence[int] = 3,
    *,
    progress: ProgressCallback | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    engine: str = "auto",
    **settings,
) -> ResultSet:
    """Train every (init, seed) pair and return the runs as a :class:`ResultSet`.

    ``settings`` are :class:`RunConfig` fields (``dataset``, ``epochs``, ``batch_size``,
    ``lr``, ``optimizer``, ``hidden``, ``activation``, ``batch_norm``, ``output_init``...).
    Diverged runs are recorded as such and the comparison goes on. ``data_dir`` is where
    to look for dataset files first (see :func:`initlab.data.load`).

    ``out``: a directory (or ``.db`` file) for the results store — calling again with the
    same ``out`` skips the runs already finished. ``workers``: 1 (the default) trains in
    this process; ``None`` picks one worker process per core (guard your script with
    ``if __name__ == "__main__":``, as multiprocessing requires); ``backend="ray"`` runs
    on a Ray cluster (``address``). ``engine``: ``auto``, ``single`` or ``batched``.
    """
    spec = comparison_spec(inits, seeds, **settings)
    results, _ = run_study(
        spec,
        out,
        backend=backend,
        workers=workers,
        address=address,
        engine=engine,
        data_dir=data_dir,
        progress=_CallbackProgress(progress) if progress else None,
    )
    return results


class _CallbackProgress(SweepProgress):
    """Adapts a :data:`ProgressCallback` to the sweep's progress hooks."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback

    def epoch(self, config: RunConfig, record: dict) -> None:
        self.callback(config, record, None)

    def finished(self, outcome: Outcome) -> None:
        self.callback(outcome.result.config, None, outcome.result)
