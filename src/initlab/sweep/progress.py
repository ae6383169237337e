"""The command line's progress for a sweep, on stderr (:class:`CountedProgress`: a bar in
model-epochs on a terminal; in a log or a pipe a line per finished run, at most one every
10 s, the last, and a line when none came for 30 s). A run is named by its label
(:attr:`RunConfig.label`) and the settings that differ among the sweep's runs which the
label does not show (:func:`run_label`: ``default/lm/res=fixup/seed0``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields

from rich.console import Console

from initlab.config import RunConfig
from initlab.progress_display import CountedProgress
from initlab.sweep.engine import Outcome
from initlab.sweep.report import SweepPlan, SweepProgress
from initlab.sweep.resume import config_identity

LABEL_WIDTH = 34
"""Run labels are cut to this many characters on the bar."""
IN_LABEL = ("init", "activation", "model", "hidden", "model_args", "seed")
"""The settings :attr:`RunConfig.label` shows."""
SHORT = {
    "residual_init": "res", "output_init": "out", "embedding_init": "emb",
    "weight_decay": "wd", "batch_size": "bs", "batch_norm": "bn", "lr_schedule": "sched",
    "warmup_steps": "warmup", "clip_norm": "clip",
}  # fmt: skip
"""Shorter names of settings in a label."""


def varying_settings(configs: Sequence[RunConfig]) -> tuple[str, ...]:
    """The settings that differ among ``configs`` and their labels do not show, in
    :class:`RunConfig`'s order (``("residual_init",)``)."""
    if len(configs) < 2:
        return ()
    names = [f.name for f in fields(RunConfig) if f.name not in IN_LABEL]
    return tuple(
        name
        for name in names
        if len({json.dumps(getattr(c, name), sort_keys=True, default=str) for c in configs}) > 1
    )


def run_label(config: RunConfig, settings: Sequence[str] = ()) -> str:
    """``config.label`` with ``settings`` (:func:`varying_settings`) before its seed:
    ``default/lm/res=fixup/seed0``."""
    label = config.label
    if not settings:
        return label
    extra = "/".join(f"{SHORT.get(n, n)}={_value(n, getattr(config, n))}" for n in settings)
    head, seed, number = label.rpartition("/seed")
    return f"{head}/{extra}{seed}{number}" if seed else f"{label}/{extra}"


def _value(name: str, value: object) -> str:
    """A setting's value, briefly: ``0.01``, ``300-100``, ``same`` (``output_init=None``),
    ``none`` (another setting unset: ``clip=none``, as a spec writes it)."""
    if name == "output_init" and value is None:
        return "same"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in sorted(value.items()))
    return str(value)


class RichProgress(SweepProgress):
    """Model-epochs done of the sweep's total, with elapsed time and ETA (module docstring)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.shown = CountedProgress(console, "model-epochs", label_width=LABEL_WIDTH)
        self._epochs: dict[str, int] = {}
        self._started: dict[str, RunConfig] = {}
        self._runs = self._pending = 0
        self._settings: tuple[str, ...] = ()
        self._resumed: dict[str, int] = {}

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
        self._settings = varying_settings(plan.pending)
        self._resumed = dict(plan.resumed)  # epochs trained before: not counted as work
        left = [c.epochs - self._resumed.get(config_identity(c), 0) for c in plan.pending]
        self.shown.start(sum(left))

    def epoch(self, config: RunConfig, record: dict) -> None:
        run = config_identity(config)  # not the key: it changes if the user's file does
        if run in self._resumed and record.get("epoch", 0) <= self._resumed[run]:
            self.shown.grow(self._resumed.pop(run))  # its checkpoint refused: from the start
        self._epochs[run] = self._epochs.get(run, 0) + 1
        self._started[run] = config
        self.shown.advance(1, run_label(config, self._settings))

    def unfinished(self) -> tuple[int, int]:
        """``(runs, epochs)``: the runs that trained epochs and have not finished, and those
        epochs (lost to an interruption: a run is stored when it finishes)."""
        started = [n for n in self._epochs.values() if n > 0]
        return len(started), sum(started)

    def unfinished_runs(self) -> list[RunConfig]:
        """The runs that trained epochs and have not finished (:meth:`unfinished`)."""
        return [self._started[run] for run, n in self._epochs.items() if n > 0]

    def finished(self, outcome: Outcome) -> None:
        config = outcome.result.config
        run = config_identity(config)
        rest = config.epochs - self._resumed.pop(run, 0) - self._epochs.pop(run, 0)
        self._started.pop(run, None)
        status = outcome.result.status
        label = run_label(config, self._settings)
        shown = label if status in ("ok", "stuck") else f"{label} {status}"
        self._runs += 1
        said = f"run {self._runs} of {self._pending} finished ({shown})"
        self.shown.advance(max(rest, 0), shown, finished=said, last=self._runs >= self._pending)

    def stop(self) -> None:
        self.shown.stop()
