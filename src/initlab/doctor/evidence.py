"""The doctor's evidence: run the trials, compute the statistics, write the files.

:func:`gather` trains the candidates (:mod:`.trials`) and judges them (:mod:`.verdict`);
:func:`write_outputs` writes ``recommendation.json``, ``trials.csv`` (tidy curves: one row
per run and epoch), ``curves.png`` and ``init_snippet.py`` (:mod:`.snippet`) for the winner
(or, with no winner, for the reference, which then stays as it is).

The four files are one set, written all or nothing (:func:`~initlab.atomic_files.write_files`):
a set of an earlier run in the same directory is replaced whole, never mixed with this one's
(its ``curves.png`` is deleted when this run has no curve to draw; when :func:`gather` saves
``trials.csv`` as training ends, the earlier set's other files go with it).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from initlab.atomic_files import check_output_dir, write_files
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.data.dataset import first_look
from initlab.doctor import trials, verdict
from initlab.doctor.candidates import DEFAULT, Candidate, check_comparison, layer_schemes
from initlab.doctor.learned import chance_loss
from initlab.doctor.plan import Plan
from initlab.doctor.snippet import make_snippet, residual_lines
from initlab.errors import InitlabError, option
from initlab.jsonsafe import dumps
from initlab.train.build import INIT_BATCH, build_architecture, build_initialized_model
from initlab.train.result import RunResult

EVIDENCE_FILES = ("recommendation.json", "trials.csv", "curves.png", "init_snippet.py")
"""What :func:`write_outputs` writes (``curves.png`` when some run has a curve)."""


@dataclass(repr=False)
class Evidence:
    """Everything the trials found (see the module docstring)."""

    candidates: list[Candidate]
    design: trials.Design
    schedule: trials.Schedule
    results: list[RunResult]
    table: pd.DataFrame
    ranked: pd.DataFrame
    tests: pd.DataFrame
    variance: pd.DataFrame
    verdict: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    """How every run trained: ``optimizer``, ``lr``, ``batch_size`` (:func:`training_settings`)."""
    plan: Plan | None = None
    """The doctor's plan the candidates came from (``recommendation.json`` records it)."""
    snippet: str = ""
    """``init_snippet.py``: the Python that sets the winner's weights (:func:`snippet_source`)."""
    saved: Path | None = None
    """This run's ``trials.csv``, written as soon as training ended (``None``: not written)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """What the evidence was computed for and on (:func:`provenance`)."""

    def __str__(self) -> str:
        shown = self.ranked[["rank", "candidate", "final", "final_low", "final_high", "area"]]
        return (
            f"{self.verdict['message']}\n\nvalidation loss after {self.schedule.steps} steps "
            f"(95% CI), {design_label(self.design)}:\n{shown.round(4).to_string(index=False)}"
        )

    def __repr__(self) -> str:
        """What a REPL or a notebook's text output shows: the verdict and the ranking, as
        ``print`` does (the dataclass's own repr dumped every run's epochs: 300,000
        characters)."""
        return str(self)

    def _repr_html_(self) -> str:
        shown = self.ranked[["rank", "candidate", "final", "final_low", "final_high", "area"]]
        table = shown.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        head = (
            f"validation loss after {self.schedule.steps} steps (95% CI), "
            f"{design_label(self.design)}"
        )
        message = html.escape(self.verdict["message"])
        return f"<p><b>{message}</b></p><p>{html.escape(head)}:</p>{table}"

    def write(self, out: str | Path) -> list[Path]:
        """``recommendation.json``, ``trials.csv``, ``curves.png`` and ``init_snippet.py``
        in ``out`` (:func:`write_outputs`); their paths."""
        if self.plan is None:
            raise InitlabError("this evidence has no plan to record: it came from gather()")
        return write_outputs(self, self.plan, self.snippet, out)

    @property
    def winner(self) -> Candidate:
        """The winning candidate, or the reference when there is none."""
        name = self.verdict["winner"] or self.verdict["reference"]
        return next(c for c in self.candidates if c.name == name)

    def curves(self) -> pd.DataFrame:
        """Tidy curves (:func:`tidy_curves`)."""
        return tidy_curves(self.candidates, self.design, self.schedule, self.results)


def tidy_curves(
    candidates: Sequence[Candidate],
    design: trials.Design,
    schedule: trials.Schedule,
    results: Sequence[RunResult],
) -> pd.DataFrame:
    """``candidate, seed, data_seed, step`` and the epoch record, one row per run and epoch."""
    rows = []
    names = [c.name for c in candidates for _ in range(design.runs)]
    for name, result in zip(names, results, strict=True):
        for record in result.epochs:
            step = int(record["epoch"]) * schedule.steps_per_epoch
            seeds = {"seed": result.config.seed, "data_seed": result.config.data_seed}
            rows.append({"candidate": name, **seeds, "step": step, **record})
    return pd.DataFrame(rows)


def training_settings(config: RunConfig) -> dict[str, Any]:
    """The optimizer, learning rate and batch size the trials train with."""
    return {"optimizer": config.optimizer, "lr": config.lr, "batch_size": config.batch_size}


def provenance(base: RunConfig, budget: trials.Budget) -> dict[str, Any]:
    """``recommendation.json``'s record of what the trials were run for and on: the budget
    as given, the settings every trial run shares (``config``: not the seeds, epochs and
    tracking the design and schedule set, nor the inits each candidate sets, nor the settings
    the run does not use, such as ``hidden`` for a factory or SGD's ``momentum``),
    fingerprints of a user model's and data's source files, and the environment (versions,
    BLAS code path, CPU, torch threads)."""
    import torch

    from initlab.config import unused_settings
    from initlab.doctor.keywords import OVERRIDDEN
    from initlab.store.rows import user_sources
    from initlab.sweep.engine import environment

    config = base.to_dict()
    not_shared = {"seed", "init", "output_init", "residual_init", *OVERRIDDEN}  # per candidate
    not_shared |= {*unused_settings(base.model), *(("momentum",) * (base.optimizer != "momentum"))}
    return {
        "budget": str(budget),
        "config": {k: v for k, v in config.items() if k not in not_shared},
        "sources": user_sources(config),
        "environment": {**environment(), "torch_threads": torch.get_num_threads()},
    }


def design_label(design: trials.Design) -> str:
    return f"{len(design.init_seeds)} init × {len(design.data_seeds)} data-order seeds"


def gather(
    candidates: Sequence[Candidate],
    base: RunConfig,
    data: Dataset,
    design: trials.Design,
    budget: trials.Budget,
    *,
    reference: str = DEFAULT,
    on_schedule: Callable[[trials.Schedule, int], None] | None = None,
    on_epoch: trials.EpochHook | None = None,
    out: str | Path | None = None,
) -> Evidence:
    """Fit the trials to ``budget`` (its seconds after a timing trial, or its steps), train,
    and judge every candidate against ``reference`` (paired by seed). ``out``: a directory
    that gets ``trials.csv`` as soon as training ends, before any statistics (nothing
    trained is lost; the other files of an earlier set there are deleted with it, as they
    describe other runs; where it cannot be written, :func:`write_outputs` says why). Fewer
    than two candidates, or a ``reference`` not among them, is refused before any
    training."""
    named = [c.name for c in candidates]
    if reference not in named:
        raise InitlabError(f"the reference {reference} is not a candidate ({', '.join(named)})")
    check_comparison(candidates)
    check_output_dir(None if out is None else Path(out), "--out", EVIDENCE_FILES)
    configs = design.configs(candidates, base.replace(track="off"))
    started = time.perf_counter()
    schedule = _schedule(budget, configs, data, base.batch_size)
    settings = schedule.settings()
    if settings["limit_train"] is None:  # all the examples base.limit_train kept (None: all)
        settings["limit_train"] = base.limit_train
    configs = [c.replace(**settings) for c in configs]
    design.note_if_untestable()  # after every refusal: a note, then training
    if on_schedule is not None:
        on_schedule(schedule, len(configs))
    results = trials.run_trials(configs, data, on_epoch)
    took = time.perf_counter() - started
    saved = None
    if out is not None:
        saved = _save_trials(tidy_curves(candidates, design, schedule, results), Path(out))
    names = [c.name for c in candidates for _ in range(design.runs)]
    table = verdict.run_table(names, results)
    ranked = verdict.ranking(table)
    tests = verdict.paired_tests(table, reference)
    if reference != DEFAULT:
        tests = pd.concat([tests, verdict.paired_tests(table, DEFAULT)], ignore_index=True)
    decision = verdict.decide(
        ranked, tests[tests["reference"] == reference], reference, schedule.steps,
        design_label(design), verdict.seed_noise(table, reference),
        error=next((m for m, s in zip(table["message"], table["status"], strict=True)
                    if s == "failed" and m), ""),
        chance=chance_loss(data.y_train),
    )  # fmt: skip
    decision["seconds"] = round(took, 1)
    decision["message"] += overran(took, budget.seconds) + tables_said(base)
    variance = verdict.variance_split(table)
    return Evidence(
        list(candidates), design, schedule, results, table, ranked, tests, variance, decision,
        training_settings(base), saved=saved, provenance=provenance(base, budget),
    )  # fmt: skip


def tables_said(base: RunConfig) -> str:
    """The verdict's last words when every candidate trained with its embedding tables
    drawn from ``base.embedding_init`` (``default`` included): keeping the winner, or the
    model as built, means keeping those tables too."""
    if base.embedding_init == DEFAULT:
        return ""
    flag = option("--embedding-init", "embedding_init")
    return (
        f"; every candidate, default included, trained with its embedding tables drawn from "
        f"{base.embedding_init} ({flag}): keep them with it"
    )


def _schedule(
    budget: trials.Budget, configs: list[RunConfig], data: Dataset, batch: int
) -> trials.Schedule:
    """The steps ``budget`` gives every run: its own, or as many as fit its seconds after a
    timing trial (:func:`~initlab.doctor.trials.time_trial`)."""
    if budget.steps is not None:
        return trials.cut_schedule(budget.steps, len(data.y_train), batch)
    started = time.perf_counter()
    step, fixed = trials.time_trial(configs, data, budget.seconds)
    spent = time.perf_counter() - started
    return trials.plan_schedule(budget.seconds, step, fixed, len(data.y_train), batch, spent)


OVERRUN = 1.25
"""Trials that took more than this times their budget say so (:func:`overran`)."""


def overran(took: float, budget: float | None) -> str:
    """``; the trials took 186 s of a 60 s budget …`` when ``took`` exceeds the budget by
    more than :data:`OVERRUN` (``""`` otherwise): the schedule was fitted to the timing
    trial's speed, which a machine that got busier afterwards does not keep."""
    if budget is None or took <= budget * OVERRUN:
        return ""
    return (
        f"; the trials took {took:.0f} s of a {budget:g} s budget: the schedule was fitted "
        "to the speed the timing trial measured, and the machine was slower afterwards (other "
        "work on it?)"
    )


def _save_trials(curves: pd.DataFrame, out: Path) -> Path | None:
    """``trials.csv`` alone, the earlier set's other files deleted; its path, or ``None``
    when it could not be written (best effort: the ``OSError`` is left for
    :func:`write_outputs` to report)."""
    try:
        write_files(
            out, {"trials.csv": lambda p: curves.to_csv(p, index=False)}, remove=EVIDENCE_FILES
        )
    except OSError:
        return None
    return out / "trials.csv"


def snippet_source(evidence: Evidence, base: RunConfig, data: Dataset) -> str:
    """``init_snippet.py`` for the winner (or the reference) on ``base``'s model."""
    chosen = evidence.winner
    config = chosen.config(base).replace(seed=0)
    model = build_architecture(base, data.input_shape, data.num_classes)
    reference = build_initialized_model(config, data.input_shape, data.num_classes, data=data)
    residual = None
    if config.residual_init != "none":
        plain = build_initialized_model(
            config.replace(residual_init="none"), data.input_shape, data.num_classes, data=data
        )
        residual = residual_lines(plain, reference)
    schemes = layer_schemes(chosen, model, base, first_look(data, INIT_BATCH)[0])
    return make_snippet(
        model,
        schemes,
        name=chosen.name,
        message=evidence.verdict["message"],
        bias=str(config.bias),
        reference=reference,
        residual=residual,
        tables=base.embedding_init,  # every candidate's, a plan drawing them itself too
        readouts={} if chosen.schemes else tied_readouts(model, schemes),
    )


def tied_readouts(model: nn.Module, schemes: dict[str, str]) -> dict[str, str]:
    """``{layer: table}`` for each layer of a scheme's ``schemes`` whose weight is an
    embedding table's: the scheme leaves it to the embedding rule, as
    :func:`initlab.embedding_init.readouts_of_tables` finds them in :func:`initlab.initialize`."""
    from initlab.embedding_init import readouts_of_tables
    from initlab.initializers import parse

    return readouts_of_tables(model, {layer: parse(s) for layer, s in schemes.items()}, False)


def to_json(evidence: Evidence, plan: Plan) -> dict[str, Any]:
    """The content of ``recommendation.json``, numbers as computed (:func:`write_outputs`
    writes NaN and infinities in :mod:`initlab.jsonsafe`'s convention)."""
    return {
        "verdict": evidence.verdict,
        "candidates": [
            {"name": c.name, "settings": c.settings, "why": c.why, "schemes": c.schemes}
            for c in evidence.candidates
        ],
        "design": {
            "init_seeds": list(evidence.design.init_seeds),
            "data_seeds": list(evidence.design.data_seeds),
        },
        "training": evidence.training,
        "provenance": evidence.provenance,
        "schedule": {
            "steps": evidence.schedule.steps,
            "epochs": evidence.schedule.epochs,
            "steps_per_epoch": evidence.schedule.steps_per_epoch,
            "limit_train": evidence.schedule.limit_train,
            "seconds_per_step": evidence.schedule.seconds_per_step,
            "estimated_seconds": evidence.schedule.seconds,
        },
        "runs": evidence.table.to_dict("records"),
        "statistics": {
            "ranking": evidence.ranked.to_dict("records"),
            "comparisons": evidence.tests.to_dict("records"),
            "variance": evidence.variance.to_dict("records"),
        },
        "plan": [e.__dict__ for e in plan.entries],
    }


def write_outputs(evidence: Evidence, plan: Plan, snippet: str, out: str | Path) -> list[Path]:
    """Write the four files (:data:`EVIDENCE_FILES`) into ``out``, all or nothing; returns
    their paths. A directory or a read-only file where one goes is refused
    (:class:`InitlabError`) before anything is written; an ``OSError`` while writing (a full
    disk) leaves the files of before as they were."""
    from initlab.curves import plot_curves

    out = Path(out)
    check_output_dir(out, "--out", EVIDENCE_FILES)
    document = dumps(to_json(evidence, plan), indent=2) + "\n"
    curves = evidence.curves()
    writers: dict[str, Callable[[Path], object]] = {
        "recommendation.json": lambda p: p.write_text(document),
        "trials.csv": lambda p: curves.to_csv(p, index=False),
    }
    if not curves.empty:
        writers["curves.png"] = lambda p: plot_curves(curves, ["candidate"], p)
    writers["init_snippet.py"] = lambda p: p.write_text(snippet)
    return write_files(out, writers, remove=EVIDENCE_FILES)
