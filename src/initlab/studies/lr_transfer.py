"""``initlab study lr-transfer``: does the best learning rate transfer across widths?

Tensor Programs V (Yang et al. 2022), Figure 1: under the standard parametrization the
training loss against the learning rate shifts left as width grows (the best learning rate
drifts), under muP the curves stack and the optimum stays put. The study trains the built-in
width-parametrized MLP (:func:`initlab.studies.lr_transfer_models.mlp`, muP folded in as
multipliers so one learning rate per run suffices) at every (width, learning rate) of a grid
with Adam, and measures, per parametrization, the best learning rate's **drift** over widths
in grid steps: ``max_w |k*(w) − k*(w_0)|``, ``k*(w)`` the index of the learning rate with
the lowest final training loss at width ``w`` (mean over seeds; a diverged run counts as
infinitely bad), ``w_0`` the base (smallest) width.

Scales (docs/studies/lr-transfer.md has the measured costs): ``tiny`` for tests; ``default``
(quick: 2 CPU cores, a few minutes) and ``full`` (the figure's widths, Fashion-MNIST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.sweep.spec import Axis, Spec

FACTORY = "initlab.studies.lr_transfer_models:mlp"
PARAMS = ("sp", "mup")
MAX_MUP_DRIFT = 1
"""muP's best learning rate may move by one grid step (the grid's resolution)."""
MIN_SP_DRIFT = 2


@dataclass(frozen=True)
class Protocol:
    """Widths, the learning-rate grid ``2^k`` for ``k`` in ``log2_lrs``, and the budget."""

    dataset: str
    widths: tuple[int, ...]
    log2_lrs: tuple[int, ...]
    epochs: int
    seeds: int
    depth: int = 3
    limit_train: int | None = None
    input_size: int = 64


PROTOCOLS = {
    "tiny": Protocol("digits", (32, 256), tuple(range(-11, -3)), 1, 1),
    "default": Protocol("digits", (64, 128, 256, 512, 1024), tuple(range(-14, -3)), 3, 2),
    "full": Protocol(
        "fashion-mnist",
        (128, 256, 512, 1024, 2048, 4096),
        tuple(range(-16, -3)),
        5,
        3,
        input_size=784,
    ),
}


@register
class LrTransfer(Study):
    name = "lr_transfer"
    title = "learning-rate transfer across widths: SP vs muP"
    paper = "Yang et al. 2022, Tensor Programs V (muTransfer), Figure 1"
    claim = (
        "Under the standard parametrization the best learning rate of an MLP trained with Adam "
        "shrinks as the width grows; under muP it stays where it was at the base width, so it "
        "can be tuned on a small model and transferred. The study trains the built-in MLP at "
        "every width × learning rate of a grid under both and measures the best learning "
        "rate's drift over widths in grid steps."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "model": FACTORY,
            "dataset": p.dataset,
            "init": "default",
            "optimizer": "adam",
            "batch_size": 64,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "track": "off",
            "model_args": {
                "base_width": p.widths[0],
                "depth": p.depth,
                "input_size": p.input_size,
                "optimizer": "adam",
            },
        }
        axes = (
            Axis(("model_args.param",), tuple((q,) for q in PARAMS)),
            Axis(("model_args.width",), tuple((w,) for w in p.widths)),
            Axis(("lr",), tuple((2.0**k,) for k in p.log2_lrs)),
        )
        return Spec(
            name=f"study-lr-transfer-{scale}",
            fixed=fixed,
            axes=axes,
            seeds=tuple(range(p.seeds)),
            group_by=("model_args.param", "model_args.width", "lr"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        table = loss_table(ctx.runs)
        drift = {q: best_drift(table, q) for q in PARAMS}
        return [mup_expectation(table, drift), sp_expectation(table, drift)]

    def figures(self, ctx: StudyContext) -> list[Image]:
        table = loss_table(ctx.runs)
        if table.empty:
            return []
        alt = "training loss against learning rate, one line per width, SP and muP"
        return [Image.from_figure("lr-transfer", transfer_figure(table), alt)]


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean final training loss over seeds: index (param, width), columns the learning
    rates; a run that diverged or failed counts as ``inf``."""
    needed = {"model_args.param", "model_args.width", "lr", "final_train_loss"}
    if runs.empty or not needed <= set(runs.columns):
        return pd.DataFrame()
    loss = pd.to_numeric(runs["final_train_loss"], errors="coerce").astype(float)
    loss = loss.where(np.isfinite(loss), math.inf)
    frame = runs.assign(loss=loss, width=runs["model_args.width"].astype(int))
    frame = frame.rename(columns={"model_args.param": "param"})
    return frame.groupby(["param", "width", "lr"])["loss"].mean().unstack("lr").sort_index()


