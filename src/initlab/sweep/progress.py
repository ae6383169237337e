"""The command line's progress for a sweep, on stderr: on a terminal one bar in
model-epochs with elapsed time and ETA; in a log or a pipe, where a bar is drawn once at the
end (and squeezed to 80 columns), a line per finished run instead, at most one every
:data:`LOG_EVERY` seconds (and always the last)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from initlab.config import RunConfig
from initlab.sweep.engine import Outcome
from initlab.sweep.report import SweepPlan, SweepProgress
from initlab.sweep.runner import config_identity

LABEL_WIDTH = 34
"""Run labels are cut to this many characters, so the counts and times stay readable."""
LOG_EVERY = 10.0
"""Seconds between two progress lines in a log."""


class RichProgress(SweepProgress):
    """Model-epochs done of the sweep's total, with elapsed time and ETA (module docstring)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self._task = None
        self._epochs: dict[str, int] = {}
        self._done = self._total = 0
        self._runs = self._pending = 0
        self._started, self._logged = 0.0, -LOG_EVERY  # the first finished run: a line

    def start(self, plan: SweepPlan) -> None:
        if plan.done:
            self.console.print(f"{plan.done} of {plan.total} runs already done, resuming")
        where = f"{plan.workers} worker(s) × {plan.threads} thread(s)"
        if plan.backend == "ray":
            where = "Ray tasks"
        self.console.print(
            f"running {len(plan.pending)} run(s) on {where} ({plan.backend}, {plan.engine} engine)"
        )
        self._total = sum(c.epochs for c in plan.pending)
        self._pending, self._started = len(plan.pending), time.perf_counter()
        if not self.console.is_terminal:
            return
        self.bar = Progress(
            TextColumn(f"[progress.description]{{task.description:<{LABEL_WIDTH}.{LABEL_WIDTH}}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("model-epochs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.bar.start()
        self._task = self.bar.add_task("starting", total=self._total)

    def epoch(self, config: RunConfig, record: dict) -> None:
        run = config_identity(config)  # not the key: it changes if the user's file does
        self._epochs[run] = self._epochs.get(run, 0) + 1
        self._advance(1, config.label)

    def finished(self, outcome: Outcome) -> None:
        config = outcome.result.config
        rest = config.epochs - self._epochs.pop(config_identity(config), 0)
        status = outcome.result.status
        shown = config.label if status in ("ok", "stuck") else f"{config.label} {status}"
        self._runs += 1
        self._advance(max(rest, 0), shown)
        if self.bar is None:
            self._log(shown)

    def _advance(self, epochs: int, label: str) -> None:
        self._done += epochs
        if self.bar is not None:
            self.bar.update(self._task, advance=epochs, description=label)

    def _log(self, label: str) -> None:
        """``run 3 of 12 finished (he_normal/relu seed 2); 40/120 model-epochs, 0:01:05
        elapsed, ETA 0:02:10``: at most one every :data:`LOG_EVERY` s, and the last."""
        now = time.perf_counter()
        if now - self._logged < LOG_EVERY and self._runs < self._pending:
            return
        self._logged, elapsed = now, now - self._started
        left = elapsed * (self._total - self._done) / self._done if self._done else float("nan")
        eta = _clock(left) if left == left else "?"
        self.console.print(
            f"run {self._runs} of {self._pending} finished ({label}); {self._done}/"
            f"{self._total} model-epochs, {_clock(elapsed)} elapsed, ETA {eta}",
            soft_wrap=True, markup=False, highlight=False,
        )  # fmt: skip

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _clock(seconds: float) -> str:
    """``0:01:05``."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
