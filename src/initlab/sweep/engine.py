"""The unit of work of every executor: a *chunk* (a list of configs) run by one engine.

There is one training engine (:mod:`initlab.train.engine`); :func:`run_chunk` chooses how
many models it stacks: ``"auto"`` and ``"batched"`` train a chunk's configs together
(:func:`initlab.train.train_configs`, stacks sized by memory), ``"single"`` one at a time
(stacks of one). :func:`plan_chunks` cuts a sweep into chunks (groups of configs that can
share a stack, :func:`initlab.train.grouping.group_configs`, or one run per chunk), and
:func:`execute_chunk` runs one chunk with timestamps and provenance and turns any exception
into ``failed`` results, so one broken run never stops a sweep.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType

from initlab.checkpoints import Checkpoints
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.errors import InitlabError, UnknownNameError
from initlab.run_status import FAILED
from initlab.train.memory import MIN_CHUNK
from initlab.train.result import RunResult
from initlab.train.run import load_data, run_config
from initlab.train.tasks import resolve_task
from initlab.usercode.specs import is_user_spec

ENGINES = ("auto", "single", "batched")

EpochHook = Callable[[RunConfig, dict], None]
"""Called with ``(config, epoch_record)`` after each epoch of each run (single engine)."""


@dataclass
class Outcome:
    """A finished run and where/when/how it ran (what the store records)."""

    result: RunResult
    started_at: float
    finished_at: float
    engine: str
    env: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    """The key the sweep planned the run under, set where it is recorded (``""``:
    ``result.config.key()`` then)."""


@lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """Host name, initlab/torch/python versions, BLAS code path and CPU of this process."""
    import torch

    import initlab.mkl_dispatch as mkl_dispatch
    from initlab._version import __version__

    return {
        "host": socket.gethostname(),
        "initlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "blas": mkl_dispatch.blas_description(),
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    """The CPU's model name with its family, model and widest vector ISA (``/proc/cpuinfo``;
    ``platform.processor()`` elsewhere): a KVM guest's name can be just "AMD EPYC", the same
    for Zen 4 and Zen 5, and BLAS kernels and summation order, so the last bits of results,
    differ between them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            first = cpuinfo.read().split("\n\n")[0].splitlines()  # the first CPU's block
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    info = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in first if ":" in ln)}
    name = info.get("model name") or platform.processor() or "unknown CPU"
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} (family {info.get('cpu family', '?')} model {info.get('model', '?')}, {isa})"


def batched_engine() -> ModuleType:
    """The module with ``train_configs`` and ``group_configs`` (a function, so that tests can
    put a fake in its place)."""
    import initlab.train

    return initlab.train


def resolve_engine(engine: str) -> str:
    """``"auto"`` → ``"batched"``; checks the name."""
    if engine not in ENGINES:
        raise UnknownNameError("engine", engine, ENGINES)
    return "batched" if engine == "auto" else engine


def run_chunk(
    configs: Sequence[RunConfig],
    data: Dataset,
    engine: str = "auto",
    on_epoch: EpochHook | None = None,
    checkpoints: Checkpoints | None = None,
) -> list[RunResult]:
    """Train ``configs`` (all on ``data``) with ``engine``; one result per config, in order.

    ``"batched"`` trains chunks of two or more runs together (``train_configs``); single
    runs, and every run with ``engine="single"``, go through :func:`run_config`.
    ``on_epoch(config, record)`` is called after each epoch of each run; ``checkpoints``:
    where runs save their state and resume from (:mod:`initlab.train.checkpoint`).
    """
    if resolve_engine(engine) == "batched" and len(configs) > 1:
        return batched_engine().train_configs(
            list(configs), data, on_epoch=on_epoch, checkpoints=checkpoints
        )
    return [
        run_config(
            c,
            data,
            on_epoch=None if on_epoch is None else _bind(on_epoch, c),
            checkpoints=checkpoints,
        )
        for c in configs
    ]


def _bind(hook: EpochHook, config: RunConfig) -> Callable[[dict], None]:
    return lambda record: hook(config, record)


def plan_chunks(
    configs: Sequence[RunConfig], engine: str = "auto", workers: int = 1, share: int = 0
) -> list[list[RunConfig]]:
    """Cut ``configs`` into chunks: groups that can share a stack (``group_configs``), or one
    run per chunk for the single engine.

    Groups are halved until there are at least ``workers`` chunks (when possible), so no
    worker sits idle at the start; then, for other processes sharing the store to find work
    (``share`` chunks wanted), halved further only while both halves keep
    :data:`~initlab.train.memory.MIN_CHUNK` models: a stack of one or two trains each model
    at close to the single engine's cost, so 6 runs stay one stack rather than 1 + 2 + 1 + 2.
    """
    if resolve_engine(engine) == "batched":
        chunks = [list(g) for g in batched_engine().group_configs(list(configs))]
    else:
        chunks = [[c] for c in configs]
    _halve_until(chunks, workers, smallest=1)
    _halve_until(chunks, share, smallest=MIN_CHUNK)
    return chunks


