"""Figures of a diagnosis, with matplotlib's object API (no pyplot state, no display).

* :func:`plot_histograms` — per-layer histograms of activation values and of back-propagated
  gradients dL/dz, one curve per hidden layer (x = value, y = density), the layout of Glorot &
  Bengio (2010), Figures 6 and 7;
* :func:`plot_profiles` — per-layer profiles against layer index on log scales, one colour per
  diagnosis (e.g. per init): pre-activation RMS with the mean-field prediction dashed,
  activation std, weight-gradient norm, back-propagated gradient std;
* :func:`plot_diagnosis` — both, in one figure (what :meth:`Diagnosis.plot` draws).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from initlab.atomic_files import write_figure

BINS = 60
CLIP_PERCENTILE = 0.5
"""Histogram ranges span the 0.5th to 99.5th percentile of all layers' values together."""
PROFILES = (
    ("pre_rms", "pre-activation RMS  (-- mean field)"),
    ("post_std", "activation std"),
    ("weight_grad_norm", "weight-gradient norm |dL/dW|"),
    ("pre_grad_std", "back-propagated gradient std (dL/dz)"),
)


class Drawable(Protocol):
    """What the figures read of a :class:`initlab.probe.Diagnosis` (this module does not
    import it: the diagnosis imports its figures, not the other way round)."""

    layers: pd.DataFrame
    samples: dict[str, dict[str, np.ndarray]]
    label: str


def _bins(samples: list[np.ndarray]) -> np.ndarray:
    values = np.concatenate([s[np.isfinite(s)] for s in samples]) if samples else np.empty(0)
    if values.size == 0:
        return np.linspace(-1, 1, BINS + 1)
    lo, hi = np.percentile(values, [CLIP_PERCENTILE, 100 - CLIP_PERCENTILE])
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    return np.linspace(lo, hi, BINS + 1)


def draw_histograms(ax: Axes, samples: Mapping[str, np.ndarray], title: str) -> None:
    """One density curve per layer (colour = depth), on shared bins."""
    names = list(samples)
    edges = _bins([samples[n] for n in names])
    centres = (edges[:-1] + edges[1:]) / 2
    cmap = colormaps["viridis"]
    step = max(1, len(names) // 8)
    for i, name in enumerate(names):
        values = samples[name][np.isfinite(samples[name])]
        if values.size == 0:
            continue
        density, _ = np.histogram(values, bins=edges, density=True)
        shown = i % step == 0 or i == len(names) - 1
        colour = cmap(i / max(1, len(names) - 1))
        ax.plot(centres, density, color=colour, lw=1.2, label=f"layer {i + 1}" if shown else None)
    ax.set(title=title, xlabel="value", ylabel="density")
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=7, loc="upper right")


def _positive(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def draw_profiles(axes: list[Axes], diagnoses: Mapping[str, Drawable]) -> None:
    """The :data:`PROFILES` panels, one line (colour) per diagnosis, x = layer index. A value
    of exactly 0 (a zero init's activations and gradients) has no place on a log scale: it
    is marked ▼ on the panel's lower edge, and its axis label says so, or the zeros curve of the
    classic lab would be in the legend and nowhere else."""
    cmap = colormaps["tab10"]
    zeros: dict[int, list[tuple[np.ndarray, tuple]]] = {}
    for k, (label, diag) in enumerate(diagnoses.items()):
        frame = diag.layers
        x = np.arange(1, len(frame) + 1)
        colour = cmap(k % 10)
        columns = {
            "pre_rms": np.sqrt(frame["pre_msq"].to_numpy(float)),
            "post_std": frame["post_std"].to_numpy(float),
            "weight_grad_norm": frame["weight_grad_norm"].to_numpy(float),
            "pre_grad_std": frame["pre_grad_std"].to_numpy(float),
        }
        for i, (ax, (key, _)) in enumerate(zip(axes, PROFILES, strict=True)):
            ax.plot(x, _positive(columns[key]), marker="o", ms=3, color=colour, label=label)
            if (at := x[columns[key] == 0]).size:
                zeros.setdefault(i, []).append((at, colour))
        predicted = _positive(np.sqrt(frame["q_pred"].to_numpy(float)))
        if np.isfinite(predicted).any():
            axes[0].plot(x, predicted, ls="--", color=colour, lw=1)
    for i, (ax, (_, title)) in enumerate(zip(axes, PROFILES, strict=True)):
        ax.set(title=title, xlabel="layer index")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        _mark_zeros(ax, zeros.get(i, []))
    if diagnoses:
        axes[0].legend(fontsize=8, loc="best")


def _mark_zeros(ax: Axes, points: list[tuple[np.ndarray, tuple]]) -> None:
    """▼ on the lower edge of a log-scale ``ax`` at each ``(layers, colour)`` whose value
    is exactly 0, and the x label saying what they are."""
    if not points:
        return
    if not ax.has_data() or not np.isfinite(ax.dataLim.y0) or ax.dataLim.y0 <= 0:
        ax.set_ylim(1e-3, 1.0)  # nothing positive to scale the panel by
    bottom, top = ax.get_ylim()
    for at, colour in points:
        ax.plot(at, np.full(at.size, bottom), "v", ms=7, color=colour, clip_on=False)
    ax.set_ylim(bottom, top)  # plotting at the edge had moved it
    ax.set_xlabel("layer index   (▼: exactly 0, off the log scale)")


def _save(fig: Figure, path: Path) -> Path:
    return write_figure(fig, path)


def plot_histograms(diag: Drawable, path: Path) -> Path:
    """Activation and back-propagated-gradient histograms per hidden layer (Glorot Fig. 6–7)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_act, ax_grad = fig.subplots(1, 2)
    _draw_both(ax_act, ax_grad, diag)
    return _save(fig, path)


def _draw_both(ax_act: Axes, ax_grad: Axes, diag: Drawable) -> None:
    acts = {n: s["activation"] for n, s in diag.samples.items()}
    grads = {n: s["gradient"] for n, s in diag.samples.items()}
    suffix = f" — {diag.label}" if diag.label else ""
    draw_histograms(ax_act, acts, f"activation values{suffix}")
    draw_histograms(ax_grad, grads, f"back-propagated gradients dL/dz{suffix}")


def plot_profiles(diagnoses: Mapping[str, Drawable], path: Path) -> Path:
    """Per-layer profiles of one or several diagnoses (e.g. one per init), overlaid."""
    fig = Figure(figsize=(16, 4.2), layout="constrained")
    draw_profiles(list(fig.subplots(1, len(PROFILES))), diagnoses)
    return _save(fig, path)


def plot_diagnosis(diag: Drawable, path: Path) -> Path:
    """Histograms (top) and profiles (bottom) of one diagnosis in one figure."""
    fig = Figure(figsize=(16, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    _draw_both(*top.subplots(1, 2), diag)
    draw_profiles(list(bottom.subplots(1, len(PROFILES))), {diag.label or "measured": diag})
    return _save(fig, path)
