"""Local executors: run chunks in this process, or in worker processes on this machine.

Parallelism without oversubscription: ``workers = min(cores, chunks)`` worker processes
(``--workers N`` overrides), each with ``torch.set_num_threads(cores // workers)`` (at least
one), so workers × threads never exceeds the cores. ``workers == 1`` trains in the calling
process (no start-up cost; torch keeps its thread setting).

Worker processes use the ``spawn`` start method (forking a process that has started torch's
thread pools is unsafe), start with MKL's kernel choice as in the parent
(:func:`initlab.mkl_dispatch.worker_entry`, before they import torch), load each dataset
once and keep it for every chunk they run, and stream their results back over a queue; the
parent is the only process that writes to the store. The workers start once per sweep (when
the first chunk can be taken) and are fed one chunk at a time: the parent takes the next
chunk from its :class:`ChunkSource` (with a store, :class:`initlab.store.leases.Lease`
leases its runs then) right before it puts it on the task queue for an idle worker.
Workers ignore SIGINT: on Ctrl-C the parent stops them (terminate, then kill) and keeps
everything already recorded. A worker exits by itself if its parent dies (SIGKILL).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Protocol

import initlab.mkl_dispatch as mkl_dispatch
from initlab.checkpoints import Checkpoints
from initlab.config import RunConfig
from initlab.console import warning_line
from initlab.errors import SURFACE, InitlabError, option
from initlab.sweep.engine import (
    DataCache,
    DataLoadError,
    EpochHook,
    Outcome,
    by_position,
    execute_chunk,
    failed_outcomes,
)

POLL_SECONDS = 0.5
START_METHOD = "spawn"


class ChunkSource(Protocol):
    """Where an executor takes its chunks from, one at a time, when it has room for one."""

    @property
    def done(self) -> bool:
        """Whether no chunk is left to take."""
        ...

    def take(self) -> list[RunConfig] | None:
        """The next chunk, or ``None`` when none can be taken now (see :attr:`done`)."""
        ...

    def wait(self) -> None:
        """Sleep until :meth:`take` is worth calling again."""
        ...


class ChunkList:
    """A :class:`ChunkSource` of chunks known up front (no store, no other process)."""

    def __init__(self, chunks: Iterable[list[RunConfig]]) -> None:
        self._left = deque(chunks)

    @property
    def done(self) -> bool:
        return not self._left

    def take(self) -> list[RunConfig] | None:
        return self._left.popleft() if self._left else None

    def wait(self) -> None:
        """Nothing to wait for: every chunk can be taken at once."""


Chunks = ChunkSource | Iterable[list[RunConfig]]
"""What executors run: a :class:`ChunkSource` (a lease) or a plain list of chunks."""


def chunk_source(chunks: Chunks) -> ChunkSource:
    """``chunks`` as a :class:`ChunkSource` (a list is wrapped in a :class:`ChunkList`)."""
    if hasattr(chunks, "take"):
        return chunks  # type: ignore[return-value]
    return ChunkList(chunks)  # type: ignore[arg-type]


class Executor(Protocol):
    """Runs chunks and yields each chunk's :class:`Outcome` list as soon as it is known."""

    def run(
        self, chunks: Chunks, on_epoch: EpochHook | None
    ) -> Generator[list[Outcome], None, None]:
        """Run every chunk, taken from ``chunks`` as there is room; each chunk's outcomes
        arrive together (a stack's runs end together: recorded whole, a Ctrl-C waits for
        them), chunks in completion order (closing the generator stops the work)."""
        ...


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan_workers(n_chunks: int, workers: int | None = None, cores: int | None = None):
    """``(workers, torch threads per worker)``: ``min(cores, n_chunks)`` workers by default,
    never more than ``n_chunks`` (``--workers 1000`` for 4 runs started 1000 processes that
    each imported torch), each with ``cores // workers`` threads (at least 1)."""
    cores = cores or available_cores()
    if workers is None:
        workers = max(1, min(cores, n_chunks))
    elif workers < 1:
        raise InitlabError(f"{option('--workers')} must be at least 1, got {workers}")
    workers = min(workers, max(1, n_chunks))
    return workers, max(1, cores // workers)


class InlineExecutor:
    """Runs the chunks one after another in this process."""

    def __init__(
        self,
        engine: str = "auto",
        data: DataCache | None = None,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.engine, self.data, self.checkpoints = engine, data or DataCache(), checkpoints

    def run(self, chunks: Chunks, on_epoch: EpochHook | None) -> Iterator[list[Outcome]]:
        source = chunk_source(chunks)
        while not source.done:
            chunk = source.take()
            if chunk is None:  # the runs left are held by other processes
                source.wait()
                continue
            yield execute_chunk(chunk, self.data, self.engine, on_epoch, self.checkpoints)


class ProcessExecutor:
    """Runs the chunks in ``workers`` spawned processes with ``threads`` torch threads each."""

    def __init__(
        self,
        workers: int,
        threads: int,
        engine: str = "auto",
        data_dir: str | None = None,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.workers, self.threads, self.engine, self.data_dir = workers, threads, engine, data_dir
        self.checkpoints = checkpoints

    def run(self, chunks: Chunks, on_epoch: EpochHook | None) -> Iterator[list[Outcome]]:
        ctx = mp.get_context(START_METHOD)
        tasks, events = ctx.Queue(), ctx.Queue()
        dispatch = _Dispatch(chunk_source(chunks), tasks, events, on_epoch)
        try:
            yield from dispatch.outcomes(lambda: self._start(ctx, tasks, events), self.workers)
        finally:
            _stop(dispatch.procs, tasks, events)

    def _start(self, ctx, tasks, events) -> list:
        # worker_entry applies the MKL override as the parent did, before torch is imported
        pid = os.getpid()
        args = (tasks, events, self.threads, self.engine, self.data_dir, pid, self.checkpoints)
        args += (SURFACE.get(),)  # the workers' messages name options as the parent's do
        entry = (mkl_dispatch.status(), f"{__name__}:worker_main")
        procs = [
            ctx.Process(
                target=mkl_dispatch.worker_entry,
                args=(*entry, i, *args),
                daemon=True,
                name=f"initlab-{i}",
            )
            for i in range(self.workers)
        ]
        # Children inherit an ignored SIGINT through exec, so Ctrl-C reaches only the parent.
        old = _ignore_sigint()
        try:
            for proc in procs:
                proc.start()
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        return procs


def _ignore_sigint():
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Dispatch:
    """The parent's side of a sweep on worker processes: it starts the workers when the
    first chunk can be taken, hands one chunk to each idle worker, taken from the source
    right then, reads the workers' messages until every chunk is accounted for, and fails
    the chunks of workers that died."""

    def __init__(self, source: ChunkSource, tasks, events, on_epoch: EpochHook | None) -> None:
        self.source, self.tasks, self.events, self.on_epoch = source, tasks, events, on_epoch
        self.procs: list = []
        self.chunks: dict[int, list[RunConfig]] = {}
        self.remaining: set[int] = set()  # handed to the workers, not reported done
        self.running: dict[int, int] = {}  # worker -> the chunk it said it started
        self.notes: set[str] = set()  # the workers' notes printed so far

    def outcomes(self, start: Callable[[], list], workers: int) -> Iterator[list[Outcome]]:
        """Each chunk's outcomes, in completion order; ``start()`` starts the ``workers``
        processes."""
        self._feed(start, workers)
        while self.remaining or not self.source.done:
            try:
                message = self.events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                yield from self._reap()
                self._feed(start, workers)
                continue
            kind, worker = message[0], message[1]
            if kind == "start":
                self.running[worker] = message[2]
            elif kind == "epoch" and self.on_epoch is not None:
                self.on_epoch(self.chunks[message[2]][message[3]], message[4])
            elif kind == "done":
                self.running.pop(worker, None)
                self.remaining.discard(message[2])
                self._feed(start, workers)  # the idle worker gets its next chunk first
                yield message[3]
            elif kind == "note" and message[2] not in self.notes:
                self.notes.add(message[2])
                print(message[2], file=sys.stderr)
            elif kind == "fatal":
                raise DataLoadError(message[2])
        for _ in self.procs:
            self.tasks.put(None)  # nothing left: the workers exit

    def _feed(self, start: Callable[[], list], workers: int) -> None:
        """Put chunks on the task queue until every live worker has one."""
        alive = sum(p.is_alive() for p in self.procs) if self.procs else workers
        while len(self.remaining) < alive and not self.source.done:
            chunk = self.source.take()
            if chunk is None:  # held by other processes: try again at the next poll
                return
            if not self.procs:
                self.procs = start()
            chunk_id = len(self.chunks)
            self.chunks[chunk_id] = chunk
            self.remaining.add(chunk_id)
            self.tasks.put((chunk_id, chunk))

    def _reap(self) -> Iterator[list[Outcome]]:
        """Record the chunks of workers that died; give up when no worker is left."""
        for worker, proc in enumerate(self.procs):
            if proc.is_alive() or worker not in self.running:
                continue
            chunk_id = self.running.pop(worker)
            self.remaining.discard(chunk_id)
            message = f"worker process died (exit code {proc.exitcode}) during this run"
            yield failed_outcomes(self.chunks[chunk_id], message)
        if self.procs and not any(p.is_alive() for p in self.procs):
            codes = sorted({p.exitcode for p in self.procs})
            if codes != [0]:
                raise InitlabError(f"the worker processes died (exit codes {codes})")
            for chunk_id in sorted(self.remaining):  # taken by a worker that vanished
                yield failed_outcomes(self.chunks[chunk_id], "lost when a worker died")
            self.remaining.clear()


def _stop(procs, tasks, events) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + 5
    for proc in procs:
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1)
    for q in (tasks, events):
        q.cancel_join_thread()
        q.close()


def worker_main(
    worker, tasks, events, threads, engine, data_dir, parent_pid, checkpoints=None, spoken="python"
) -> None:
    """A worker process: take chunks until the sentinel, send back their outcomes. Its
    messages name options as the parent's surface does (``spoken``: ``"cli"`` or
    ``"python"``, :func:`initlab.errors.option`)."""
    import torch

    SURFACE.set(spoken)
    _exit_with_parent(parent_pid)
    torch.set_num_threads(threads)
    warnings.showwarning = _relay_notes(events, worker)
    cache = DataCache(data_dir)

    while (item := tasks.get()) is not None:
        chunk_id, configs = item
        events.put(("start", worker, chunk_id))
        send = functools.partial(_send_epoch, events, worker, chunk_id)
        hook = by_position(configs, send)
        try:
            outcomes = execute_chunk(configs, cache, engine, hook, checkpoints)
        except DataLoadError as exc:
            events.put(("fatal", worker, str(exc)))
            return
        events.put(("done", worker, chunk_id, outcomes))


def _relay_notes(events, worker: int) -> Callable[..., None]:
    """A :func:`warnings.showwarning` sending every warning, as its one line
    (:func:`initlab.console.warning_line`), to the parent, which prints each distinct line
    once however many workers give it."""

    def relay(message, category, filename, lineno, file=None, line=None) -> None:
        events.put(("note", worker, warning_line(message, category, filename, lineno)))

    return relay


def _exit_with_parent(parent_pid: int) -> None:
    """End this process when its parent is gone (e.g. SIGKILLed), checked every second."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _send_epoch(events, worker: int, chunk_id: int, index: int, record: dict) -> None:
    events.put(("epoch", worker, chunk_id, index, record))
