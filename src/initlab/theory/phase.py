"""Phase diagrams: chi1 over a (sigma_w², sigma_b²) grid, and its plot.

``log chi1 < 0`` is the ordered phase (vanishing gradients), ``> 0`` the chaotic phase
(exploding gradients); the contour ``chi1 = 1`` is the edge of chaos, where chi1 crosses 1
(for gelu and silu it jumps across 1 there: :func:`initlab.theory.edge_of_chaos`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from initlab.atomic_files import write_files
from initlab.errors import InitlabError
from initlab.theory import _checks
from initlab.theory.meanfield import chi1

DEFAULT_SIGMA_W2 = np.linspace(0.5, 4.0, 71)
DEFAULT_SIGMA_B2 = np.linspace(0.0, 0.5, 51)


def phase_grid(
    activation: str, sigma_w2_values: np.ndarray, sigma_b2_values: np.ndarray
) -> np.ndarray:
    """``chi1`` on the grid: shape ``(len(sigma_b2_values), len(sigma_w2_values))``.

    Row i is ``sigma_b2_values[i]``, column j ``sigma_w2_values[j]`` (``np.meshgrid``'s "xy"
    layout, ready for ``pcolormesh(sigma_w2, sigma_b2, grid)``). Computed in one vectorized
    pass: fixed points ``q*`` for the whole grid, then ``chi1 = sigma_w² E[phi'(sqrt(q*) z)²]``.
    """
    sw = _checks.nonnegative("sigma_w2_values", sigma_w2_values).reshape(-1)
    sb = _checks.nonnegative("sigma_b2_values", sigma_b2_values).reshape(-1)
    if sw.size == 0 or sb.size == 0:
        raise InitlabError("phase_grid needs at least one sigma_w2 and one sigma_b2 value")
    w, b = np.meshgrid(sw, sb)
    return np.asarray(chi1(activation, w, b)).reshape(w.shape)


def _draw(ax, activation: str, sw: np.ndarray, sb: np.ndarray, grid: np.ndarray) -> None:
    from matplotlib.colors import TwoSlopeNorm

    with np.errstate(divide="ignore"):
        log_chi = np.log(np.maximum(grid, 1e-300))
    finite = log_chi[np.isfinite(log_chi)]
    span = max(float(np.max(np.abs(finite))) if finite.size else 1.0, 1e-3)
    log_chi = np.clip(log_chi, -span, span)
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    mesh = ax.pcolormesh(sw, sb, log_chi, cmap="RdBu_r", norm=norm, shading="auto")
    ax.figure.colorbar(mesh, ax=ax, label=r"$\log\,\chi_1$  (<0 ordered, >0 chaotic or exploding)")
    if sw.size > 1 and sb.size > 1 and np.nanmin(log_chi) < 0 < np.nanmax(log_chi):
        ax.contour(sw, sb, log_chi, levels=[0.0], colors="k", linewidths=1.5)
        ax.plot([], [], "k-", label=r"edge of chaos ($\chi_1$ crosses 1)")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance × fan_in)")
    ax.set_ylabel(r"$\sigma_b^2$ (bias variance)")
    ax.set_title(f"{activation}: ordered (blue) / chaotic or exploding (red)")


def plot_phase_diagram(
    activation: str,
    path_or_ax,
    sigma_w2_values: np.ndarray | None = None,
    sigma_b2_values: np.ndarray | None = None,
    *,
    dpi: int = 120,
):
    """Draw ``log chi1`` over sigma_w² (x) × sigma_b² (y) with the edge of chaos ``chi1 = 1``.

    Diverging colormap centred at ``chi1 = 1`` (blue ordered, red chaotic). ``path_or_ax`` is
    a matplotlib ``Axes`` (drawn on, returned) or a file path (a new figure is saved there
    with the Agg canvas — no pyplot, no global state — and the ``Path`` is returned; written
    beside it and renamed over it once complete, :func:`~initlab.atomic_files.write_files`,
    so a failed write leaves a file of before as it was).
    Defaults: sigma_w² in [0.5, 4] (71 values), sigma_b² in [0, 0.5] (51 values).
    """
    name = _checks.canonical(activation)
    sw = DEFAULT_SIGMA_W2 if sigma_w2_values is None else np.asarray(sigma_w2_values, float)
    sb = DEFAULT_SIGMA_B2 if sigma_b2_values is None else np.asarray(sigma_b2_values, float)
    grid = phase_grid(name, sw, sb)
    if hasattr(path_or_ax, "pcolormesh"):
        _draw(path_or_ax, name, sw, sb, grid)
        return path_or_ax
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.5))
    FigureCanvasAgg(fig)
    _draw(fig.add_subplot(), name, sw, sb, grid)
    fig.tight_layout()
    path = Path(path_or_ax)
    # by the final name's suffix (the temporary name's is .tmp when it has none)
    kind = path.suffix[1:] or rcParams["savefig.format"]
    write_files(path.parent, {path.name: lambda p: fig.savefig(p, dpi=dpi, format=kind)})
    return path
