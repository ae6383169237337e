"""Run a built-in study: its sweep (resumable, like any), its checks, and its report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from initlab.errors import UnknownNameError, option
from initlab.report.build import ReportPaths, build_report
from initlab.report.model import Section, Table
from initlab.results import ResultSet
from initlab.studies.base import SCALES, Expectation, Study, StudyContext, get
from initlab.sweep.grid import expand
from initlab.sweep.runner import run_study
from initlab.sweep.values import check_setting


@dataclass
class StudyOutcome:
    """A study's runs, its checked expectations and (when written) its report."""

    study: Study
    scale: str
    results: ResultSet
    expectations: list[Expectation]
    report: ReportPaths | None = None

    @property
    def reproduced(self) -> int:
        return sum(e.reproduced is True for e in self.expectations)

    def verdict_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"expected": e.claim, "verdict": e.verdict, "evidence": e.evidence}
                for e in self.expectations
            ]
        )

    def verdict_line(self) -> str:
        n = len(self.expectations)
        line = f"{self.study.command_name}: {self.reproduced} of {n} expected outcomes reproduced"
        return line + (f" ({tiny_note(self.reproduced == n)})" if self.scale == "tiny" else "")


TINY_NOTE = (
    "tiny scale is a smoke test: its data and networks are too small for the paper's "
    "effects, so its verdicts usually do not reproduce; {default} for evidence"
)
"""What a tiny-scale verdict means; ``{default}`` the option that asks for the default scale."""


def tiny_note(all_reproduced: bool = False) -> str:
    """:data:`TINY_NOTE` naming ``--scale default`` as the user's surface spells it; when
    every outcome reproduced, that such a pass is no evidence either."""
    note = TINY_NOTE.format(default=option("--scale default"))
    if all_reproduced:
        note = note.replace(
            "so its verdicts usually do not reproduce", "so a pass here is no evidence"
        )
    return note


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise UnknownNameError("scale", scale, SCALES)
    return scale


def evaluate(
    study: Study, results: ResultSet, scale: str, out: Path | None, data_dir: str | None
) -> tuple[list[Expectation], StudyContext]:
    """Check every expectation of ``study`` on ``results``."""
    ctx = StudyContext(results, scale, out, data_dir)
    return study.check(ctx), ctx


def verdict_section(study: Study, expectations: list[Expectation], scale: str) -> Section:
    """The report's first section: the paper's claim and each expectation's verdict."""
    frame = pd.DataFrame(
        [
            {"expected outcome": e.claim, "verdict": e.verdict, "evidence": e.evidence}
            for e in expectations
        ]
    )
    strong = tuple(i for i, e in enumerate(expectations) if e.reproduced is not True)
    tiny = f" ({tiny_note()})" if scale == "tiny" else ""
    intro = f"{study.paper}. {study.claim} Scale: {scale}{tiny}."
    return Section("verdict", f"{study.title}: verdict", intro, [Table(frame, "", strong)])


def write_study_report(
    study: Study, outcome: StudyOutcome, ctx: StudyContext, out: Path
) -> ReportPaths:
    """The standard report with the verdict and the study's own figures first."""
    sections = [verdict_section(study, outcome.expectations, outcome.scale)]
    figures = study.figures(ctx)
    if figures:
        sections.append(Section("figures", f"{study.title}: figures", study.claim, list(figures)))
    return build_report(
        outcome.results,
        out,
        title=f"initlab study {study.command_name}: {study.title}",
        extra_sections=sections,
    )


def run_named_study(
    name: str,
    *,
    scale: str = "default",
    out: str | Path | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    **sweep_options,
) -> StudyOutcome:
    """Run study ``name`` at ``scale`` into ``out`` (resumable), check its expectations and,
    when ``out`` is given, write its report there. ``device``: where its runs train (as
    ``initlab study --device``; not part of the run keys; ``None``: auto).
    ``sweep_options``: backend, workers, engine, address, progress (see
    :func:`initlab.sweep.run_study`)."""
    study, scale = get(name), check_scale(scale)
    spec = study.spec(scale)
    if device is not None:  # as the command line: the study's id stays that of its spec
        spec = replace(spec, fixed={**spec.fixed, "device": check_setting("device", device)})
    results, _ = run_study(spec, out, configs=expand(spec), data_dir=data_dir, **sweep_options)
    return finish(study, scale, results, Path(out) if out is not None else None, data_dir)


def finish(
    study: Study, scale: str, results: ResultSet, out: Path | None, data_dir: str | None
) -> StudyOutcome:
    """Check the expectations on finished runs and write the report when ``out`` is set."""
    expectations, ctx = evaluate(study, results, scale, out, data_dir)
    outcome = StudyOutcome(study, scale, results, expectations)
    if out is not None:
        outcome.report = write_study_report(study, outcome, ctx, out)
    return outcome
