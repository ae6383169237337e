"""``initlab sweep SPEC``: run an experiment spec into a resumable results store."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.options import (
    AddressOption,
    BackendOption,
    EngineOption,
    WorkersOption,
)
from initlab.cli.outputs import check_output_dir
from initlab.cli.tables import print_frame
from initlab.config import DEFAULT_MAX_RUNS, RunConfig
from initlab.console import stderr_console, stdout_console
from initlab.errors import InitlabError

if TYPE_CHECKING:
    from initlab.sweep.spec import Spec

err = stderr_console()
out = stdout_console()


@app.command()
@opt.target_options()
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
    max_runs: Annotated[
        int,
        typer.Option("--max-runs", min=1, help="refuse specs of more runs than this"),
    ] = DEFAULT_MAX_RUNS,
    gpus_per_trial: opt.GpusPerTrial = None,
    residual_init: opt.ResidualInit = None,
    given: dict[str, Any] | None = None,
) -> None:
    """Run every run of an experiment spec (resumable: run it again to continue).

    --model, --model-arg, --data, --task, --device and --precision replace the spec's fixed
    values (a setting the spec sweeps cannot be fixed here)."""
    from initlab.cli.runs import check_run_options, run_checked
    from initlab.results import SAVED_FILES
    from initlab.store import study_dir
    from initlab.sweep import estimate
    from initlab.sweep.footprint import memory_warnings
    from initlab.sweep.grid import expand
    from initlab.sweep.spec import load_spec
    from initlab.sweep.targets import check_models, override_spec

    if calibrate and not dry_run:
        raise InitlabError("--calibrate measures speed for --dry-run's estimate: add --dry-run")
    given = {**(given or {}), **({"residual_init": residual_init} if residual_init else {})}
    spec = override_spec(load_spec(spec_file), given)
    target = out_dir if out_dir is not None else Path("results") / _slug(spec.name)
    check_output_dir(study_dir(target), files=SAVED_FILES)  # before any model is loaded
    check_models(spec, given, spec_file.name)
    if not (spec.fixed or spec.axes or spec.include):
        err.print(defaults_note(spec_file.name), soft_wrap=True, markup=False, highlight=False)
    if dry_run:  # the options a real run would refuse, refused here too
        check_run_options(backend, address, engine, workers, gpus_per_trial)
        _dry_run(spec, target, workers, calibrate, max_runs)
        return
    configs = expand(spec, max_runs)
    estimate.check_buildable(configs)
    for line in memory_warnings(configs):
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    title = f"{spec.name}: test accuracy by {' / '.join(spec.group_by)}"
    run_checked(spec, configs, target, title=title, ctx=ctx, console=out, err=err)


def defaults_note(source: str) -> str:
    """The note for a spec that sets no setting: every run uses :class:`RunConfig`'s
    defaults (the full default lab), which the user probably did not mean to run."""
    default = RunConfig()
    hidden = "-".join(map(str, default.hidden))
    return (
        f"note: {source} sets no settings ([fixed], [sweep]): running the defaults "
        f"(dataset {default.dataset}, model {default.model} {hidden}, init {default.init}, "
        f"{default.epochs} epochs, {default.optimizer} lr {default.lr:g}); "
        "--dry-run shows the cost"
    )


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "sweep"


def _dry_run(spec: Spec, target: Path, workers: int | None, calibrate: bool, max_runs: int) -> None:
    """Print the runs (key + swept settings + size + cost) and the totals; start nothing."""
    from initlab.store import store_path
    from initlab.sweep.dryrun import MAX_ROWS, dry_run, duration

    plan = dry_run(spec, store_path(target), workers, calibrate, max_runs)
    shown = plan.table.head(MAX_ROWS).copy()
    shown["seconds"] = shown["seconds"].map(duration)
    shown = shown.rename(columns={"gflop": "GFLOP", "seconds": "est. time"})
    print_frame(shown, out, title=f"{spec.name}: {plan.total:,} runs")
    if plan.total > len(shown):
        out.print(f"... {plan.total - len(shown):,} more runs not shown")
    for line in [*plan.models, *plan.lines]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for line in [*plan.warnings, *_devices_missing_here(spec)]:
        err.print(line, markup=False, highlight=False, soft_wrap=True)


def _devices_missing_here(spec: Spec) -> list[str]:
    """A warning per device or precision of the runs that this machine lacks: the run here
    would refuse it (a sweep planned here for a Ray cluster's GPUs is not refused). Read
    from the spec's values, never its whole grid (a dry run may sample millions of runs)."""
    from initlab.config import RunConfig
    from initlab.train.device import check_precision, resolve_device

    said = []
    devices = _spec_values(spec, "device", RunConfig.device)
    for device, precision in itertools.product(
        devices, _spec_values(spec, "precision", RunConfig.precision)
    ):
        try:
            check_precision(precision, resolve_device(device))
        except InitlabError as exc:
            said.append(f"warning: {exc} (a run on this machine would stop here)")
    return said


def _spec_values(spec: Spec, key: str, default: Any) -> list[Any]:
    """Every value ``key`` takes in ``spec``: fixed (else ``default``), swept or included."""
    values = [spec.fixed.get(key, default)]
    for axis in spec.axes:
        if key in axis.keys:
            values += [combo[axis.keys.index(key)] for combo in axis.values]
    values += [point[key] for point in spec.include if key in point]
    return list(dict.fromkeys(values))
