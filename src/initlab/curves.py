"""Learning curves and the label helpers figures share, with matplotlib's object API.

A leaf module (it imports no other part of initlab but :mod:`initlab.ranking.stats`), so
that :class:`initlab.results.ResultSet` can draw its curves without importing the report.
matplotlib is imported only by the functions that draw: the label helpers are imported on
the way to :mod:`initlab.store` (``results`` → ``ranking.groups`` → here), which must not
pay for it (about a second).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from initlab.atomic_files import FIGURE_SUFFIXES, write_figure
from initlab.errors import InitlabError
from initlab.ranking.stats import display_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_PANELS = (
    ("train_loss", "training loss", True),
    ("val_accuracy", "validation accuracy", False),
)
"""The panels ``(column, title, log scale)``: the training loss, then the validation score;
runs ranked by loss show :data:`VAL_LOSS_PANEL` in place of the score."""
VAL_LOSS_PANEL = ("val_loss", "validation loss (lower is better)", True)
"""The validation panel of runs ranked by test loss (sequences): what ranks them, per epoch."""

LABEL_LIMIT = 48
"""Legend and tick labels longer than this are cut (the tables show them in full)."""


def group_label(key: object, group_by: Sequence[str]) -> str:
    """``he_normal`` for one grouping column, ``width=16`` for one whose values are numbers
    (a bare ``16`` says nothing), ``init=he_normal, activation=tanh`` for more."""
    if len(group_by) == 1:
        value = key[0] if isinstance(key, tuple) else key
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            return f"{group_by[0].rpartition('.')[2]}={display_value(value)}"
        return display_value(value)
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join(
        f"{c}={display_value(v)}" for c, v in zip(short_names(group_by), key, strict=True)
    )


def short_names(columns: Sequence[str]) -> list[str]:
    """``model_args.width`` as ``width`` where no two columns end alike (labels cut at
    :data:`LABEL_LIMIT` read ``init=default, model_args.width=32, model_args.d…`` and two
    depths looked the same); the full names otherwise."""
    short = [c.rpartition(".")[2] for c in columns]
    return short if len(set(short)) == len(short) else list(columns)


def plain_text(text: object, limit: int | None = None) -> str:
    """``text`` for a matplotlib label, shown literally (``$`` would start mathtext), cut to
    ``limit`` characters (with an ellipsis) if given."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def curves_figure(
    epochs: pd.DataFrame,
    group_by: Sequence[str],
    val_title: str | None = None,
    by_loss: bool = False,
) -> Figure:
    """Per group: the mean over seeds of each curve, with a band of ±1 std, against epoch.

    Non-finite values (a diverged run's NaN/inf loss) are left out of the means.
    ``val_title``: what ``val_accuracy`` holds (``validation R²``...; default: accuracy).
    ``by_loss``: the second panel is the validation loss (:data:`VAL_LOSS_PANEL`, log
    scale), for runs ranked by test loss; ``val_title`` is then unused.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    panels = (CURVE_PANELS[0], VAL_LOSS_PANEL) if by_loss else CURVE_PANELS
    axes = fig.subplots(1, len(panels))
    drawn = False
    titles = {"val_accuracy": val_title} if val_title else {}
    for ax, (column, title, log) in zip(axes, panels, strict=True):
        title = titles.get(column, title)
        shown = not epochs.empty and column in epochs
        if shown:
            shown = _draw_bands(ax, epochs, list(group_by), column)
            drawn = shown or drawn
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log and shown:
            _log_axis(ax)
        ax.grid(alpha=0.3)
    if drawn:
        handles, labels = axes[-1].get_legend_handles_labels()
        if not handles:  # nothing finite in the last panel: the first one's groups
            handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return fig


def _log_axis(ax) -> None:
    """Log y axis; within one decade, plain tick labels (2.3, not 2.3×10⁰), with as many
    significant digits as the range needs to tell its ticks apart (2.99–3.01 read "3, 3,
    3, 3.01" at three)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10:
        digits = max(3, 2 + math.ceil(-math.log10(max((high - low) / high, 1e-12))))
        plain = FuncFormatter(lambda v, _: f"{v:.{digits}g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


def check_figure_path(path: object, name: str) -> Path:
    """``path`` as a figure file, one line when it is none: not a path, empty, a directory
    (the figure went beside it, as ``dir.png``), or a format matplotlib cannot write."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise InitlabError(f"{name} takes a file name such as curves.png, got {path!r}")
    target = Path(path)
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        example = target / "curves.png"
        raise InitlabError(f"{name}({str(path)!r}) is a directory: give a file, e.g. {example}")
    if target.suffix and target.suffix.lower() not in FIGURE_SUFFIXES:
        raise InitlabError(
            f"{name}({str(path)!r}): a figure is written as {', '.join(FIGURE_SUFFIXES)}, not "
            f"{target.suffix}"
        )
    return target


def plot_curves(
    epochs: pd.DataFrame,
    group_by: Sequence[str],
    path: Path,
    val_title: str | None = None,
    by_loss: bool = False,
) -> Path:
    """Draw :func:`curves_figure` and save it as ``path`` (PNG); returns ``path``."""
    fig = curves_figure(epochs, group_by, val_title, by_loss)
    return write_figure(fig, path)


def _draw_bands(ax, epochs: pd.DataFrame, group_by: list[str], column: str) -> bool:
    """Draw one line and band per group; returns whether anything finite was drawn."""
    finite = epochs[np.isfinite(pd.to_numeric(epochs[column], errors="coerce"))]
    if finite.empty:
        return False
    by_epoch = finite.groupby([*group_by, "epoch"], sort=False, dropna=False)  # NaN: unset
    stats = by_epoch[column].agg(["mean", "std"])
    groups = list(stats.groupby(level=list(range(len(group_by))), sort=False, dropna=False))
    colours = palette(len(groups))
    for k, (key, frame) in enumerate(groups):
        frame = frame.sort_index(level="epoch")
        x = frame.index.get_level_values("epoch")
        mean, std = frame["mean"].to_numpy(), frame["std"].fillna(0).to_numpy()
        label = plain_text(group_label(key, group_by), LABEL_LIMIT)
        style = "--" if len(groups) > 10 and k % 2 else "-"  # told apart in grey print too
        ax.plot(x, mean, style, marker="o", ms=3, color=colours[k], label=label)
        ax.fill_between(x, mean - std, mean + std, color=colours[k], alpha=0.2)
    return True


def palette(n: int) -> list:
    """``n`` distinct colours: matplotlib's ``tab10`` up to 10 groups, ``tab20`` up to 20,
    evenly spaced ``turbo`` beyond (the default cycle repeats after 10: 12 groups of a
    two-axis sweep shared colours)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]
