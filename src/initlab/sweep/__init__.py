"""Experiments at any scale: specs, grids, executors (local processes, Ray) and resume.

>>> from initlab.sweep import load_spec, expand, run_study
>>> spec = load_spec("examples/depth-vs-init.toml")
>>> configs = expand(spec)                              # stable order, validated
>>> results, report = run_study(spec, "results/depth")  # resumable: re-run to continue
>>> results = initlab.sweep.run(spec, "results/w", model=build, data=(x, y, x_test, y_test))

See ``docs/sweeps.md``.
"""

from initlab.sweep.api import run
from initlab.sweep.engine import ENGINES, Outcome, plan_chunks, run_chunk
from initlab.sweep.grid import expand
from initlab.sweep.runner import (
    BACKENDS,
    Study,
    SweepInterrupted,
    SweepPlan,
    SweepProgress,
    SweepReport,
    run_study,
    run_sweep,
)
from initlab.sweep.spec import Axis, Spec, load_spec, parse_spec

__all__ = [
    "BACKENDS",
    "ENGINES",
    "Axis",
    "Outcome",
    "Spec",
    "Study",
    "SweepInterrupted",
    "SweepPlan",
    "SweepProgress",
    "SweepReport",
    "expand",
    "load_spec",
    "parse_spec",
    "plan_chunks",
    "run",
    "run_chunk",
    "run_study",
    "run_sweep",
]
