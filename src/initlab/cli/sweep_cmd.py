"""``initlab sweep SPEC``: run an experiment spec into a resumable results store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.tables import print_frame
from initlab.config import RunConfig
from initlab.store import open_store, store_path
from initlab.sweep import estimate
from initlab.sweep.executor import plan_workers
from initlab.sweep.grid import expand
from initlab.sweep.runner import default_workers
from initlab.sweep.spec import Spec, load_spec
from initlab.sweep.ui import (
    AddressOption,
    BackendOption,
    EngineOption,
    WorkersOption,
    run_and_report,
)

err = Console(stderr=True)
out = Console()
MAX_ROWS = 500


@app.command()
def sweep(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="a .toml, .yaml or .json spec")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="the study's directory: store + CSVs (default results/NAME)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the runs and their estimated cost; run nothing")
    ] = False,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="with --dry-run: measure this machine's speed")
    ] = False,
    backend: BackendOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    engine: EngineOption = "auto",
    data_dir: opt.DataDir = None,
) -> None:
    """Run every run of an experiment spec (resumable: run it again to continue)."""
    spec = load_spec(spec_file)
    configs = expand(spec)
    estimate.check_buildable(configs)
    target = out_dir if out_dir is not None else Path("results") / _slug(spec.name)
    if dry_run:
        _dry_run(spec, configs, target, workers, calibrate)
        return
    run_and_report(
        spec,
        configs,
        target,
        title=f"{spec.name}: test accuracy by {' / '.join(spec.group_by)}",
        console=out,
        err=err,
        ctx=ctx,
        backend=backend,
        workers=workers,
        engine=engine,
        address=address,
        data_dir=str(data_dir) if data_dir else None,
    )


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "sweep"


def _dry_run(
    spec: Spec, configs: list[RunConfig], target: Path, workers: int | None, calibrate: bool
) -> None:
    """Print the runs (key + swept settings + cost) and the totals; start nothing."""
    path, statuses = store_path(target), {}
    if path.exists():
        with open_store(path) as store:
            statuses = store.statuses(c.key() for c in configs)
    rates = estimate.calibrate() if calibrate else None
    per_gflop, per_step = rates or (estimate.SECONDS_PER_GFLOP, estimate.SECONDS_PER_STEP)
    table = estimate.cost_table(configs, spec.swept, statuses, per_gflop, per_step)
    shown = table.head(MAX_ROWS).copy()
    shown["seconds"] = shown["seconds"].map(_duration)
    shown = shown.rename(columns={"gflop": "GFLOP", "seconds": "est. time"})
    print_frame(shown, out, title=f"{spec.name}: {len(configs)} runs")
    if len(table) > MAX_ROWS:
        out.print(f"... {len(table) - MAX_ROWS} more runs not shown")
    done = table["status"].isin(("ok", "stuck", "diverged"))
    todo = table[~done]
    n_workers = plan_workers(len(todo), default_workers(configs, workers))[0] if len(todo) else 1
    serial = float(todo["seconds"].sum())
    source = (
        f"calibrated here: {1 / per_gflop:.0f} GFLOP/s, {per_step * 1e3:.2f} ms/step per thread"
        if rates
        else "documented constants; --calibrate measures this machine"
    )
    out.print(
        f"{len(table)} runs, {int(done.sum())} already done in {path}; to run: {len(todo)} runs, "
        f"{int(todo['epochs'].sum())} model-epochs, {todo['gflop'].sum() / 1e3:.3g} TFLOP; "
        f"estimated {_duration(serial)} on one core, ~{_duration(serial / n_workers)} with "
        f"{n_workers} worker(s) ({source})"
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
