"""Depth × init-scale sweeps: read each run's depth and ``sigma_w²``, grid the accuracies.

How a run's coordinates are found:

* **depth** = the number of hidden layers, ``len(hidden)`` (``hidden`` may be ``"64-64-64"``
  as in :meth:`RunResult.summary_row`, a list/tuple, or ``"[64, 64, 64]"``); an explicit
  ``depth`` column wins.
* **sigma_w²** (the mean-field weight variance, ``Var(W) = sigma_w² / fan_in``): an explicit
  ``sigma_w2`` column wins (also ``extra.sigma_w2``, ``extra_sigma_w2``, or a ``sigma_w2`` key
  in an ``extra`` dict/JSON column — :class:`~initlab.config.RunConfig` ``extra``). Otherwise
  it is derived from the init spec as ``std² · fan_in`` of a hidden-to-hidden layer, where
  ``std`` is :meth:`Initializer.std` for fans ``(width, width)`` and ``width = hidden[0]``
  (the width, for the usual equal-width sweeps). So ``random_normal(stddev=s)`` and
  ``normal(std=s)`` give ``s² · width``; ``variance_scaling(scale=s, mode=fan_in)`` gives
  ``s``; ``he_normal`` 2; ``orthogonal(gain=g)`` g². Schemes without one std (identity) give
  NaN and are left out. A non-zero ``mean`` is ignored.
* **sigma_b²**: an explicit ``sigma_b2`` column (or ``extra`` key) wins; bias policy
  ``zeros`` (or the number 0) means 0; anything else is unknown, and no theory curve is drawn.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

EXTRA_PREFIXES = ("", "extra.", "extra_")


@dataclass
class SweepPanel:
    """One activation's trainability grid: ``accuracy[depth_i, sigma_j]`` (NaN: no run)."""

    activation: str
    depths: list[int]
    sigma_w2: list[float]
    accuracy: np.ndarray
    sigma_b2: float | None
    theory_x: np.ndarray | None = None
    theory_depth: np.ndarray | None = None


def hidden_widths(value: object) -> tuple[int, ...]:
    """``(64, 64)`` from ``"64-64"``, ``[64, 64]``, ``"[64, 64]"``, ``"64"`` or ``64``."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(int(v) for v in value)
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    text = str(value).strip()
    if text.startswith(("[", "(")):
        try:
            return tuple(int(v) for v in ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError):
            return ()
    try:
        return tuple(int(part) for part in text.replace(",", "-").split("-") if part.strip())
    except ValueError:
        return ()


def _extra(row: Mapping, key: str) -> float | None:
    """``key`` from an explicit column or from the run's ``extra`` (dict or JSON text)."""
    for prefix in EXTRA_PREFIXES:
        value = row.get(prefix + key)
        if value is not None and _is_number(value):
            return float(value)
    extra = row.get("extra")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if isinstance(extra, Mapping) and _is_number(extra.get(key)):
        return float(extra[key])
    return None


def _is_number(value: object) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def sigma_w2_of(row: Mapping) -> float:
    """A run's ``sigma_w²`` (see the module docstring); NaN when it cannot be told."""
    explicit = _extra(row, "sigma_w2")
    if explicit is not None:
        return explicit
    widths = hidden_widths(row.get("hidden", ""))
    if not widths or not isinstance(row.get("init"), str):
        return math.nan
    import initlab.initializers as initializers  # imports torch: only for a spec to read

    try:
        std = initializers.parse(row["init"]).std((widths[0], widths[0]))
    except (ValueError, TypeError):
        return math.nan
    return math.nan if std is None else std * std * widths[0]


def sigma_b2_of(row: Mapping) -> float | None:
    """A run's ``sigma_b²``: explicit, 0 for zero biases, else ``None`` (unknown)."""
    explicit = _extra(row, "sigma_b2")
    if explicit is not None:
        return explicit
    bias = row.get("bias", "zeros")
    if bias == "zeros" or (_is_number(bias) and float(bias) == 0.0):
        return 0.0
    return None


