"""The ``saxe2014`` study's own figures: time to threshold and the best learning rate against
depth, the training-loss curves at those learning rates, and the singular values of products
of weight matrices at init."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from initlab.studies.checks import depth_of
from initlab.studies.saxe2014_measures import (
    INITS,
    THRESHOLD,
    init_name,
    init_rows,
    product_singular_values,
)

COLORS = {"orthogonal": "tab:blue", "scaled Gaussian": "tab:red"}


def time_figure(best: pd.DataFrame) -> Figure:
    """Epochs to threshold and the best learning rate against depth, both inits."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_time, ax_lr = fig.subplots(1, 2)
    ceiling = best["time"].replace(math.inf, np.nan).max()
    ceiling = 1.0 if not np.isfinite(ceiling) else ceiling
    for init, color in COLORS.items():
        rows = init_rows(best, init)
        if rows.empty:
            continue
        finite = np.isfinite(rows["time"])
        ax_time.errorbar(
            rows["depth"][finite], rows["time"][finite], yerr=rows["std"][finite],
            marker="o", color=color, label=init, capsize=3,
        )  # fmt: skip
        never = rows["depth"][~finite]
        ax_time.scatter(never, [ceiling * 1.15] * len(never), marker="^", color=color)
        ax_lr.plot(rows["depth"], rows["lr"], marker="o", color=color, label=init)
    ax_time.set(
        xlabel="depth (hidden layers)", ylabel="epochs",
        title=f"time to training loss {THRESHOLD} (best lr; ▲ never)",
    )  # fmt: skip
    ax_lr.set(yscale="log", xlabel="depth (hidden layers)", ylabel="learning rate")
    ax_lr.set_title("the best learning rate")
    lrs = sorted(best["lr"].unique())
    ax_lr.set_yticks(lrs, [f"{lr:g}" for lr in lrs])
    ax_lr.yaxis.set_minor_locator(NullLocator())
    for ax in (ax_time, ax_lr):
        _depth_axis(ax, sorted(best["depth"].unique()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_time.set_ylim(bottom=0)
    return fig


def curves_figure(epochs: pd.DataFrame, best: pd.DataFrame) -> Figure:
    """Training loss (mean over seeds) at each depth's best learning rate, one panel per init."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, len(COLORS), sharey=True)
    if epochs.empty:
        return fig
    frame = epochs.assign(
        init=[init_name(i) for i in epochs["init"]],
        depth=[depth_of(h) for h in epochs["hidden"]],
    )
    depths = sorted(best["depth"].unique())
    for ax, init in zip(axes, COLORS, strict=True):
        for _, row in init_rows(best, init).iterrows():
            sel = frame[(frame["init"] == init) & (frame["depth"] == row["depth"])]
            sel = sel[np.isclose(sel["lr"].astype(float), row["lr"])]
            curve = sel.groupby("epoch")["train_loss"].mean()
            color = colormaps["viridis"](0.9 * depths.index(row["depth"]) / max(len(depths) - 1, 1))
            ax.plot(curve.index, curve.to_numpy(), color=color, label=f"depth {row['depth']}")
        ax.axhline(THRESHOLD, color="grey", ls="--", lw=1)
        ax.set(title=init, xlabel="epoch", yscale="log")
        ax.set_ylim(top=3.0)  # loss spikes of the fastest (edge-of-stability) lr run off
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("training loss (best lr)")
    return fig


def singular_figure(width: int, depths: Sequence[int]) -> Figure:
    """Singular values of the product of ``depth`` hidden weight matrices at init."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_band, ax_spec = fig.subplots(1, 2)
    for init, color in COLORS.items():
        spectra = [product_singular_values(INITS[init], width, d) for d in depths]
        low, mid, high = (np.array([np.percentile(v, q) for v in spectra]) for q in (10, 50, 90))
        ax_band.fill_between(depths, low, high, color=color, alpha=0.2)
        ax_band.plot(depths, mid, marker="o", color=color, label=init)
        ax_spec.plot(np.arange(1, width + 1), spectra[-1], color=color, label=init)
    _depth_axis(ax_band, list(depths))
    ax_band.set(
        yscale="log", xlabel="depth", ylabel="singular value",
        title=f"product of {width}×{width} matrices: median, 10–90th pct",
    )  # fmt: skip
    ax_spec.set(
        yscale="log", xlabel="index", ylabel="singular value",
        title=f"all singular values at depth {depths[-1]}",
    )  # fmt: skip
    for ax in (ax_band, ax_spec):
        ax.set_ylim(bottom=1e-12)  # float64 products bottom out near 1e-16
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _depth_axis(ax, depths: Sequence[int]) -> None:
    """A log-2 depth axis with one plain tick per depth."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(depths), [str(d) for d in depths])
    ax.xaxis.set_minor_locator(NullLocator())
