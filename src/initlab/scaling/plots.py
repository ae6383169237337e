"""The coordinate-check figure, as ``mup``'s ``plot_coord_data`` draws it.

One panel per step (``t`` updates taken), one line per module: the metric's mean over seeds
against width, both axes logarithmic. Under SP with Adam the lines rise with width; under
muP they are flat. Flagged modules are drawn solid and thick, the others thin.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from initlab.atomic_files import write_figure
from initlab.scaling.coords import LOGITS

PANEL_SIZE = 3.0


def plot_coords(
    coords: pd.DataFrame,
    path: str | Path | None = None,
    *,
    metric: str = "l1",
    flagged: Iterable[tuple[str, int]] = (),
    title: str = "",
) -> Figure:
    """The figure of ``metric`` (plus the logits' std) from a tidy coordinate table (one depth:
    the smallest, which the title then names); saved to ``path`` when given. ``flagged``:
    ``(module, step)`` pairs drawn thick."""
    if coords["depth"].nunique() > 1:
        depths = sorted(int(d) for d in coords["depth"].unique())
        coords = coords[coords["depth"] == depths[0]]
        shown = f"depth {depths[0]} only, of depths {depths}; all in coords.csv"
        title = f"{title} ({shown})" if title else shown
    logits = coords["module"] == LOGITS  # its std only (not aligned_out, which a mean mixed in)
    rows = coords[(~logits & (coords["metric"] == metric)) | (logits & (coords["metric"] == "std"))]
    means = rows.groupby(["step", "module", "width"], sort=False)["value"].mean().reset_index()
    steps = sorted(means["step"].unique())
    modules = list(dict.fromkeys(rows["module"]))
    marked = set(flagged)
    colors = colormaps["viridis"].resampled(max(len(modules), 2))
    fig = Figure(figsize=(PANEL_SIZE * len(steps), PANEL_SIZE + 0.6), layout="constrained")
    axes = fig.subplots(1, len(steps), sharey=True, squeeze=False)[0]
    for ax, step in zip(axes, steps, strict=True):
        here = means[(means["step"] == step) & (means["value"] > 0)]
        for k, module in enumerate(modules):
            line = here[here["module"] == module].sort_values("width")
            if line.empty:
                continue
            bold = (module, int(step)) in marked
            ax.plot(
                line["width"],
                line["value"],
                marker="o",
                markersize=3,
                color=colors(k),
                linewidth=2.2 if bold else 0.9,
                label=module,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"t = {step}")
        ax.set_xlabel("width")
    axes[0].set_ylabel(f"{metric} (logits: std)")
    handles, labels = axes[-1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    if title:
        fig.suptitle(title)
    if path is not None:
        write_figure(fig, path)
    return fig