def sweep_coordinates(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``depth``, ``sigma_w2`` and ``sigma_b2`` columns added."""
    out = runs.copy()
    rows = runs.to_dict("records")
    out["depth"] = _depths(runs)
    out["sigma_w2"] = [sigma_w2_of(r) for r in rows]
    out["sigma_b2"] = [sigma_b2_of(r) for r in rows]
    return out


def _depths(runs: pd.DataFrame) -> pd.Series:
    """Each run's depth: its ``depth`` column, else its number of hidden layers (NaN: none)."""
    if "depth" in runs:
        return runs["depth"]
    hidden = runs["hidden"] if "hidden" in runs else pd.Series("", runs.index)
    return pd.Series([len(hidden_widths(h)) or math.nan for h in hidden], runs.index)


def is_depth_scale_sweep(runs: pd.DataFrame) -> bool:
    """Whether the runs vary both depth and ``sigma_w²`` (each over at least two values)."""
    if runs.empty or _depths(runs).nunique() < 2:  # no init spec to read (that imports torch)
        return False
    coords = sweep_coordinates(runs).dropna(subset=["depth", "sigma_w2"])
    return coords["depth"].nunique() >= 2 and coords["sigma_w2"].round(12).nunique() >= 2


def trainability_panels(runs: pd.DataFrame, theory_points: int = 40) -> list[SweepPanel]:
    """One :class:`SweepPanel` per activation: mean test accuracy over the runs of each cell.

    Runs without a finite test accuracy (diverged, failed) count as accuracy 0 when their cell
    has no finite one (it did not train). The theory curve ``6·xi_c(sigma_w²)`` is added when
    all runs of the panel share one known ``sigma_b²``.
    """
    coords = sweep_coordinates(runs).dropna(subset=["depth", "sigma_w2"])
    coords["sigma_w2"] = coords["sigma_w2"].round(12)
    activations = coords["activation"] if "activation" in coords else pd.Series("?", coords.index)
    panels = []
    for activation, group in coords.groupby(activations, sort=False):
        depths = sorted(int(d) for d in group["depth"].unique())
        sigmas = sorted(float(s) for s in group["sigma_w2"].unique())
        accuracy = np.full((len(depths), len(sigmas)), np.nan)
        for (depth, sigma), cell in group.groupby(["depth", "sigma_w2"]):
            values = pd.to_numeric(cell["test_accuracy"], errors="coerce")
            finite = values[np.isfinite(values)]
            accuracy[depths.index(int(depth)), sigmas.index(float(sigma))] = (
                finite.mean() if len(finite) else 0.0
            )
        sigma_b2 = _common(group["sigma_b2"])
        panel = SweepPanel(str(activation), depths, sigmas, accuracy, sigma_b2)
        if sigma_b2 is not None:
            panel.theory_x, panel.theory_depth = theory_curve(
                str(activation), sigmas, sigma_b2, theory_points
            )
        panels.append(panel)
    return panels


def _common(values: pd.Series) -> float | None:
    known = values.dropna()
    if len(known) != len(values) or known.nunique() != 1:
        return None
    return float(known.iloc[0])


def theory_curve(
    activation: str, sigmas: list[float], sigma_b2: float, points: int = 40
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """``(sigma_w², 6·xi_c)`` over the swept range; ``(None, None)`` where theory does not
    know the activation. Infinite depths (the critical point) become NaN gaps. (In the
    chaotic phase each point costs a fixed-point solve — timings in benchmarks/README.md:
    keep ``points`` low.)"""
    from initlab.theory.scales import max_trainable_depth  # torch, scipy: for a sweep only

    low, high = min(sigmas), max(sigmas)
    x = np.linspace(max(low, 1e-6), high, points)
    try:
        depth = np.array([max_trainable_depth(activation, float(s), sigma_b2) for s in x])
    except (ValueError, TypeError, ArithmeticError):
        return None, None
    depth[~np.isfinite(depth)] = np.nan
    return x, depth
