"""Per-layer statistics (tidy rows ``run_id, epoch, step, layer, metric, value``) for the report.

The probe (:mod:`initlab.probe.metrics`) names the metrics (``pre_grad_std``: the std of
the back-propagated gradient dL/dz; ``weight_grad_norm``: Frobenius norm of dL/dW); the
report draws the first of :data:`GRAD_NORM_METRICS` present, and otherwise any metric whose
name contains both ``grad`` and ``norm``. dL/dz comes first: it is what vanishes with depth,
while weight-gradient norms stay nearly constant across layers (Glorot & Bengio 2010), so a
heatmap of those hid a 10^6-fold vanishing. Rows of other
metrics are ignored, so unknown or missing metrics never break a report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from initlab.curves import group_label

GRAD_NORM_METRICS = (
    "pre_grad_std", "weight_grad_norm", "grad_norm", "grad_weight_norm", "w_grad_norm"
)  # fmt: skip
ALL_RUNS = "all runs"


@dataclass
class LayerGrid:
    """One group's ``log10`` values, ``layers × steps``; ``zero`` marks cells whose values
    were all ``<= 0`` (a zero gradient: its log is undefined)."""

    label: str
    layers: list[str]
    steps: list[float]
    log10: np.ndarray
    zero: np.ndarray


def grad_norm_metric(layer_stats: pd.DataFrame | None) -> str | None:
    """The gradient metric the report draws (module docstring), or ``None`` if there is none."""
    if layer_stats is None or layer_stats.empty or "metric" not in layer_stats:
        return None
    present = [str(m) for m in layer_stats["metric"].dropna().unique()]
    for name in GRAD_NORM_METRICS:
        if name in present:
            return name
    fuzzy = [m for m in present if "grad" in m.lower() and "norm" in m.lower()]
    return sorted(fuzzy)[0] if fuzzy else None


def layer_grids(
    layer_stats: pd.DataFrame, runs: pd.DataFrame, group_by: Sequence[str], metric: str
) -> tuple[list[LayerGrid], str]:
    """One :class:`LayerGrid` of ``metric`` per group (mean of log10 over seeds and steps
    within an epoch), and the x-axis name (``epoch``, or ``step`` without epochs)."""
    rows = layer_stats[layer_stats["metric"] == metric]
    has_epochs = "epoch" in rows and rows["epoch"].notna().any()
    x_name = "epoch" if has_epochs else "step"
    if rows.empty or not {"layer", "value", x_name}.issubset(rows.columns):
        return [], x_name
    rows = _with_groups(rows, runs, group_by)
    columns = [c for c in group_by if c in rows]
    grids = []
    groups = rows.groupby(columns, sort=False, dropna=False) if columns else [(ALL_RUNS, rows)]
    for key, frame in groups:
        label = group_label(key, columns) if columns else ALL_RUNS
        grids.append(_grid(label, frame, layer_order(frame), x_name))
    return grids, x_name


def layer_order(rows: pd.DataFrame) -> list[str]:
    """The layers of ``rows``, input first: every run's own order (its first records) kept,
    merged over runs (a topological order of "comes before in some run"), the mean relative
    place (0 for a run's first layer, 1 for its last) choosing among the layers free to come
    next. In first-seen order, a sweep of depths 1 and 2 put the shallow runs' output layer
    ``fc`` in the middle, above the deeper runs' ``layers.2.*``."""
    if "run_id" not in rows:
        return list(dict.fromkeys(rows["layer"].astype(str)))
    orders = [
        list(dict.fromkeys(run["layer"].astype(str)))
        for _, run in rows.groupby("run_id", sort=False)
    ]
    places: dict[str, list[float]] = {}
    after: dict[str, set[str]] = {}  # layer -> the layers some run has right before it
    for order in orders:
        for i, layer in enumerate(order):
            places.setdefault(layer, []).append(i / max(len(order) - 1, 1))
            after.setdefault(layer, set()).update(order[i - 1 : i])
    merged: list[str] = []
    while len(merged) < len(places):
        placed = set(merged)
        free = [n for n in places if n not in placed and after[n] <= placed]
        free = free or [n for n in places if n not in placed]  # a cycle (runs disagree)
        merged.append(min(free, key=lambda n: float(np.mean(places[n]))))
    return merged


def _with_groups(rows: pd.DataFrame, runs: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame:
    """``rows`` with the grouping columns, joined from ``runs`` on ``run_id`` if missing."""
    missing = [c for c in group_by if c not in rows]
    if not missing or "run_id" not in rows or "run_id" not in runs:
        return rows
    lookup = runs[["run_id", *[c for c in missing if c in runs]]].drop_duplicates("run_id")
    return rows.merge(lookup, on="run_id", how="left")


def _grid(label: str, frame: pd.DataFrame, layers: list[str], x_name: str) -> LayerGrid:
    values = pd.to_numeric(frame["value"], errors="coerce")
    data = pd.DataFrame(
        {
            "layer": frame["layer"].astype(str).to_numpy(),
            "x": pd.to_numeric(frame[x_name], errors="coerce").to_numpy(),
            "log": np.log10(values.where(values > 0)).to_numpy(),
            "zero": (values <= 0).to_numpy(),
        }
    ).dropna(subset=["x"])
    steps = sorted(data["x"].unique())
    logs = data.pivot_table(index="layer", columns="x", values="log", aggfunc="mean")
    zero = data.pivot_table(index="layer", columns="x", values="zero", aggfunc="all")
    logs = logs.reindex(index=layers, columns=steps)
    zero = zero.reindex(index=layers, columns=steps).fillna(False).astype(bool)
    return LayerGrid(
        label, layers, [float(s) for s in steps], logs.to_numpy(float), zero.to_numpy(bool)
    )
