"""``initlab study NAME``: reproduce a classic result and say whether it was reproduced."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.options import AddressOption, BackendOption, EngineOption, WorkersOption
from initlab.cli.tables import print_frame
from initlab.console import stderr_console, stdout_console
from initlab.errors import InitlabError, UnknownNameError

if TYPE_CHECKING:
    from initlab.studies.runner import StudyOutcome

err = stderr_console()
out = stdout_console()


@app.command()
@opt.target_options("device")
def study(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a study name, or 'list'")],
    scale: Annotated[
        str, typer.Option(help="tiny (seconds), default (minutes), full (paper)")
    ] = "default",
    full: Annotated[
        bool, typer.Option("--full", help="the paper's scale (same as --scale full)")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="store + report here (default results/studies/NAME-SCALE)"),
    ] = None,
    backend: BackendOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    engine: EngineOption = "auto",
    data_dir: opt.DataDir = None,
    gpus_per_trial: opt.GpusPerTrial = None,
    given: dict[str, Any] | None = None,
) -> None:
    """Run a built-in study (resumable), check the paper's expected outcomes, write a report."""
    from initlab.atomic_files import check_output_dir
    from initlab.cli.runs import run_checked
    from initlab.studies import get
    from initlab.studies.runner import check_scale, finish
    from initlab.sweep.grid import expand
    from initlab.sweep.targets import override_spec
    from initlab.train.device import check_precision, resolve_device

    if name == "list":
        _print_list()
        return
    if full and scale not in ("default", "full"):
        raise InitlabError(f"--full is --scale full: give one of --full and --scale {scale}")
    try:
        the_study = get(name)
    except UnknownNameError as exc:  # `initlab study lsit`: the command's own word too
        raise UnknownNameError("study", name, [*exc.choices, "list"]) from None
    scale = check_scale("full" if full else scale)
    target = (
        out_dir
        if out_dir is not None
        else Path("results") / "studies" / f"{the_study.command_name}-{scale}"
    )
    spec = override_spec(the_study.spec(scale), given or {})
    configs = expand(spec)
    for device, precision in {(c.device, c.precision) for c in configs}:
        check_precision(precision, resolve_device(device))  # before the banner: one line
    check_output_dir(target)  # a file there: one line, not the banner and then the error
    out.print(Text.assemble((the_study.title, "bold"), f" — {the_study.paper}\n{the_study.claim}"))
    title = f"{the_study.command_name} ({scale}): test accuracy"
    results = run_checked(spec, configs, target, title=title, ctx=ctx, console=out, err=err)
    outcome = finish(the_study, scale, results, target, str(data_dir) if data_dir else None)
    _print_verdicts(outcome)
    if outcome.report is not None:
        out.print(f"report: {outcome.report.html}")


MARKS = {
    True: ("✔ reproduced", "green"),
    False: ("✘ NOT reproduced", "red"),
    None: ("? undecided", "yellow"),
}


def _print_verdicts(outcome: StudyOutcome) -> None:
    out.print(f"\n{outcome.verdict_line()}", style="bold")
    for e in outcome.expectations:
        out.print(Text.assemble(MARKS[e.reproduced], f"  {e.claim}"), highlight=False)
        out.print(f"    {e.evidence}", highlight=False)


def _print_list() -> None:
    import pandas as pd

    from initlab.studies import SCALES, get, names

    rows = [  # named as the docs and README write them (gpt-init); both spellings run
        {"study": get(n).command_name, "title": get(n).title, "paper": get(n).paper}
        for n in names()
    ]
    print_frame(pd.DataFrame(rows), out, title=f"built-in studies (scales: {', '.join(SCALES)})")
