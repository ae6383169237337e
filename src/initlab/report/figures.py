"""The report's figures (matplotlib object API): accuracy with confidence intervals, per-layer
gradient-norm heatmaps, and the depth × sigma_w² trainability heatmap with the 6·xi_c curve.

Each function returns a :class:`~matplotlib.figure.Figure`; :mod:`initlab.report.build` turns
them into PNGs. The learning curves are :func:`initlab.curves.curves_figure`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from initlab.curves import LABEL_LIMIT, plain_text
from initlab.report.layers import LayerGrid
from initlab.report.sweep import SweepPanel

MISSING_COLOUR = "#d9d9d9"
ZERO_COLOUR = "#3a3a3a"
MAX_PANEL_COLUMNS = 3
LOG_DEPTH_RATIO = 8
"""The depth axis is logarithmic when the deepest net is this many times the shallowest."""
MAX_DEPTH_TICKS = 12
MAX_ANNOTATED_CELLS = 80
"""Trainability grids with at most this many cells print each cell's accuracy."""


def accuracy_figure(
    ranked: pd.DataFrame,
    accuracies: dict[str, list[float]],
    score: str = "test accuracy",
    *,
    clip: bool = True,
    columns: tuple[str, str] = ("test_accuracy", "ci95"),
    limits: tuple[float, float] | None = None,
) -> Figure:
    """Per group (best on top): mean ``score`` with its 95% CI ``mean ± ci`` (``columns``:
    the mean's and the half-width's columns of ``ranked``, by default ``test_accuracy`` and
    ``ci95``; ``("test_loss", "test_loss_ci95")`` for runs ranked by loss), and each run
    as a dot (``accuracies``: each group's values). The axis stays within 0.02 of
    ``limits``, the values the score can take: by default up to 1 (no score exceeds it:
    accuracy, R²) and, with ``clip`` (a score in [0, 1]), from 0; a loss's ``(0, inf)``."""
    limits = limits or ((0.0, 1.0) if clip else (-math.inf, 1.0))
    n = max(len(ranked), 1)
    fig = Figure(figsize=(8, 1.2 + 0.42 * n), layout="constrained")
    ax = fig.subplots()
    for y, row in enumerate(ranked.to_dict("records")):
        mean, ci = row[columns[0]], row.get(columns[1], math.nan)
        err = ci if _finite(ci) else 0.0
        if _finite(mean):
            ax.errorbar(mean, y, xerr=err, fmt="o", color="C0", ms=7, capsize=4, lw=2, zorder=3)
        runs = accuracies.get(row["group"], [])
        jitter = np.linspace(-0.12, 0.12, len(runs)) if len(runs) > 1 else np.zeros(len(runs))
        ax.scatter(runs, y + jitter, s=14, color="C1", alpha=0.8, zorder=2)
    ax.set_yticks(range(len(ranked)), [plain_text(g, LABEL_LIMIT) for g in ranked["group"]])
    ax.set_ylim(n - 0.5, -0.5)
    low, high = ax.get_xlim()  # a CI from 2 seeds can reach far past what a score can be
    ax.set_xlim(max(low, limits[0] - 0.02), min(high, limits[1] + 0.02))
    ax.set_xlabel(score)
    fig.suptitle(f"{score}: mean and 95% CI (blue), single runs (orange)")  # the figure's
    # width, not the axes' (long group labels narrow the axes and cut an axes title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def grad_norm_figure(grids: list[LayerGrid], x_name: str, metric: str) -> Figure:
    """One heatmap per group: layer (rows, input first) × epoch, colour = log10 of ``metric``;
    one shared colour scale. Dark cells: zero gradient; light grey: not recorded."""
    cols = min(MAX_PANEL_COLUMNS, len(grids))
    rows = math.ceil(len(grids) / cols)
    n_layers = max(len(g.layers) for g in grids)
    fig = Figure(
        figsize=(4.2 * cols + 1, 0.9 + rows * (0.9 + 0.32 * n_layers)), layout="constrained"
    )
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    values = np.concatenate([g.log10[np.isfinite(g.log10)] for g in grids] + [np.zeros(0)])
    vmin, vmax = (float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
    cmap = colormaps["viridis"].with_extremes(bad=MISSING_COLOUR)
    image = None
    for ax, grid in zip(axes, grids, strict=False):
        image = ax.imshow(
            np.ma.masked_invalid(grid.log10), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax
        )
        if grid.zero.any():
            zero = np.ma.masked_where(~grid.zero, np.ones_like(grid.log10))
            ax.imshow(zero, aspect="auto", cmap=ListedColormap([ZERO_COLOUR]), vmin=0, vmax=1)
        _label_heatmap(ax, grid, x_name)
    for ax in axes[len(grids) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes[: len(grids)].tolist(), label=f"log10 {plain_text(metric)}")
    return fig


def _label_heatmap(ax, grid: LayerGrid, x_name: str) -> None:
    ax.set_title(plain_text(grid.label, LABEL_LIMIT), fontsize=10)
    ticks = _tick_positions(len(grid.steps))
    ax.set_xticks(ticks, [f"{grid.steps[i]:g}" for i in ticks])
    ax.set_yticks(range(len(grid.layers)), [plain_text(n, 18) for n in grid.layers])
    ax.set_xlabel(x_name)


def trainability_figure(
    panels: list[SweepPanel], label: str = "final test accuracy (mean over seeds)"
) -> Figure:
    """Per activation: depth (y) × sigma_w² (x), colour = mean final test score (``label``
    names it, on the colour bar), with the theory's trainable-depth bound 6·xi_c(sigma_w²)
    where sigma_b² is known."""
    fig = Figure(figsize=(6.2 * len(panels) + 0.6, 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    cmap = colormaps["magma"].with_extremes(bad=MISSING_COLOUR)
    mesh = None
    for ax, panel in zip(axes, panels, strict=True):
        log_y = len(panel.depths) > 1 and panel.depths[-1] >= LOG_DEPTH_RATIO * panel.depths[0]
        x_edges = _edges(panel.sigma_w2)
        y_edges = _edges([float(d) for d in panel.depths], log=log_y)
        mesh = ax.pcolormesh(
            x_edges, y_edges, np.ma.masked_invalid(panel.accuracy), cmap=cmap, vmin=0, vmax=1
        )
        if panel.accuracy.size <= MAX_ANNOTATED_CELLS:
            _annotate_cells(ax, panel)
        if panel.theory_x is not None:
            ax.plot(panel.theory_x, panel.theory_depth, "c--", lw=2, label="6·ξ_c (theory)")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlim(x_edges[0], x_edges[-1])
        ax.set_ylim(y_edges[0], y_edges[-1])
        if log_y:
            ax.set_yscale("log")
        if len(panel.depths) <= MAX_DEPTH_TICKS:
            ax.set_yticks(panel.depths, [str(d) for d in panel.depths], minor=False)
            ax.set_yticks([], minor=True)
        sb = "unknown" if panel.sigma_b2 is None else f"{panel.sigma_b2:g}"
        ax.set_title(plain_text(f"{panel.activation} (σ_b² = {sb})"))
        ax.set(xlabel="σ_w² (weight variance × fan_in)", ylabel="depth (hidden layers)")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes.tolist(), label=plain_text(label))
    return fig


def _annotate_cells(ax, panel: SweepPanel) -> None:
    for i, depth in enumerate(panel.depths):
        for j, sigma in enumerate(panel.sigma_w2):
            value = panel.accuracy[i, j]
            if np.isfinite(value):
                colour = "white" if value < 0.6 else "black"
                ax.text(
                    sigma, depth, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour
                )


def _edges(centres: list[float], log: bool = False) -> np.ndarray:
    """Cell edges around sorted centres: midpoints inside, half a step beyond each end
    (midpoints of the logs with ``log``, for depths that double)."""
    c = np.log(np.asarray(centres, dtype=float)) if log else np.asarray(centres, dtype=float)
    if c.size == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.exp(edges) if log else edges


def _tick_positions(n: int, most: int = 10) -> list[int]:
    step = max(1, math.ceil(n / most))
    return list(range(0, n, step))


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
