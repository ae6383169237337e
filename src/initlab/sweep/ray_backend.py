"""Running a sweep's chunks as Ray tasks, on an existing Ray cluster or a local instance.

``ray.init(address=ADDR)`` connects to a running cluster (``ray start --head`` prints the
address; ``auto`` finds one on this machine); with no address, ``$RAY_ADDRESS`` is used if
set, else a local instance is started for the duration of the sweep (``--workers N`` gives
it N CPUs). If Ray is already initialized in this process (a notebook, a test), that
connection is used and left open.

Each chunk is one task requesting ``threads`` CPUs (default 1) and running with that many
torch threads, so Ray's scheduler keeps every node busy without oversubscription. Results
stream back in completion order (``ray.wait``) into the caller's store, exactly as with the
local executor, so resuming works the same. Ray worker processes are reused across tasks
and keep their loaded datasets, so data is loaded once per worker, not per run. Progress is
reported per epoch: tasks put each epoch record on a ``ray.util.queue.Queue`` (an actor that
holds no CPU) that the driver drains while it waits. The cluster's nodes need initlab (and
the datasets, or network access to download them) installed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.sweep.engine import (
    DataCache,
    DataLoadError,
    EpochHook,
    Outcome,
    execute_chunk,
    failed_outcomes,
)

RAY_MISSING = "Ray is not installed: pip install 'initlab[ray]'"
POLL_SECONDS = 1.0

_worker_cache: DataCache | None = None


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
) -> tuple[str, Any]:
    """The body of one Ray task: ``("done", outcomes)`` or ``("fatal", message)``; each
    epoch record goes on ``events`` (a Ray queue) as ``(config key, record)``."""
    global _worker_cache
    import torch

    torch.set_num_threads(threads)
    if _worker_cache is None or _worker_cache.data_dir != data_dir:
        _worker_cache = DataCache(data_dir)

    def report(config: RunConfig, record: dict) -> None:
        events.put((config.key(), record))

    try:
        hook = report if events is not None else None
        return "done", execute_chunk(configs, _worker_cache, engine, hook)
    except DataLoadError as exc:
        return "fatal", str(exc)


class RayExecutor:
    """Submits chunks as Ray tasks and yields outcomes as tasks finish."""

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        threads: int = 1,
        engine: str = "auto",
        data_dir: str | None = None,
    ) -> None:
        self.address, self.workers, self.threads = address, workers, max(1, threads)
        self.engine, self.data_dir = engine, data_dir

    def run(self, chunks: list[list[RunConfig]], on_epoch: EpochHook | None) -> Iterator[Outcome]:
        """Run every chunk on the cluster; ``on_epoch`` hears of every epoch as it ends."""
        ray = import_ray()
        started_here = self._connect(ray)
        task = ray.remote(num_cpus=self.threads)(ray_chunk)
        events = _epoch_queue() if on_epoch is not None else None
        configs = {c.key(): c for chunk in chunks for c in chunk}
        pending = {
            task.remote(chunk, self.engine, self.threads, self.data_dir, events): chunk
            for chunk in chunks
        }
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                _drain(events, configs, on_epoch)  # a finished task's epochs come first
                for ref in ready:
                    yield from _outcomes(ray, ref, pending.pop(ref))
        finally:
            _cancel(ray, pending)
            if events is not None:
                with contextlib.suppress(Exception):
                    events.shutdown()
            if started_here:
                ray.shutdown()

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


def _epoch_queue() -> Any:
    """A Ray queue for epoch records, as an actor that reserves no CPU from the tasks."""
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})


def _drain(events: Any, configs: dict[str, RunConfig], on_epoch: EpochHook | None) -> None:
    """Hand every queued ``(config key, record)`` to ``on_epoch``."""
    waiting = events.qsize() if events is not None and on_epoch is not None else 0
    for key, record in events.get_nowait_batch(waiting) if waiting else []:
        on_epoch(configs[key], record)


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
