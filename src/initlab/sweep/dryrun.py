"""``initlab sweep SPEC --dry-run``: what a spec would run and cost, without running it.

A spec within its run limit is listed exactly: every run's key, swept settings, parameters,
training memory, GFLOP, estimated time and stored status (the first :data:`MAX_ROWS` rows
are shown), then the totals of the runs still to do. A spec over the limit is never
expanded: its size comes from :func:`~initlab.sweep.grid.count_runs`, its first rows are
listed, and its totals are extrapolated from :data:`SAMPLE_SIZE` runs drawn uniformly from
the grid (:func:`~initlab.sweep.estimate.sampled_totals`) — a grid of 10^6 runs takes well
under a second and a few MB.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from initlab.checkpoints import Checkpoints, checkpoint_dir
from initlab.store import open_store
from initlab.sweep import estimate
from initlab.sweep.executor import plan_workers
from initlab.sweep.footprint import memory_warnings
from initlab.sweep.grid import DEFAULT_MAX_RUNS, check_max_runs, iter_runs, sample_runs
from initlab.sweep.runner import default_workers
from initlab.sweep.spec import Spec

MAX_ROWS = 500
"""Rows of the run table shown (the totals always cover every run)."""
OVER_LIMIT_ROWS = 20
"""Rows shown of a spec over its run limit (it cannot run as it is: a glimpse is enough)."""
SAMPLE_SIZE = 1000
"""Runs drawn to estimate the totals of a spec over its run limit."""
DONE = ("ok", "stuck", "diverged")


@dataclass
class DryRun:
    """The table to show, the summary lines and the memory warnings of a dry run."""

    total: int
    table: pd.DataFrame
    models: list[str]
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def dry_run(
    spec: Spec,
    store: Path,
    workers: int | None = None,
    calibrate: bool = False,
    max_runs: int | None = DEFAULT_MAX_RUNS,
) -> DryRun:
    """Size, cost and status of ``spec``'s runs (``store``: the results file, read if it
    exists); nothing is trained or written."""
    total = check_max_runs(spec, None)
    exact = max_runs is None or total <= max_runs
    runs = list(iter_runs(spec) if exact else itertools.islice(iter_runs(spec), OVER_LIMIT_ROWS))
    sample = [] if exact else sample_runs(spec, SAMPLE_SIZE)
    estimate.check_buildable(itertools.chain(runs, sample))
    statuses, older = {}, ""
    if store.exists():
        with open_store(store) as opened:
            statuses = opened.statuses(c.key() for c in runs)
            older = opened.older_versions([c for c in runs if statuses.get(c.key()) not in DONE])
    rates = estimate.calibrate() if calibrate else None
    per_gflop, per_step = rates or (estimate.SECONDS_PER_GFLOP, estimate.SECONDS_PER_STEP)
    table = estimate.cost_table(runs, spec.swept, statuses, per_gflop, per_step)
    table = _resumed(table, store)
    source = (
        f"calibrated here: {1 / per_gflop:.0f} GFLOP/s, {per_step * 1e3:.2f} ms/step per thread"
        if rates
        else "documented constants; --calibrate measures this machine"
    )
    models = model_lines(estimate.model_table(itertools.chain(runs, sample)))
    warnings = memory_warnings(itertools.chain(runs, sample))
    result = DryRun(total, table, models, warnings=warnings)
    if exact:
        result.lines = _exact_lines(table, runs, store, workers, source)
    else:
        result.lines = _sampled_lines(spec, total, sample, max_runs, source)
    result.warnings += [f"note: {older}"] if older else []
    return result


def _resumed(table: pd.DataFrame, store: Path) -> pd.DataFrame:
    """``table`` with each run still to do that has an epoch checkpoint beside ``store``
    (:mod:`initlab.checkpoints`) marked ``saved after epoch E``, and its epochs, GFLOP and
    seconds cut to the epochs left: what the sweep will train."""
    folder = checkpoint_dir(store)
    if table.empty or not folder.is_dir():
        return table
    saved = Checkpoints(folder, math.inf)
    table = table.copy()
    for i, row in table.iterrows():
        epoch = 0 if row["status"] in DONE else saved.saved_epoch(row["key"])
        if 0 < epoch < row["epochs"]:
            left = (row["epochs"] - epoch) / row["epochs"]
            table.loc[i, ["gflop", "seconds"]] = row[["gflop", "seconds"]] * left
            table.loc[i, "epochs"] = row["epochs"] - epoch
            table.loc[i, "status"] = f"saved after epoch {epoch}"
    return table


def _exact_lines(table, runs, store: Path, workers: int | None, source: str) -> list[str]:
    done = table["status"].isin(DONE)
    todo = table[~done]
    n_workers = plan_workers(len(todo), default_workers(runs, workers))[0] if len(todo) else 1
    serial = float(todo["seconds"].sum())
    unknown = int(todo["seconds"].isna().sum())
    resumed = int(todo["status"].str.startswith("saved after").sum())
    resumes = f" ({resumed} resume from epoch checkpoints)" if resumed else ""
    line = (
        f"{len(table)} runs, {int(done.sum())} already done in {store}; to run: {len(todo)} "
        f"runs{resumes}, {int(todo['epochs'].sum())} model-epochs"
    )
    if unknown < len(todo):
        line += (
            f", {todo['gflop'].sum() / 1e3:.3g} TFLOP; estimated {duration(serial)} on one "
            f"core, ~{duration(serial / n_workers)} with {n_workers} worker(s) ({source})"
        )
    if unknown:
        line += (
            f"; {unknown} runs not costed (their data or model is sized only when the sweep "
            "runs: user data is read then, and a factory that cannot build on the meta device "
            "is called then; see the model lines)"
        )
    return [line]


def _sampled_lines(spec, total: int, sample, max_runs: int, source: str) -> list[str]:
    sums = estimate.sampled_totals(sample, total)
    lines = [
        f"{total:,} runs: over the limit of {max_runs:,}, so `initlab sweep` refuses this spec "
        f"unless --max-runs {total} is given (its first {OVER_LIMIT_ROWS} runs "
        "are listed above)"
    ]
    if sums["costed"]:
        lines.append(
            f"estimated from {sums['costed']} runs drawn at random: "
            f"{sums['model_epochs']:,.0f} model-epochs, {sums['gflop'] / 1e3:.3g} TFLOP, "
            f"{duration(sums['seconds'])} on one core ({source})"
        )
    return lines


def model_lines(table: pd.DataFrame) -> list[str]:
    """One line per model: ``mlp 300-100 (batch 32, sgd): 266,610 parameters; training
    memory 4.3 MB = 2.1 MB weights, gradients and optimizer state + 2.1 MB activations;
    0.96 GFLOP per epoch``. Models that differ only where size and cost do not (the
    activation) share one line."""
    lines = []
    for row in table.to_dict("records"):
        head = f"{row['model']} (batch {row['batch']}, {row['optimizer']})"
        if pd.isna(row.get("params")):
            lines.append(f"{head}: {row.get('note')}")
            continue
        text = f"{head}: {row['params']:,.0f} parameters"
        if not pd.isna(row["memory"]):
            text += (
                f"; training memory {_mb(row['memory'])} = {_mb(row['weights'])} weights, "
                f"gradients and optimizer state + {_mb(row['activations'])} activations"
            )
        if not pd.isna(row["GFLOP/epoch"]):
            text += f"; {row['GFLOP/epoch']:.3g} GFLOP per epoch"
        lines.append(text if not row.get("note") else f"{text} ({row['note']})")
    return list(dict.fromkeys(lines))


def _mb(megabytes: float) -> str:
    if megabytes >= 1000:
        return f"{megabytes / 1000:.3g} GB"
    return f"{megabytes:.3g} MB"


def duration(seconds: float) -> str:
    """``12.0 s``, ``3.5 min``, ``2.1 h``, ``4.0 days``."""
    if math.isnan(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 3:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
