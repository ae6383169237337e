"""What an interrupted sweep tells its user: what was kept, which unfinished runs resume
from their epoch checkpoints, and the exact command that resumes."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console

from initlab.checkpoints import checkpoint_seconds
from initlab.config import RunConfig
from initlab.store import Store
from initlab.sweep.report import SweepReport
from initlab.sweep.resume import store_checkpoints


def resume_command(ctx: typer.Context | None) -> str:
    """The command line being run, rebuilt from the parsed options (for the resume hint)."""
    if ctx is None:
        return "the same command again"
    parts = ctx.command_path.split()
    root = ctx.find_root()
    if root is not ctx and root.info_name:  # the root command: as the user started it
        parts[: len(root.info_name.split())] = invoked_program()
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            parts.append(str(value))
        elif value is None or value == param.default or param.name == "dry_run":
            continue
        elif getattr(param, "is_flag", False):
            opts = param.opts if value else param.secondary_opts
            parts += opts[:1]
        elif getattr(param, "multiple", False):  # --model-arg a=1 --model-arg b=2
            for item in value:
                parts += [param.opts[0], str(item)]
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(parts)


def invoked_program() -> list[str]:
    """How the user started initlab, to start the resume command the same way: ``initlab``
    when that is the one on ``PATH``, else the path they ran (``.venv/bin/initlab`` of a
    virtual environment not activated), or ``/path/to/python -m initlab``."""
    argv0 = sys.argv[0] if sys.argv else ""
    main = Path(argv0)  # initlab's own __main__.py (not pytest's, under python -m pytest)
    if main.name == "__main__.py" and main.parent.name == "initlab":  # this interpreter's
        return [sys.executable, "-m", "initlab"]
    if os.path.basename(argv0) == "initlab" and os.sep in argv0:
        found = shutil.which("initlab")
        if found is None or os.path.realpath(found) != os.path.realpath(argv0):
            return [argv0]
    return ["initlab"]


def resumable(store: Store, runs: Sequence[RunConfig]) -> int:
    """How many of ``runs`` have an epoch checkpoint in ``store``'s folder to resume from."""
    checkpoints = store_checkpoints(store)
    if checkpoints is None:
        return 0
    return sum(checkpoints.saved_epoch(config.key()) > 0 for config in runs)


def unfinished_fate(runs: int, saved: int, on_disk: bool = True) -> str:
    """What happens to ``runs`` unfinished runs of which ``saved`` have a checkpoint (a
    store ``on_disk`` has checkpoints; one in memory, none)."""
    seconds = checkpoint_seconds()
    every = f"after an epoch once {seconds:g} s of training have passed"
    every = "after every epoch" if seconds == 0 else every
    if saved == 0:
        checkpoint = f" and saved in a checkpoint only {every}" if on_disk else ""
        if on_disk and math.isinf(seconds):
            checkpoint = " and INITLAB_CHECKPOINT_SECONDS=inf turned checkpoints off"
        return (
            "not kept: a run is stored when it finishes (runs trained together in one stack "
            f"finish together){checkpoint}, so the command trains them again from the start"
        )
    others = f"; the other {runs - saved} train again from the start" if saved < runs else ""
    return (
        f"{saved} of them resume from their checkpoints (saved {every}: the epochs since "
        f"are trained again){others}"
    )


def print_interrupted(
    console: Console,
    report: SweepReport,
    store: Path | None,
    ctx: typer.Context | None,
    unfinished: tuple[int, int] = (0, 0),
    saved: int = 0,
    tables: str = "",
) -> None:
    """Two lines: what was saved, what was lost (``unfinished``: runs started and not
    finished, and their epochs; ``saved``: how many of them have a checkpoint to resume
    from), what became of the tables (``tables``, :func:`initlab.sweep.ui.save_interrupted`)
    and where the runs are kept; then the exact command that resumes."""
    runs, epochs = unfinished
    parts = [f"interrupted: {report.line()}"]
    if runs:
        lost = unfinished_fate(runs, saved, on_disk=store is not None)
        parts.append(f"{runs} unfinished run(s) had trained {epochs} epoch(s) between them; {lost}")
    parts += [tables] if tables else []
    if store is None:
        parts.append("nothing was saved: use --out DIR to keep runs and resume later")
    elif report.finished:
        parts.append(f"finished runs are saved in {store}; resume with:")
    elif saved:
        parts.append(f"no run finished yet, nothing is in {store}; resume with:")
    else:
        parts.append(f"no run finished, so none is saved in {store}; start again with:")
    console.print("; ".join(parts), soft_wrap=True, markup=False, highlight=False)
    if store is not None:
        command = resume_command(ctx)
        console.print(f"  {command}", soft_wrap=True, markup=False, highlight=False)