def best_lrs(table: pd.DataFrame, param: str) -> pd.Series:
    """The grid index of the best learning rate per width (``NaN``: every run diverged)."""
    if table.empty or param not in table.index.get_level_values("param"):
        return pd.Series(dtype=float)
    rows = table.loc[param].replace(math.inf, np.nan)
    return rows.apply(
        lambda r: float(np.nanargmin(r.to_numpy())) if r.notna().any() else np.nan, axis=1
    )


def best_drift(table: pd.DataFrame, param: str) -> float:
    """``max_w |k*(w) − k*(w_0)|`` in grid steps (NaN when undecidable)."""
    best = best_lrs(table, param).dropna()
    if len(best) < 2:
        return math.nan
    return float((best - best.iloc[0]).abs().max())


def _evidence(table: pd.DataFrame, param: str, drift: float) -> str:
    best = best_lrs(table, param)
    lrs = list(table.columns)
    shown = ", ".join(
        f"{w}: {lrs[int(k)]:.2g}" if k == k else f"{w}: all diverged" for w, k in best.items()
    )
    return f"best lr by width ({shown}); drift {drift:g} grid step(s) of ×2"


def mup_expectation(table: pd.DataFrame, drift: dict[str, float]) -> Expectation:
    d = drift["mup"]
    verdict = None if math.isnan(d) else d <= MAX_MUP_DRIFT
    claim = f"muP: the best learning rate moves by at most {MAX_MUP_DRIFT} grid step over widths"
    return Expectation(claim, verdict, _evidence(table, "mup", d))


def sp_expectation(table: pd.DataFrame, drift: dict[str, float]) -> Expectation:
    d, m = drift["sp"], drift["mup"]
    verdict = None if math.isnan(d) or math.isnan(m) else (d >= MIN_SP_DRIFT and d > m)
    claim = f"SP: the best learning rate drifts by ≥ {MIN_SP_DRIFT} grid steps, more than muP's"
    return Expectation(claim, verdict, _evidence(table, "sp", d))


def transfer_figure(table: pd.DataFrame) -> Figure:
    """TP V Figure 1's shape: training loss against log2(learning rate), one line per width,
    one panel per parametrization; the best learning rate of each width marked."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, len(PARAMS), sharey=True)
    widths = sorted(table.index.get_level_values("width").unique())
    colors = colormaps["viridis"].resampled(max(len(widths), 2))
    x = np.log2(np.asarray(table.columns, dtype=float))
    finite = table.replace(math.inf, np.nan)
    for ax, param in zip(axes, PARAMS, strict=True):
        for k, width in enumerate(widths):
            if (param, width) not in finite.index:
                continue
            y = finite.loc[(param, width)].to_numpy(float)
            ax.plot(x, y, marker="o", markersize=3, color=colors(k), label=f"width {width}")
            if np.isfinite(y).any():
                best = int(np.nanargmin(y))
                ax.plot(x[best], y[best], marker="*", markersize=10, color=colors(k))
        ax.set(title={"sp": "standard parametrization", "mup": "muP"}[param])
        ax.set(xlabel="log2 learning rate", yscale="log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final training loss")
    axes[-1].legend(fontsize=8)
    return fig
