"""Running a study into a results store: resume, execute, record — the one code path behind
``initlab sweep``, ``initlab compare`` and :func:`initlab.compare`.

:func:`run_sweep` records the study (its spec and runs, in grid order), skips the runs the
store already has finished (``ok``, ``stuck``, ``diverged``; ``failed`` runs are retried),
cuts the rest into chunks, hands them to an executor (in-process, worker processes or Ray)
and commits each outcome as it arrives, so an interruption loses only the runs in flight.

Several processes may run the same study into one store at once (two identical
``initlab compare --out same/``, a sweep started on each of several machines sharing a
directory): each leases a chunk right before it hands it to an idle worker
(:class:`initlab.store.leases.Lease`; the worker processes start once per sweep), so they
share the work, a finished run is never trained or overwritten again, and the runs of a
process that was killed are taken over when its leases expire. A store that cannot be
written (a full disk) stops the sweep with :class:`SweepStopped`; all committed stays readable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import initlab.data as datasets
from initlab.atomic_files import DISK_FULL
from initlab.checkpoints import Checkpoints, checkpoint_seconds
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.errors import InitlabError, UnknownNameError, option
from initlab.interrupts import interrupts_deferred
from initlab.notes import note
from initlab.results import ResultSet
from initlab.run_status import FINISHED
from initlab.store import Store, open_store
from initlab.store.leases import Lease
from initlab.store.location import is_busy, locked_line
from initlab.store.opening import BUSY_TIMEOUT
from initlab.sweep.engine import (
    DataCache,
    Outcome,
    data_key,
    failed_result,
    plan_chunks,
    resolve_engine,
)
from initlab.sweep.estimate import check_buildable, run_cost
from initlab.sweep.executor import (
    Executor,
    InlineExecutor,
    ProcessExecutor,
    available_cores,
    plan_workers,
)
from initlab.sweep.grid import DEFAULT_MAX_RUNS, expand
from initlab.sweep.report import (
    SweepInterrupted,
    SweepPlan,
    SweepProgress,
    SweepReport,
    SweepStopped,
)
from initlab.sweep.resume import config_identity, note_left, resume_from, store_checkpoints
from initlab.sweep.spec import Spec, load_spec
from initlab.train.stack import preferred_strategy

BACKENDS = ("local", "ray")
LEASE_SPLIT = 4
"""With a store on disk, a sweep is cut into up to this many chunks, so that other
processes sharing the store find work to lease (never into stacks smaller than
:data:`initlab.train.memory.MIN_CHUNK` for it: :func:`~initlab.sweep.engine.plan_chunks`)."""
INLINE_BELOW_SECONDS = 20.0
"""With ``workers=None``, a local sweep whose estimated serial time is below this runs in
this process: starting a worker costs seconds (importing torch), more than it saves."""


@dataclass(frozen=True)
class Study:
    """What the store records about a spec: its id (the spec's hash), name, spec, grouping."""

    study_id: str
    name: str
    spec: dict
    group_by: tuple[str, ...]

    @classmethod
    def from_spec(cls, spec: Spec) -> Study:
        return cls(spec.spec_hash(), spec.name, spec.to_dict(), spec.group_by)


def run_sweep(
    configs: Sequence[RunConfig],
    store: Store,
    study: Study,
    *,
    backend: str = "local",
    workers: int | None = None,
    engine: str = "auto",
    address: str | None = None,
    data_dir: str | None = None,
    dataset: Dataset | None = None,
    progress: SweepProgress | None = None,
    gpus_per_trial: float = 0.0,
) -> SweepReport:
    """Run the runs of ``study`` that ``store`` does not have finished; record each outcome.

    ``workers``: parallel workers (local: processes, ``1`` = this process; default one per
    core, at most one per chunk); ``dataset``: ``configs[0]``'s data, already loaded (used
    in this process and, on Ray, put in the object store instead of loading it again);
    ``gpus_per_trial``: GPUs each Ray task reserves (Ray only).
    Raises :class:`SweepInterrupted` on Ctrl-C, after stopping the workers.
    """
    progress = progress or SweepProgress()
    engine = resolve_engine(engine)
    executor_factory = check_backend(backend, address, gpus_per_trial)
    check_buildable(configs, read_data=True)  # user data is loaded here, before the store
    saves = store_checkpoints(store)
    keys = [c.key() for c in configs]
    try:
        store.add_study(study.study_id, study.name, study.spec, study.group_by, keys)
    except sqlite3.OperationalError as exc:  # before any work: nothing to lose
        if not is_busy(exc):
            raise
        raise InitlabError(locked_line(store.path, BUSY_TIMEOUT)) from None
    done = store.finished_ids(keys)
    pending = list({c.key(): c for c in configs if c.key() not in done}.values())
    report = SweepReport(study.study_id, len(set(keys)), len(done))
    resumed = resume_from(saves, done, pending) if saves is not None else {}
    if not pending:
        return report
    if older := store.older_versions(pending):
        note(older)
    report.planned = {config_identity(c): c.key() for c in pending}
    if backend == "local":
        fetch_missing_data(pending, data_dir)
        workers = default_workers(pending, workers, read_data=True)
    share = LEASE_SPLIT if store.path is not None else 0
    chunks = plan_chunks(pending, engine, workers or available_cores(), share)
    n_workers, threads = plan_workers(len(chunks), workers)
    preloaded = {data_key(configs[0]): dataset} if dataset is not None else None
    n_workers = n_workers if backend == "local" else workers  # Ray: None = all its CPUs
    if backend == "local" and n_workers == 1:  # in this process: its threads, not the plan's
        threads = torch.get_num_threads()
    executor = executor_factory(n_workers, threads, engine, data_dir, preloaded, saves)
    progress.start(
        SweepPlan(len(set(keys)), len(done), pending, backend, engine, n_workers, threads, resumed)
    )
    _execute(executor, Lease(store, chunks), report, progress, saves)
    if saves is not None:
        note_left(saves.tidy(), saves.directory)
    report.by_others = len(store.finished_ids(keys)) - report.finished
    return report


def fetch_missing_data(pending: Sequence[RunConfig], data_dir: str | None) -> None:
    """Download the datasets the runs need and this machine lacks, once, before any worker
    starts: workers would each try, and an offline machine would fail only after the
    progress bar started. Raises :class:`InitlabError` saying how to get the files."""
    for name in sorted({c.dataset for c in pending}):
        if datasets.availability(name, data_dir).startswith("will download"):
            datasets.load(name, data_dir=data_dir)


def default_workers(
    pending: Sequence[RunConfig], workers: int | None, read_data: bool = False
) -> int | None:
    """``workers`` as given, else 1 when the runs are estimated to take less than
    :data:`INLINE_BELOW_SECONDS` in total, else ``None`` (one per core). Runs on user data
    are costed only with ``read_data`` (the sweep: the data is loaded once, as the runs load
    it); a run that cannot be costed (user data not read, a factory that does not build on
    the meta device) counts as big."""
    if workers is not None:
        return workers
    costs = [run_cost(c, read_data) for c in pending]
    if any(cost is None for cost in costs):
        return None
    serial = sum(cost.seconds() for cost in costs if cost is not None)
    return 1 if serial < INLINE_BELOW_SECONDS else None


def _execute(
    executor: Executor,
    lease: Lease,
    report: SweepReport,
    progress: SweepProgress,
    checkpoints: Checkpoints | None = None,
) -> None:
    """Run the chunks, each leased when the executor has room for it; record each outcome
    as it arrives (and then delete its run's checkpoint)."""
    started = time.perf_counter()
    try:
        with lease:
            chunks = executor.run(lease, progress.epoch)
            _record(chunks, lease.store, report, progress, checkpoints)
    except KeyboardInterrupt:
        report.interrupted = True
        raise SweepInterrupted(report) from None
    except (sqlite3.OperationalError, OSError) as exc:
        if not (_disk_full(exc) or is_busy(exc)):
            raise
        report.seconds = time.perf_counter() - started
        raise SweepStopped(_stopped_line(lease.store, exc, report), report) from None
    finally:
        report.seconds = time.perf_counter() - started


def _record(
    chunks: Generator[list[Outcome], None, None],
    store: Store,
    report: SweepReport,
    progress: SweepProgress,
    checkpoints: Checkpoints | None,
) -> None:
    """Record each chunk's outcomes as the chunk ends, all of them before a Ctrl-C that
    comes meanwhile (:func:`initlab.interrupts.interrupts_deferred`): a stack's runs are
    trained already, and a Ctrl-C while the first were written lost the others."""
    try:
        for chunk in chunks:
            planned = [as_planned(outcome, report) for outcome in chunk]
            with interrupts_deferred():
                for outcome in planned:
                    _record_one(outcome, store, report, checkpoints)
            for outcome in planned:
                progress.finished(outcome)
    finally:
        chunks.close()  # stops the workers, whatever happened


def _record_one(
    outcome: Outcome, store: Store, report: SweepReport, checkpoints: Checkpoints | None
) -> None:
    if store.record(outcome):  # False: another process finished it first
        report.counts[outcome.result.status] += 1
    if checkpoints is not None and outcome.result.status in FINISHED:
        checkpoints.remove(outcome.run_id or outcome.result.config.key())  # not needed


EDITED = (
    "its model or data file was edited while the sweep ran, so which version it trained is "
    "unknown; run the sweep again to train the file as it is now"
)


def as_planned(outcome: Outcome, report: SweepReport) -> Outcome:
    """``outcome`` under the key its run was planned with. Keys hash a user's model and data
    files, so a run whose key changed since (a file edited while the sweep ran: before the
    run loaded it, or after) may have trained either version: it is ``failed``, so that
    neither version's runs resume from it. Counted in ``report.edited``."""
    planned = report.planned.get(config_identity(outcome.result.config))
    if planned is None:
        return outcome
    if outcome.result.config.key() == planned:
        return replace(outcome, run_id=planned)
    report.edited += 1
    result = failed_result(outcome.result.config, EDITED)
    return replace(outcome, result=result, run_id=planned)


def _disk_full(exc: BaseException) -> bool:
    """``database or disk is full`` (SQLITE_FULL), or ENOSPC/EDQUOT from the OS."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code & 0xFF) == 13 if code is not None else "is full" in str(exc)
    return getattr(exc, "errno", None) in DISK_FULL


def _stopped_line(store: Store, exc: BaseException, report: SweepReport) -> str:
    """Why the sweep stopped (a full disk, or a store another process kept locked), what
    was saved and how to resume."""
    if is_busy(exc):
        return (
            f"results store {store.path} stayed locked by another process for "
            f"{BUSY_TIMEOUT:.0f} s: the sweep stopped; {report.line()}, all saved (a run that "
            "finished while the store was locked trains again); run the same command again "
            "to resume"
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (
        f"cannot write the results store {store.path} ({reason.lower()}): the sweep stopped; "
        f"{report.line()}, all saved; free some space and run the same command again to resume"
    )


def check_backend(backend: str, address: str | None = None, gpus_per_trial: float = 0.0):
    """A function ``(workers, threads, engine, data_dir, preloaded, checkpoints) -> Executor``;
    checks the backend (Ray installed, its address answering) before anything starts."""
    if backend == "local":
        ray = option("--backend ray")
        if address is not None:
            raise InitlabError(f"{option('--address')} is for the Ray backend: add {ray}")
        if gpus_per_trial:
            raise InitlabError(f"{option('--gpus-per-trial')} is for the Ray backend: add {ray}")

        def local(workers, threads, engine, data_dir, preloaded, checkpoints=None) -> Executor:
            if workers == 1:
                return InlineExecutor(engine, DataCache(data_dir, preloaded), checkpoints)
            return ProcessExecutor(workers, threads, engine, data_dir, checkpoints)

        return local
    if backend == "ray":
        from initlab.sweep.ray_address import check_reachable
        from initlab.sweep.ray_backend import RayExecutor, check_gpus_here, import_ray

        ray = import_ray()
        if address is not None and address != "auto" and ":" not in address:
            raise InitlabError(
                f"{option(f'--address {address}')}: give host:port (the head node's GCS, e.g. "
                "10.0.0.1:6379), ray://host:10001 or auto"
            )
        check_reachable(address, ray)
        check_gpus_here(ray, address, gpus_per_trial)  # before any store is touched

        def on_ray(workers, threads, engine, data_dir, preloaded, checkpoints=None) -> Executor:
            return RayExecutor(
                address,
                workers=workers,
                engine=engine,
                data_dir=data_dir,
                preloaded=preloaded,
                gpus_per_trial=gpus_per_trial,
                checkpoints=checkpoints,
            )

        return on_ray
    raise UnknownNameError("backend", backend, BACKENDS)


SWEEP_OPTIONS = (
    "backend", "workers", "engine", "address", "data_dir", "dataset", "progress",
    "gpus_per_trial",
)  # fmt: skip
"""The keywords of :func:`run_sweep` that :func:`run_study` passes on."""


def run_study(
    spec: Spec | str | Path,
    out: str | Path | None = None,
    *,
    configs: Sequence[RunConfig] | None = None,
    max_runs: int | None = DEFAULT_MAX_RUNS,
    **options,
) -> tuple[ResultSet, SweepReport]:
    """Run ``spec`` (a :class:`Spec`, or the path of a spec file) into the store in ``out``
    (a directory or ``.db`` file; in memory when ``None``) and return the study's results
    and the sweep report. ``options`` are those of :func:`run_sweep` (backend, workers,
    engine, address, data_dir, dataset, progress, gpus_per_trial).
    A spec of more than ``max_runs`` runs is refused before any is built (``None``: no limit)."""
    if isinstance(spec, (str, Path)):  # a spec file, as `initlab sweep` takes it
        spec = load_spec(spec)
    if unknown := sorted(set(options) - set(SWEEP_OPTIONS)):
        raise InitlabError(
            f"run_study takes no option {', '.join(map(repr, unknown))} (options: "
            f"{', '.join(SWEEP_OPTIONS)}); run settings such as device go in the spec's fixed"
        )
    configs = list(configs) if configs is not None else expand(spec, max_runs)
    study = Study.from_spec(spec)
    checkpoint_seconds()  # a bad INITLAB_CHECKPOINT_SECONDS: one line, before the store
    preferred_strategy()  # and a bad INITLAB_STRATEGY
    with open_store(out if out is not None else ":memory:", create=True) as store:
        try:
            report = run_sweep(configs, store, study, **options)
        except (SweepInterrupted, SweepStopped) as stop:
            stop.store = store.path
            try:
                with interrupts_deferred():  # an in-memory store's only copy: read it whole
                    stop.results = store.results(study.study_id)
            except KeyboardInterrupt:  # a second Ctrl-C: the results are read, raise them
                pass
            raise
        return _results_of(store, study, report), report


def _results_of(store: Store, study: Study, report: SweepReport) -> ResultSet:
    """The study's results once every run is recorded; a Ctrl-C while they are read (an
    in-memory store closes with this call) raises :class:`SweepInterrupted` holding them."""
    results = None
    try:
        with interrupts_deferred():
            results = store.results(study.study_id)
    except KeyboardInterrupt:
        report.interrupted = True
        stop = SweepInterrupted(report)
        stop.results, stop.store = results, store.path
        raise stop from None
    return results
