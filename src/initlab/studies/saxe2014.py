"""``saxe2014``: depth-independent learning times of deep linear networks with orthogonal init.

Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of learning in
deep linear neural networks" (ICLR 2014, arXiv:1312.6120). Deep *linear* networks (width
1000, depth up to 100, MNIST, learning rate tuned per depth): from random orthogonal weights
the time to reach a training-error criterion is nearly independent of depth; from scaled
Gaussian weights (Var = 1/fan_in) it grows with depth. A product of orthogonal matrices keeps
every singular value at 1, while a product of scaled Gaussian matrices spreads them further
with each layer (a few large, many near 0).

initlab's protocol at the default scale: linear MLPs of width 128 and depths 2–64 on the first
1,000 Fashion-MNIST training images, plain SGD with batch 50 (20 steps per epoch) for 50 epochs,
every layer (the output layer too) from the same scheme. The learning rate is tuned per depth
and init over a factor-2 grid, as in the paper: the *time to threshold* is the epoch at which
the training loss (the epoch's mean cross-entropy) first falls below :data:`THRESHOLD`,
linearly interpolated between epochs, averaged over seeds at each learning rate; the best
learning rate's time is the depth's time (never reached: ``inf``).

What is measured lives in :mod:`initlab.studies.saxe2014_measures`, the figures in
:mod:`initlab.studies.saxe2014_figures`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import stats as sps

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.saxe2014_figures import curves_figure, singular_figure, time_figure
from initlab.studies.saxe2014_measures import (
    GAUSSIAN,
    INITS,
    THRESHOLD,
    best_times,
    init_rows,
    product_singular_values,
    run_times,
)
from initlab.sweep.spec import Axis, Spec

FLAT_RATIO = 1.5
"""Orthogonal: slowest / fastest depth time at most this counts as depth-independent."""
GROWTH_RATIO = 1.5
"""Scaled Gaussian: deepest / shallowest time at least this (and rank correlation with
depth at least :data:`GROWTH_RANK`) counts as growing with depth."""
GROWTH_RANK = 0.8
SINGULAR_TOL = 1e-3
"""Orthogonal products: every singular value within this of 1."""
NEAR_ONE = 2.0
"""A singular value within a factor 2 of 1 counts as well conditioned."""
SPREAD_SHARE = 0.25
"""Scaled Gaussian products: at most this share well conditioned at the deepest depth."""


@dataclass(frozen=True, kw_only=True)
class SaxeProtocol:
    """One scale's runs: depths × inits × learning rates × seeds."""

    dataset: str
    depths: tuple[int, ...]
    width: int
    lrs: tuple[float, ...]
    epochs: int
    limit_train: int | None
    batch_size: int
    seeds: int


LR_GRID = tuple(0.000625 * 2**k for k in range(9))  # 0.000625 … 0.16, factors of 2
PROTOCOLS = {
    "tiny": SaxeProtocol(
        dataset="digits",
        depths=(2, 8),
        width=32,
        lrs=(0.02, 0.08),
        epochs=12,
        limit_train=None,
        batch_size=50,
        seeds=1,
    ),
    "default": SaxeProtocol(
        dataset="fashion-mnist",
        depths=(2, 4, 8, 16, 32, 64),
        width=128,
        lrs=LR_GRID,
        epochs=50,
        limit_train=1000,
        batch_size=50,
        seeds=2,
    ),
    "full": SaxeProtocol(
        dataset="fashion-mnist",
        depths=(2, 4, 8, 16, 32, 64, 100),
        width=1000,
        lrs=(0.0003125, *LR_GRID),
        epochs=60,
        limit_train=2000,
        batch_size=50,
        seeds=3,
    ),
}


