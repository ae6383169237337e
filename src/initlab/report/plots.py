"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

CURVE_PANELS = (
    ("train_loss", "training loss", True),
    ("val_accuracy", "validation accuracy", False),
)


def group_label(key: object, group_by: Sequence[str]) -> str:
    """``he_normal`` for one grouping column, ``init=he_normal, activation=tanh`` for more."""
    if len(group_by) == 1:
        return str(key[0] if isinstance(key, tuple) else key)
    return ", ".join(f"{c}={v}" for c, v in zip(group_by, key, strict=True))


def plot_curves(epochs: pd.DataFrame, group_by: Sequence[str], path: Path) -> Path:
    """Per group: the mean over seeds of each curve, with a band of ±1 std, against epoch."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, len(CURVE_PANELS))
    for ax, (column, title, log) in zip(axes, CURVE_PANELS, strict=True):
        if not epochs.empty and column in epochs:
            _draw_bands(ax, epochs, list(group_by), column)
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if not epochs.empty:
        axes[-1].legend(fontsize=8, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _draw_bands(ax, epochs: pd.DataFrame, group_by: list[str], column: str) -> None:
    stats = epochs.groupby([*group_by, "epoch"], sort=False)[column].agg(["mean", "std"])
    for key, frame in stats.groupby(level=list(range(len(group_by))), sort=False):
        x = frame.index.get_level_values("epoch")
        mean, std = frame["mean"].to_numpy(), frame["std"].fillna(0).to_numpy()
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=group_label(key, group_by))
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
