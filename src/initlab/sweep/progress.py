"""The command line's progress for a sweep, on stderr (:class:`CountedProgress`: a bar in
model-epochs on a terminal; in a log or a pipe a line per finished run, at most one every
10 s, and the last)."""

from __future__ import annotations

from rich.console import Console

from initlab.config import RunConfig
from initlab.progress_display import CountedProgress
from initlab.sweep.engine import Outcome
from initlab.sweep.report import SweepPlan, SweepProgress
from initlab.sweep.runner import config_identity

LABEL_WIDTH = 34
"""Run labels are cut to this many characters on the bar."""


class RichProgress(SweepProgress):
    """Model-epochs done of the sweep's total, with elapsed time and ETA (module docstring)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.shown = CountedProgress(console, "model-epochs", label_width=LABEL_WIDTH)
        self._epochs: dict[str, int] = {}
        self._runs = self._pending = 0

    def start(self, plan: SweepPlan) -> None:
        if plan.done:
            self.console.print(f"{plan.done} of {plan.total} runs already done, resuming")
        where = f"{plan.workers} worker(s) × {plan.threads} thread(s)"
        if plan.backend == "ray":
            where = "Ray tasks"
        self.console.print(
            f"running {len(plan.pending)} run(s) on {where} ({plan.backend}, {plan.engine} engine)"
        )
        self._pending = len(plan.pending)
        self.shown.start(sum(c.epochs for c in plan.pending))

    def epoch(self, config: RunConfig, record: dict) -> None:
        run = config_identity(config)  # not the key: it changes if the user's file does
        self._epochs[run] = self._epochs.get(run, 0) + 1
        self.shown.advance(1, config.label)

    def finished(self, outcome: Outcome) -> None:
        config = outcome.result.config
        rest = config.epochs - self._epochs.pop(config_identity(config), 0)
        status = outcome.result.status
        shown = config.label if status in ("ok", "stuck") else f"{config.label} {status}"
        self._runs += 1
        said = f"run {self._runs} of {self._pending} finished ({shown})"
        self.shown.advance(max(rest, 0), shown, finished=said)

    def stop(self) -> None:
        self.shown.stop()