@register
class Saxe2014(Study):
    name = "saxe2014"
    title = "Deep linear networks: orthogonal init learns at a depth-independent speed"
    paper = (
        "Saxe, McClelland & Ganguli 2014, Exact solutions to the nonlinear dynamics of "
        "learning in deep linear neural networks"
    )
    claim = (
        "In deep linear networks trained with a learning rate tuned per depth, the time to "
        "reach a training-loss threshold from random orthogonal weights is nearly independent "
        "of depth, while from scaled Gaussian weights (same variance 1/fan_in) it grows with "
        "depth: products of orthogonal matrices keep every singular value at 1, products of "
        "Gaussian ones spread them. initlab times linear MLPs of several depths, both inits, "
        f"a grid of learning rates, to a training loss of {THRESHOLD} nats."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "dataset": p.dataset,
            "activation": "linear",
            "output_init": None,
            "optimizer": "sgd",
            "batch_size": p.batch_size,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "track": "off",
        }
        if p.dataset == "fashion-mnist":
            fixed["val_size"] = 1000  # only the validation curve, kept cheap
        return Spec(
            name=f"study-saxe2014-{scale}",
            fixed=fixed,
            axes=(
                Axis(("hidden",), tuple(((p.width,) * d,) for d in p.depths)),
                Axis(("init",), tuple((i,) for i in INITS.values())),
                Axis(("lr",), tuple((lr,) for lr in p.lrs)),
            ),
            seeds=tuple(range(p.seeds)),
            group_by=("hidden", "init", "lr"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        best = best_times(run_times(ctx))
        return [
            orthogonal_flat(best),
            gaussian_grows(best),
            singular_values_claim(PROTOCOLS[ctx.scale].width, PROTOCOLS[ctx.scale].depths),
        ]

    def figures(self, ctx: StudyContext) -> list[Image]:
        best, p = best_times(run_times(ctx)), PROTOCOLS[ctx.scale]
        return [
            Image.from_figure(
                "time_to_threshold",
                time_figure(best),
                f"epochs to a training loss of {THRESHOLD} against depth, best learning rate",
            ),
            Image.from_figure(
                "loss_curves",
                curves_figure(ctx.epochs, best),
                "training loss against epoch at each depth's best learning rate",
            ),
            Image.from_figure(
                "singular_values",
                singular_figure(p.width, p.depths),
                "singular values of the product of the hidden weight matrices at init",
            ),
        ]


def _describe(rows: pd.DataFrame) -> str:
    """``depth 2: 10.7 (lr 0.08), …``; ``*`` marks a best lr at the edge of the grid."""
    return ", ".join(
        f"depth {d}: {_fmt(t)} (lr {lr:g}{'*' if edge else ''})"
        for d, t, lr, edge in zip(
            rows["depth"], rows["time"], rows["lr"], rows["edge"], strict=True
        )
    )


def _edge_note(rows: pd.DataFrame) -> str:
    return " (* best lr at the edge of the grid)" if rows["edge"].any() else ""


def _fmt(time: float) -> str:
    return "never" if not math.isfinite(time) else f"{time:.1f}"


def orthogonal_flat(best: pd.DataFrame) -> Expectation:
    """Orthogonal: slowest / fastest depth time ≤ :data:`FLAT_RATIO`."""
    claim = (
        f"orthogonal init: epochs to training loss {THRESHOLD} (best lr per depth) nearly "
        f"independent of depth (slowest/fastest ≤ {FLAT_RATIO})"
    )
    rows = init_rows(best, "orthogonal")
    if rows["depth"].nunique() < 2:
        return Expectation(claim, None, "fewer than two depths with orthogonal runs")
    times = rows["time"].to_numpy(float)
    ratio = float(times.max() / times.min()) if np.isfinite(times).all() else math.inf
    evidence = f"{_describe(rows)}; slowest/fastest {ratio:.2f}{_edge_note(rows)}"
    return Expectation(claim, bool(ratio <= FLAT_RATIO), evidence)


def gaussian_grows(best: pd.DataFrame) -> Expectation:
    """Scaled Gaussian: deepest/shallowest ≥ :data:`GROWTH_RATIO` and Spearman correlation
    with depth ≥ :data:`GROWTH_RANK`."""
    claim = (
        f"scaled Gaussian init: the time grows with depth (deepest/shallowest ≥ {GROWTH_RATIO}, "
        f"Spearman correlation with depth ≥ {GROWTH_RANK})"
    )
    rows = init_rows(best, "scaled Gaussian")
    if rows["depth"].nunique() < 2:
        return Expectation(claim, None, "fewer than two depths with scaled Gaussian runs")
    times = rows["time"].to_numpy(float)
    if not math.isfinite(times[0]):
        evidence = f"{_describe(rows)}; the shallowest net never reached the threshold"
        return Expectation(claim, None, evidence)
    ratio = float(times[-1] / times[0])
    ranked = np.nan_to_num(times, posinf=1e300)  # never reached: slower than any time
    rank = float(sps.spearmanr(rows["depth"], ranked)[0]) if np.ptp(ranked) > 0 else 0.0
    ok = ratio >= GROWTH_RATIO and rank >= GROWTH_RANK
    evidence = (
        f"{_describe(rows)}; deepest/shallowest {ratio:.2f}, Spearman {rank:.2f}{_edge_note(rows)}"
    )
    return Expectation(claim, bool(ok), evidence)


def well_conditioned_share(values: np.ndarray) -> float:
    """The share of singular values within a factor :data:`NEAR_ONE` of 1."""
    return float(np.mean((values >= 1 / NEAR_ONE) & (values <= NEAR_ONE)))


def singular_values_claim(width: int, depths: Sequence[int]) -> Expectation:
    """At init: orthogonal products keep every singular value at 1; Gaussian ones spread."""
    claim = (
        f"at init, a product of orthogonal matrices keeps every singular value at 1 "
        f"(±{SINGULAR_TOL}); for scaled Gaussian ones the share of singular values within a "
        f"factor {NEAR_ONE:g} of 1 falls with depth, below {SPREAD_SHARE} at the deepest"
    )
    deviation = max(
        float(np.abs(product_singular_values("orthogonal", width, d) - 1).max()) for d in depths
    )
    spectra = [product_singular_values(GAUSSIAN, width, d) for d in depths]
    shares = [well_conditioned_share(v) for v in spectra]
    falling = all(b <= a for a, b in pairwise(shares))
    ok = deviation <= SINGULAR_TOL and shares[-1] < SPREAD_SHARE and falling
    shown = ", ".join(
        f"depth {d}: {share:.2f} (median {np.median(v):.2g}, max {v[0]:.2g})"
        for d, share, v in zip(depths, shares, spectra, strict=True)
    )
    evidence = (
        f"width {width}: orthogonal max |s − 1| = {deviation:.1e} at every depth; "
        f"scaled Gaussian share within [1/{NEAR_ONE:g}, {NEAR_ONE:g}]: {shown}"
    )
    return Expectation(claim, bool(ok), evidence)
