"""What a built-in study is: a spec per scale, the outcomes the paper leads us to expect, and
how to check them against the runs.

A study runs like any sweep (same store, resume, engines, backends); afterwards each
:class:`Expectation` is checked on the results and reported as reproduced or not, with the
numbers, at the top of the study's report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from initlab.data import Dataset, load
from initlab.errors import UnknownNameError
from initlab.report.model import Image
from initlab.results import ResultSet
from initlab.sweep.spec import Spec

SCALES = ("tiny", "default", "full")
"""``tiny``: the smallest grid that still shows the effect, for tests; ``default``: a
reduced grid on the real data; ``full``: the paper's scale (timings: benchmarks/README.md)."""


@dataclass(frozen=True)
class Expectation:
    """One expected outcome and whether the runs reproduced it.

    ``reproduced`` is ``None`` when the runs cannot tell (e.g. too few of them finished);
    ``evidence`` gives the numbers either way.
    """

    claim: str
    reproduced: bool | None
    evidence: str

    @property
    def verdict(self) -> str:
        return {True: "reproduced", False: "NOT reproduced", None: "undecided"}[self.reproduced]


@dataclass
class StudyContext:
    """What a study's checks and figures get: the runs, their per-layer statistics, and
    the scale and the output directory (``None`` when nothing is written)."""

    results: ResultSet
    scale: str
    out_dir: Path | None = None
    data_dir: str | None = None
    _data: dict[str, Dataset] = field(default_factory=dict)

    @property
    def runs(self) -> pd.DataFrame:
        return self.results.runs

    @property
    def epochs(self) -> pd.DataFrame:
        """Per-epoch rows joined with every run column (init, activation, hidden, ...)."""
        return self._epochs_with_config

    @cached_property
    def _epochs_with_config(self) -> pd.DataFrame:
        epochs = self.results.epochs
        if epochs.empty:
            return epochs
        extra = [c for c in self.runs.columns if c not in epochs.columns or c == "run_id"]
        return epochs.merge(self.runs[extra], on="run_id", how="left")

    @property
    def layer_stats(self) -> pd.DataFrame:
        """Tidy per-layer rows (run_id, epoch, step, layer, metric, value)."""
        return self.results.layer_stats

    def dataset(self, name: str) -> Dataset:
        """A dataset, loaded once (for figures that need to look at a network at init)."""
        if name not in self._data:
            self._data[name] = load(name, data_dir=self.data_dir)
        return self._data[name]


class Study:
    """A reproduction of a classic result. Subclasses set the class attributes and
    implement :meth:`spec` and :meth:`check` (and :meth:`figures` for their own plots)."""

    name: str = ""
    title: str = ""
    paper: str = ""
    claim: str = ""
    """One paragraph: what the paper found, and what this study runs to test it."""

    @property
    def command_name(self) -> str:
        """The name ``initlab study`` lists and takes, and its output directory's:
        ``resnet-depth`` for the study ``resnet_depth``."""
        return self.name.replace("_", "-")

    def spec(self, scale: str) -> Spec:
        """The runs at ``scale`` (one of :data:`SCALES`)."""
        raise NotImplementedError

    def check(self, ctx: StudyContext) -> list[Expectation]:
        """The expected outcomes, each checked on ``ctx``."""
        raise NotImplementedError

    def figures(self, ctx: StudyContext) -> list[Image]:
        """The study's own figures (the standard report adds curves, summaries...)."""
        return []


_STUDIES: dict[str, Study] = {}


def register(study_class: type[Study]) -> type[Study]:
    """Class decorator: add a study to the registry under its ``name``."""
    _STUDIES[study_class.name] = study_class()
    return study_class


def names() -> list[str]:
    _load_builtin()
    return list(_STUDIES)


def get(name: str) -> Study:
    _load_builtin()
    key = name.lower().replace("-", "").replace("_", "")
    for study_name, study in _STUDIES.items():
        if study_name.replace("_", "") == key:
            return study
    raise UnknownNameError("study", name, [s.command_name for s in _STUDIES.values()])


def _load_builtin() -> None:
    """Import the built-in study modules (each registers itself)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name not in ("base", "runner"):
            importlib.import_module(f"{__package__}.{module.name}")
