"""Running a sweep's chunks as Ray tasks, on an existing Ray cluster or a local instance.

``ray.init(address=ADDR)`` connects to a running cluster (``ray start --head`` prints the
address; ``auto`` finds one on this machine); with no address, ``$RAY_ADDRESS`` is used if
set, else a local instance is started for the duration of the sweep (``--workers N`` gives
it N CPUs). If Ray is already initialized in this process (a notebook, a test), that
connection is used and left open.

Each chunk is one task requesting ``threads`` CPUs (default 1) and running with that many
torch threads, so Ray's scheduler keeps every node busy without oversubscription. Results
stream back in completion order (``ray.wait``) into the caller's store, exactly as with the
local executor, so resuming works the same. The driver loads each dataset of the sweep once,
before any task starts (a dataset that cannot be loaded stops the sweep there), and puts it in
Ray's object store; tasks ``ray.get`` it, once per worker process and sweep, so neither user
data code nor data files are needed on the nodes, and nothing is loaded per run. Progress is
reported per epoch: tasks put each epoch record on a ``ray.util.queue.Queue`` (an actor that
holds no CPU) that the driver drains while it waits. Tasks start in
:func:`initlab.mkl_dispatch.worker_entry`, which applies MKL's kernel choice as the driver
did, best effort: a Ray worker process that already imported torch (for another job) keeps
the choice it has (see its ``blas`` column in the store). The cluster's nodes need initlab
(and a user ``--model``'s code) installed. ``gpus_per_trial`` is each task's ``num_gpus``
(fractions share a GPU); Ray hides the GPUs from tasks that reserve none, so they train on the
CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from typing import Any

import initlab.mkl_dispatch as mkl_dispatch
from initlab.checkpoints import Checkpoints
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.errors import SURFACE, InitlabError, check_positive, option, surface
from initlab.sweep.engine import (
    DataCache,
    DataLoadError,
    EpochHook,
    Outcome,
    by_position,
    data_key,
    execute_chunk,
    failed_outcomes,
)
from initlab.sweep.executor import Chunks, ChunkSource, chunk_source

RAY_MISSING = "Ray is not installed: pip install 'initlab[ray]'"
POLL_SECONDS = 1.0

_worker_cache: DataCache | None = None
_shared: dict[str, Dataset] = {}
"""Datasets fetched from the object store in this worker, by object id (the latest sweep's)."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`InitlabError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InitlabError(RAY_MISSING) from None
    return ray


def ray_chunk(
    configs: list[RunConfig],
    engine: str,
    threads: int,
    data_dir: str | None,
    events: Any = None,
    shared: dict[tuple, Any] | None = None,
    tag: int = 0,
    checkpoints: Checkpoints | None = None,
    spoken: str = "python",
) -> tuple[str, Any]:
    """The body of one Ray task: ``("done", outcomes)`` or ``("fatal", message)``; each
    epoch record goes on ``events`` (a Ray queue) as ``(tag, index in the chunk, record)``
    (not by run key: keys hash the user's files, which a node may not have). ``shared``:
    the driver's datasets as object refs by :func:`data_key` (others are loaded here).
    ``spoken``: the driver's surface (:func:`initlab.errors.surface`), which its messages
    keep (Ray reuses worker processes: set for this task alone)."""
    with surface(spoken):
        return _ray_chunk(configs, engine, threads, data_dir, events, shared, tag, checkpoints)


def _ray_chunk(
    configs: list[RunConfig],
    engine: str,
    threads: int,
    data_dir: str | None,
    events: Any,
    shared: dict[tuple, Any] | None,
    tag: int,
    checkpoints: Checkpoints | None,
) -> tuple[str, Any]:
    """:func:`ray_chunk` under its surface."""
    global _worker_cache
    import torch

    torch.set_num_threads(threads)
    if _worker_cache is None or _worker_cache.data_dir != data_dir:
        _worker_cache = DataCache(data_dir)
    data = DataCache(data_dir, shared_data(shared)) if shared else _worker_cache

    try:
        send = (lambda i, record: events.put((tag, i, record))) if events is not None else None
        hook = by_position(configs, send) if send is not None else None
        return "done", execute_chunk(configs, data, engine, hook, checkpoints)
    except DataLoadError as exc:
        return "fatal", str(exc)


def shared_data(refs: dict[tuple, Any]) -> dict[tuple, Dataset]:
    """The datasets behind ``refs``, fetched with ``ray.get`` only where this worker does not
    hold them yet; datasets of earlier sweeps are dropped."""
    global _shared
    ids = {key: ref.hex() for key, ref in refs.items()}
    missing = [ref for ref in refs.values() if ref.hex() not in _shared]
    if missing:
        import ray

        fetched = dict(zip((ref.hex() for ref in missing), ray.get(missing), strict=True))
        _shared = {i: fetched[i] if i in fetched else _shared[i] for i in ids.values()}
    return {key: _shared[i] for key, i in ids.items()}


def too_many_gpus(gpus_per_trial: float, have: float) -> InitlabError:
    """Tasks that ask for more GPUs than the cluster has (they would wait forever)."""
    return InitlabError(
        f"{option(f'--gpus-per-trial {gpus_per_trial:g}')} but the Ray cluster has "
        f"{have:g} GPUs: lower it, or use 0 to train on CPUs"
    )


def check_gpus_here(ray: Any, address: str | None, gpus_per_trial: float) -> None:
    """:func:`too_many_gpus` before anything starts where the cluster's GPUs are known
    without connecting: Ray already connected, or the local cluster a sweep starts here
    (no address, no ``RAY_ADDRESS``), which has this machine's GPUs. A remote cluster's
    are counted once connected (:meth:`RayExecutor._check_gpus`)."""
    if not gpus_per_trial:
        return
    if ray.is_initialized():
        have = float(ray.cluster_resources().get("GPU", 0))
    elif address is None and not os.environ.get("RAY_ADDRESS"):
        import torch

        have = float(torch.cuda.device_count())
    else:
        return
    if gpus_per_trial > have:
        raise too_many_gpus(gpus_per_trial, have)


class RayExecutor:
    """Submits chunks as Ray tasks and yields outcomes as tasks finish.

    ``preloaded``: datasets already loaded in this process, by :func:`data_key`;
    ``gpus_per_trial``: GPUs each task reserves (Ray's ``num_gpus``; 0 = CPU only).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        threads: int = 1,
        engine: str = "auto",
        data_dir: str | None = None,
        preloaded: dict[tuple, Dataset] | None = None,
        gpus_per_trial: float = 0.0,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        check_positive("gpus_per_trial", gpus_per_trial, allow_zero=True)
        self.checkpoints = checkpoints
        self.address, self.workers, self.threads = address, workers, max(1, threads)
        self.engine, self.data_dir = engine, data_dir
        self.preloaded, self.gpus_per_trial = preloaded, float(gpus_per_trial)

    def run(
        self, chunks: Chunks, on_epoch: EpochHook | None
    ) -> Generator[list[Outcome], None, None]:
        """Run every chunk on the cluster; ``on_epoch`` hears of every epoch as it ends.

        Every chunk that can be taken now is submitted at once (Ray schedules them); chunks
        held by other processes sharing the store are taken and submitted when they free up.
        """
        ray = import_ray()
        source = chunk_source(chunks)
        first = _take_all(source)
        cache = DataCache(self.data_dir, self.preloaded)
        for config in (c for chunk in first for c in chunk):  # bad data stops the sweep here,
            cache.get(config)  # before connecting
        started_here = self._connect(ray)
        self._check_gpus(ray, started_here)
        submit = _Submitter(ray, self, cache, on_epoch)
        try:
            submit(first)
            while submit.pending or not source.done:
                if not submit.pending:  # the runs left are held by other processes
                    source.wait()
                    submit(_take_all(source))
                    continue
                ready, _ = ray.wait(list(submit.pending), num_returns=1, timeout=POLL_SECONDS)
                _drain(submit.events, submit.chunks, on_epoch)  # a task's epochs come first
                for ref in ready:
                    yield _outcomes(ray, ref, submit.pending.pop(ref))
                submit(_take_all(source))
        finally:
            _cancel(ray, submit.pending)
            if submit.events is not None:
                with contextlib.suppress(Exception):
                    submit.events.shutdown()
            if started_here:
                ray.shutdown()

    def _check_gpus(self, ray: Any, started_here: bool) -> None:
        """:class:`InitlabError` when tasks ask for more GPUs than the cluster has (they
        would wait forever)."""
        have = float(ray.cluster_resources().get("GPU", 0))
        if self.gpus_per_trial > have:
            if started_here:
                ray.shutdown()
            raise too_many_gpus(self.gpus_per_trial, have)

    def _connect(self, ray: Any) -> bool:
        """Initialize Ray unless it already is; ``True`` if this call started it."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            options.update(address="local", num_cpus=self.workers)
        else:
            options["address"] = self.address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or os.environ.get("RAY_ADDRESS")
            raise InitlabError(f"cannot connect to the Ray cluster at {where}: {exc}") from None
        return True


def _take_all(source: ChunkSource) -> list[list[RunConfig]]:
    """Every chunk ``source`` hands out now."""
    taken = []
    while (chunk := source.take()) is not None:
        taken.append(chunk)
    return taken


class _Submitter:
    """Submits chunks as Ray tasks (each dataset put in the object store once) and keeps
    the tasks in flight (``pending``: object ref → chunk)."""

    def __init__(
        self, ray: Any, executor: RayExecutor, cache: DataCache, on_epoch: EpochHook | None
    ) -> None:
        self.ray, self.cache = ray, cache
        self.task = ray.remote(num_cpus=executor.threads, num_gpus=executor.gpus_per_trial)(
            mkl_dispatch.worker_entry
        )
        self.events = _epoch_queue() if on_epoch is not None else None
        self.entry = (mkl_dispatch.status(), f"{__name__}:ray_chunk")
        self.args = (executor.engine, executor.threads, executor.data_dir, self.events)
        self.checkpoints = executor.checkpoints
        self.shared: dict[tuple, Any] = {}
        self.chunks: dict[int, list[RunConfig]] = {}
        self.pending: dict[Any, list[RunConfig]] = {}

    def __call__(self, chunks: list[list[RunConfig]]) -> None:
        for chunk in chunks:
            for config in chunk:
                if data_key(config) not in self.shared:
                    self.shared[data_key(config)] = self.ray.put(self.cache.get(config))
            tag = len(self.chunks)
            self.chunks[tag] = chunk
            shared = dict(self.shared)  # the sweep's datasets so far (a worker keeps them all)
            args = (*self.entry, chunk, *self.args, shared, tag, self.checkpoints, SURFACE.get())
            self.pending[self.task.remote(*args)] = chunk


def _epoch_queue() -> Any:
    """A Ray queue for epoch records, as an actor that reserves no CPU from the tasks."""
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})


def _drain(events: Any, chunks: dict[int, list[RunConfig]], on_epoch: EpochHook | None) -> None:
    """Hand every queued ``(tag, index, record)`` to ``on_epoch``."""
    waiting = events.qsize() if events is not None and on_epoch is not None else 0
    for tag, index, record in events.get_nowait_batch(waiting) if waiting else []:
        on_epoch(chunks[tag][index], record)


def _outcomes(ray: Any, ref: Any, chunk: list[RunConfig]) -> list[Outcome]:
    try:
        kind, payload = ray.get(ref)
    except Exception as exc:  # the task's worker died or the task was cancelled
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return failed_outcomes(chunk, f"Ray task failed: {type(exc).__name__}: {first}")
    if kind == "fatal":
        raise DataLoadError(payload)
    return payload


def _cancel(ray: Any, pending: dict) -> None:
    for ref in pending:
        with contextlib.suppress(Exception):  # already finished, or the cluster is gone
            ray.cancel(ref, force=True)
