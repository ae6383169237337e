"""Counted work shown on stderr, one way for every long command (a sweep's model-epochs,
the coordinate check's models): on a terminal a bar (done of total, elapsed, ETA); in a
log or a pipe, where a bar is drawn once at the end (squeezed to 80 columns), a line when a
piece of work ends, at most one every :data:`LOG_EVERY` seconds, and the last, and a line
when none was printed for :data:`HEARTBEAT` seconds while the work runs. Never a carriage
return off a terminal.

The ETA, on the bar and in the lines alike (:func:`eta_seconds`), is the average pace since
the work started applied to what is left: ``elapsed × (total − done) / done``. Recomputed on
every refresh, it grows while nothing completes, and several units completing at once (the
models of one stack finishing an epoch together) do not make it collapse, as an
instantaneous speed does (Rich's ``TimeRemainingColumn``: ``ETA 0:00:06`` for 8 minutes)."""

from __future__ import annotations

import threading
import time

from initlab.global_state import preserved_globals

with preserved_globals():  # importing rich.style draws from `random` (initlab.console)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

LOG_EVERY = 10.0
"""Seconds between two progress lines in a log."""
HEARTBEAT = 30.0
"""Seconds without a line in a log, while work runs, after which a line says how far it is
(the first epoch of a stack of models may take minutes and ends no run)."""
UNKNOWN = "-:--:--"
"""The ETA before the first unit is done."""


def eta_seconds(elapsed: float, done: float, total: float | None) -> float | None:
    """``elapsed × (total − done) / done``; ``None`` before the first unit (or no total)."""
    if total is None or done <= 0:
        return None
    return max(elapsed * (total - done) / done, 0.0)


def eta_text(elapsed: float, done: float, total: float | None) -> str:
    """:func:`eta_seconds` as ``0:07:57``, :data:`UNKNOWN` when it is not known yet."""
    left = eta_seconds(elapsed, done, total)
    return UNKNOWN if left is None else _clock(left)


class EtaColumn(ProgressColumn):
    """The bar's ETA (:func:`eta_seconds`), recomputed at every refresh."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        shown = UNKNOWN if elapsed is None else eta_text(elapsed, task.completed, task.total)
        return Text(shown, style="progress.remaining")


class CountedProgress:
    """``total`` units of work (``unit``: ``model-epochs``, ``models``); labels (a run's) cut
    to ``label_width`` characters on the bar, so the counts and times stay readable;
    ``transient``: the bar is gone when done. Off a terminal, :meth:`start` starts a daemon
    thread for the :data:`HEARTBEAT` lines; it ends when all units are done or at
    :meth:`stop` (call it in a ``finally``), and prints nothing after either."""

    def __init__(
        self, console: Console, unit: str, *, label_width: int = 0, transient: bool = False
    ) -> None:
        self.console, self.unit = console, unit
        self.label_width, self.transient = label_width, transient
        self.bar: Progress | None = None
        self._task = None
        self.done = self.total = 0
        self._started, self._logged = 0.0, -LOG_EVERY  # the first piece of work: a line
        self._unlogged = 0  # pieces of work ended since the last line about one
        self._last_line = 0.0  # any line, heartbeats too
        self._lock = threading.Lock()  # the counts and the lines: heartbeat thread vs caller
        self._ended = threading.Event()
        self._beat: threading.Thread | None = None

    @staticmethod
    def _now() -> float:
        return time.perf_counter()  # looked up at each call: tests replace it

    def start(self, total: int, first: str = "starting") -> None:
        self.total, self._started = total, self._now()
        self._last_line = self._started
        if not self.console.is_terminal:
            self._start_heartbeat()
            return
        width = self.label_width
        label = f"{{task.description:<{width}.{width}}}" if width else "{task.description}"
        self.bar = Progress(
            TextColumn(label, style="progress.description", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            EtaColumn(),
            console=self.console,
            transient=self.transient,
            get_time=self._now,
        )
        self.bar.start()
        self._task = self.bar.add_task(first, total=total)

    def grow(self, units: int) -> None:
        """``units`` more work than :meth:`start` was told (work thought done that was not)."""
        with self._lock:
            self.total += units
            if self.bar is not None:
                self.bar.update(self._task, total=self.total)

    def advance(
        self, units: int, label: str = "", finished: str = "", *, last: bool | None = None
    ) -> None:
        """``units`` more done; ``finished``: a piece of work ended (a run), said in a log;
        ``last``: whether it is the last piece (default: all units done). Pieces that end
        after the units are all done (runs stored after their last epoch) are logged with
        the rate limit like any other, and the last one always."""
        with self._lock:
            self.done += units
            if self.done >= self.total:
                self._ended.set()  # no heartbeat after the last unit
            if self.bar is not None:
                described = {"description": label} if label else {}
                self.bar.update(self._task, advance=units, **described)
            elif finished:
                self._log(finished, self.done >= self.total if last is None else last)

    def _log(self, finished: str, last: bool) -> None:
        """``run 3 of 12 finished (he_normal/relu seed 2); 40/120 model-epochs, 0:01:05
        elapsed, ETA 0:02:10``: at most one every :data:`LOG_EVERY` s, and the last; a line
        after skipped ones counts them (``2 more since the last line``), so a log read later
        does not seem to have lost runs 2 and 3."""
        now = self._now()
        if now - self._logged < LOG_EVERY and not last:
            self._unlogged += 1
            return
        if self._unlogged:
            finished += f"; {self._unlogged} more since the last line"
        self._logged, self._unlogged = now, 0
        self._line(finished, now)

    def heartbeat(self, every: float = HEARTBEAT) -> bool:
        """Off a terminal, while work runs: ``still running; 6/60 model-epochs, 0:01:35
        elapsed, ETA 0:14:15`` when no line was printed for ``every`` s. Whether it printed."""
        with self._lock:
            now = self._now()
            if self.bar is not None or self._ended.is_set() or self.done >= self.total:
                return False
            if now - self._last_line < every:
                return False
            self._line("still running", now)
            return True

    def _line(self, head: str, now: float) -> None:
        self._last_line, elapsed = now, now - self._started
        self.console.print(
            f"{head}; {self.done}/{self.total} {self.unit}, {_clock(elapsed)} elapsed, "
            f"ETA {eta_text(elapsed, self.done, self.total)}",
            soft_wrap=True, markup=False, highlight=False,
        )  # fmt: skip

    def _start_heartbeat(self) -> None:
        every = HEARTBEAT
        if every <= 0 or self.total <= 0 or self._beat is not None or self._ended.is_set():
            return
        self._beat = threading.Thread(
            target=self._beat_loop, args=(every,), name="initlab-progress", daemon=True
        )
        self._beat.start()

    def _beat_loop(self, every: float) -> None:
        """Wait until a heartbeat is due (or the work ended), print it, again."""
        try:
            while True:
                with self._lock:
                    due = self._last_line + every - self._now()
                if self._ended.wait(min(max(due, 0.0) + 0.01, every)):
                    return
                self.heartbeat(every)
        except Exception:  # stderr closed (a pipe gone): no more heartbeats, no traceback
            return

    def stop(self) -> None:
        # a heartbeat being printed ends first, none comes after; bounded, so that a lock
        # left held by Ctrl-C landing inside a ``with`` cannot hang the way out
        held = self._lock.acquire(timeout=1.0)
        self._ended.set()
        if held:
            self._lock.release()
        beat, self._beat = self._beat, None
        if beat is not None and beat is not threading.current_thread():
            beat.join(timeout=1.0)
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _clock(seconds: float) -> str:
    """``0:01:05``."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
