"""What a sweep tells its caller: the plan it is about to run (:class:`SweepPlan`), progress
hooks (:class:`SweepProgress`), what it did (:class:`SweepReport`), and how it stopped early
(:class:`SweepInterrupted` on Ctrl-C, :class:`SweepStopped` on a full disk)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from initlab.config import RunConfig
from initlab.errors import InitlabError

if TYPE_CHECKING:
    from initlab.results import ResultSet
    from initlab.sweep.engine import Outcome


@dataclass
class SweepPlan:
    """What is about to run (handed to :meth:`SweepProgress.start`)."""

    total: int
    done: int
    pending: list[RunConfig]
    backend: str
    engine: str
    workers: int | None
    threads: int
    resumed: dict[str, int] = field(default_factory=dict)
    """The epochs that pending runs resume after (their checkpoints'), by
    :func:`~initlab.sweep.resume.config_identity`: already trained, not to be counted."""


@dataclass
class SweepReport:
    """What a sweep did: runs done before, runs run now by status, time, interruption."""

    study_id: str
    total: int
    already_done: int
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False
    by_others: int = 0
    """Runs of the study that other processes sharing the store finished meanwhile."""
    planned: dict[str, str] = field(default_factory=dict, repr=False)
    """Each pending run's config (:func:`config_identity`) → the key it was planned under
    (left out of ``repr``: a JSON string per run)."""
    edited: int = 0
    """Runs stored ``failed`` because their model or data file changed while the sweep ran."""

    @property
    def ran(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Runs of the study that are done now (failed ones are not)."""
        return self.already_done + self.by_others + self.ran - self.counts.get("failed", 0)

    def line(self) -> str:
        """``ran 12 runs in 63.1 s (ok 10, diverged 2); 36 of 36 runs done``."""
        by_status = ", ".join(f"{s} {n}" for s, n in sorted(self.counts.items()))
        ran = f"ran {self.ran} run(s) in {self.seconds:.1f} s"
        if by_status:
            ran += f" ({by_status})"
        others = f" ({self.by_others} by other processes)" if self.by_others else ""
        edited = (
            f"; {self.edited} of the failed: the model or data file was edited while the sweep "
            "ran; run it again to train the file as it is now"
            if self.edited
            else ""
        )
        return f"{ran}; {self.finished} of {self.total} runs done{others}{edited}"


class SweepProgress:
    """Progress hooks (no-ops here; the CLI draws a bar)."""

    def start(self, plan: SweepPlan) -> None:
        """Before anything runs."""

    def epoch(self, config: RunConfig, record: dict) -> None:
        """After each epoch of a run (every engine and backend)."""

    def finished(self, outcome: Outcome) -> None:
        """After each run has been committed to the store."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``report`` says what was saved. From :func:`run_study` (and
    so ``initlab.compare``), ``results`` holds the runs finished before it: with no store
    file (``out=None``) they are nowhere else."""

    def __init__(self, report: SweepReport) -> None:
        super().__init__("sweep interrupted")
        self.report = report
        self.results: ResultSet | None = None
        self.store: Path | None = None
        """The store's file (``None``: in memory, ``out=None``), set with :attr:`results`."""

    def __str__(self) -> str:
        if self.results is None:
            return "sweep interrupted"
        n = len(self.results.runs)
        if not n:
            return "sweep interrupted before any run finished: nothing was kept"
        kept = f"the {n} finished run(s) are in this exception's .results"
        if self.store is None:
            return f"sweep interrupted: {kept} (their only copy: out=None keeps no store)"
        rest = self.report.total - self.report.finished
        more = f"; the same call trains the other {rest}" if rest > 0 else ""
        return f"sweep interrupted: {kept} and in {self.store}{more}"


class SweepStopped(InitlabError):
    """The store could not be written any more (a full disk): the sweep stopped cleanly,
    every run committed before is kept; ``report`` says what was saved."""

    def __init__(self, message: str, report: SweepReport) -> None:
        super().__init__(message)
        self.report = report
        self.results: ResultSet | None = None  # set as in SweepInterrupted
