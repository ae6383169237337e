"""Counted work shown on stderr, one way for every long command (a sweep's model-epochs,
the coordinate check's models): on a terminal a bar (done of total, elapsed, ETA); in a
log or a pipe, where a bar is drawn once at the end (squeezed to 80 columns), a line when a
piece of work ends, at most one every :data:`LOG_EVERY` seconds, and the last. Never a
carriage return off a terminal."""

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

LOG_EVERY = 10.0
"""Seconds between two progress lines in a log."""


class CountedProgress:
    """``total`` units of work (``unit``: ``model-epochs``, ``models``); labels (a run's) cut
    to ``label_width`` characters on the bar, so the counts and times stay readable;
    ``transient``: the bar is gone when done."""

    def __init__(
        self, console: Console, unit: str, *, label_width: int = 0, transient: bool = False
    ) -> None:
        self.console, self.unit = console, unit
        self.label_width, self.transient = label_width, transient
        self.bar: Progress | None = None
        self._task = None
        self.done = self.total = 0
        self._started, self._logged = 0.0, -LOG_EVERY  # the first piece of work: a line

    def start(self, total: int, first: str = "starting") -> None:
        self.total, self._started = total, time.perf_counter()
        if not self.console.is_terminal:
            return
        width = self.label_width
        label = f"{{task.description:<{width}.{width}}}" if width else "{task.description}"
        self.bar = Progress(
            TextColumn(f"[progress.description]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=self.transient,
        )
        self.bar.start()
        self._task = self.bar.add_task(first, total=total)

    def advance(self, units: int, label: str = "", finished: str = "") -> None:
        """``units`` more done; ``finished``: a piece of work ended (a run), said in a log."""
        self.done += units
        if self.bar is not None:
            self.bar.update(self._task, advance=units, **({"description": label} if label else {}))
        elif finished:
            self._log(finished)

    def _log(self, finished: str) -> None:
        """``run 3 of 12 finished (he_normal/relu seed 2); 40/120 model-epochs, 0:01:05
        elapsed, ETA 0:02:10``: at most one every :data:`LOG_EVERY` s, and the last."""
        now = time.perf_counter()
        if now - self._logged < LOG_EVERY and self.done < self.total:
            return
        self._logged, elapsed = now, now - self._started
        left = elapsed * (self.total - self.done) / self.done if self.done else float("nan")
        eta = _clock(left) if left == left else "?"
        self.console.print(
            f"{finished}; {self.done}/{self.total} {self.unit}, {_clock(elapsed)} elapsed, "
            f"ETA {eta}",
            soft_wrap=True, markup=False, highlight=False,
        )  # fmt: skip

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _clock(seconds: float) -> str:
    """``0:01:05``."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