def _halve_until(chunks: list[list[RunConfig]], count: int, smallest: int) -> None:
    """Halve the biggest chunk in place until there are ``count`` chunks, while its halves
    keep at least ``smallest`` configs."""
    while 0 < len(chunks) < count:
        biggest = max(range(len(chunks)), key=lambda i: len(chunks[i]))
        group = chunks[biggest]
        half = len(group) // 2
        if half < smallest or len(group) < 2:
            return
        chunks[biggest : biggest + 1] = [group[:half], group[half:]]


class DataLoadError(InitlabError):
    """A chunk's dataset could not be loaded: the whole sweep stops (no run is recorded)."""


def data_key(config: RunConfig) -> tuple:
    """What a run's data depends on: runs with equal keys share one loaded dataset (integer
    inputs are ids for a user's model, features for a built-in one)."""
    ids = is_user_spec(config.model)
    return (config.dataset, config.val_size, config.limit_train, config.task, ids)


class DataCache:
    """Datasets loaded once per process (per worker), keyed by :func:`data_key`."""

    def __init__(self, data_dir: str | None = None, preloaded: dict | None = None) -> None:
        self.data_dir = data_dir
        self._cache: dict[tuple, Dataset] = dict(preloaded or {})

    def get(self, config: RunConfig) -> Dataset:
        """The dataset ``config`` trains on, loaded on first use."""
        key = data_key(config)
        if key not in self._cache:
            try:
                self._cache[key] = load_data(config, data_dir=self.data_dir)
            except Exception as exc:
                raise DataLoadError(f"cannot load dataset '{config.dataset}': {exc}") from exc
        return self._cache[key]


def data_task(config: RunConfig, data: Dataset) -> str:
    """The task ``config`` trains for on ``data`` (its ``task``, or the data's for ``auto``);
    ``""`` when that cannot be told."""
    try:
        return resolve_task(config.task, data)
    except InitlabError:
        return ""


def engine_used(size: int, result: RunResult) -> str:
    """The ``engine`` a run records: ``single``, or ``batched/<strategy>`` (``stacked``,
    ``vmap``, ``looped``: how its stack ran, :mod:`initlab.train.stack`)."""
    if size == 1:
        return "single"
    return f"batched/{result.strategy}" if result.strategy else "batched"


def execute_chunk(
    configs: Sequence[RunConfig],
    data: DataCache,
    engine: str = "auto",
    on_epoch: EpochHook | None = None,
    checkpoints: Checkpoints | None = None,
) -> list[Outcome]:
    """Run one chunk; every config gets an :class:`Outcome` (``failed`` on an exception).

    With the single engine each run is timed and guarded on its own.
    """
    name = resolve_engine(engine)
    groups = [list(configs)] if name == "batched" and len(configs) > 1 else [[c] for c in configs]
    outcomes = []
    for group in groups:
        dataset = data.get(group[0])
        started = time.time()
        try:
            results = run_chunk(group, dataset, name, on_epoch, checkpoints)
            for config, result in zip(group, results, strict=True):  # one result per config
                result.config = result.config or config
        except Exception as exc:  # a run failing must not end the sweep
            results = [failed_result(c, exc) for c in group]
        finished = time.time()
        task = data_task(group[0], dataset)
        for result in results:  # a run failed before training knows its task too
            result.task = result.task or task
        outcomes += [
            Outcome(r, started, finished, engine_used(len(group), r), environment())
            for r in results
        ]
    return outcomes


def by_position(configs: Sequence[RunConfig], send: Callable[[int, dict], None]) -> EpochHook:
    """An epoch hook that calls ``send(index of the run in configs, record)``: workers report
    epochs by position in their chunk, not by run key (keys hash the user's files, which
    may change while a sweep runs, and which a Ray node may not have)."""
    position = {id(c): i for i, c in enumerate(configs)}

    def hook(config: RunConfig, record: dict) -> None:
        if id(config) in position:
            send(position[id(config)], record)

    return hook


def failed_result(config: RunConfig, error: BaseException | str) -> RunResult:
    """A ``failed`` result for ``config`` whose message is the error."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return RunResult(config=config, status=FAILED, message=message)


def failed_outcomes(configs: Sequence[RunConfig], message: str) -> list[Outcome]:
    """``failed`` outcomes for runs lost outside a worker's control (a crashed process)."""
    now = time.time()
    return [Outcome(failed_result(c, message), now, now, "none", {}) for c in configs]
