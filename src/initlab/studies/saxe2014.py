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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from scipy import stats as sps

from initlab import initializers
from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import depth_of
from initlab.sweep.spec import Axis, Spec

GAUSSIAN = "variance_scaling(scale=1, mode='fan_in', distribution='untruncated_normal')"
INITS = {"orthogonal": "orthogonal", "scaled Gaussian": GAUSSIAN}
"""Display name → init spec (both have Var(W) = 1/fan_in on square layers)."""
THRESHOLD = 0.5
"""Training cross-entropy (nats) whose first crossing is the time to threshold."""
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


@dataclass(frozen=True)
class Protocol:
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
    "tiny": Protocol("digits", (2, 8), 32, (0.02, 0.08), 12, None, 50, 1),
    "default": Protocol("fashion-mnist", (2, 4, 8, 16, 32, 64), 128, LR_GRID, 50, 1000, 50, 2),
    "full": Protocol(
        "fashion-mnist", (2, 4, 8, 16, 32, 64, 100), 1000, (0.0003125, *LR_GRID),
        60, 2000, 50, 3,
    ),
}  # fmt: skip


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


def crossing_time(losses: Sequence[float], threshold: float = THRESHOLD) -> float:
    """The (fractional) epoch at which ``losses`` (one per epoch, epoch 1 first) first fall
    to ``threshold`` or below, linearly interpolated between epochs; ``inf`` if never (a
    non-finite loss ends the curve: the run diverged)."""
    previous = math.nan
    for epoch, loss in enumerate(losses, start=1):
        if not math.isfinite(loss):
            return math.inf
        if loss <= threshold:
            if not math.isfinite(previous):
                return float(epoch)
            return epoch - 1 + (previous - threshold) / (previous - loss)
        previous = loss
    return math.inf


def init_name(spec: str) -> str:
    """The display name of an init spec (the spec itself when it is not one of ours)."""
    return next((name for name, s in INITS.items() if s == spec), spec)


def run_times(ctx: StudyContext, threshold: float = THRESHOLD) -> pd.DataFrame:
    """One row per run: ``init, depth, lr, seed, time`` (epochs to ``threshold``)."""
    runs, epochs = ctx.runs, ctx.results.epochs
    if runs.empty:
        return pd.DataFrame(columns=["init", "depth", "lr", "seed", "time"])
    curves = (
        {rid: g.sort_values("epoch")["train_loss"].tolist() for rid, g in epochs.groupby("run_id")}
        if not epochs.empty
        else {}
    )
    return pd.DataFrame(
        {
            "init": [init_name(i) for i in runs["init"]],
            "depth": [depth_of(h) for h in runs["hidden"]],
            "lr": runs["lr"].astype(float),
            "seed": runs["seed"],
            "time": [crossing_time(curves.get(rid, []), threshold) for rid in runs["run_id"]],
        }
    )


def best_times(times: pd.DataFrame) -> pd.DataFrame:
    """Per (init, depth): the learning rate with the smallest mean time over seeds (a seed
    that never reached the threshold makes its learning rate's mean ``inf``), that
    ``time``, its seeds' ``std`` and ``seeds``, and ``edge``: whether that learning rate is
    the smallest or largest tried (a better one may lie outside the grid)."""
    columns = ["init", "depth", "lr", "time", "std", "seeds", "edge"]
    if times.empty:
        return pd.DataFrame(columns=columns)
    per_lr = (
        times.groupby(["init", "depth", "lr"])["time"]
        .agg(time="mean", std=lambda t: float(np.std(t)) if np.isfinite(t).all() else math.inf)
        .reset_index()
    )
    per_lr["seeds"] = times.groupby(["init", "depth", "lr"])["time"].size().to_numpy()
    grid = per_lr.groupby(["init", "depth"])["lr"]
    per_lr["edge"] = per_lr["lr"] == grid.transform("min")
    per_lr["edge"] |= per_lr["lr"] == grid.transform("max")
    best = per_lr.sort_values(["time", "lr"]).groupby(["init", "depth"], sort=False).head(1)
    return best.sort_values(["init", "depth"]).reset_index(drop=True)[columns]


def _series(best: pd.DataFrame, init: str) -> pd.DataFrame:
    return best[best["init"] == init].sort_values("depth")


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
    rows = _series(best, "orthogonal")
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
    rows = _series(best, "scaled Gaussian")
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


@lru_cache(maxsize=64)
def product_singular_values(init: str, width: int, depth: int, seed: int = 0) -> np.ndarray:
    """Singular values (descending) of ``W_depth ⋯ W_1`` for ``depth`` square
    ``width × width`` matrices drawn from ``init`` (float64; cached: do not modify)."""
    scheme = initializers.parse(init)
    generator = torch.Generator().manual_seed(seed)
    product = torch.eye(width, dtype=torch.float64)
    for _ in range(depth):
        weight = scheme(torch.empty(width, width, dtype=torch.float64), generator)
        product = weight @ product
    return torch.linalg.svdvals(product).numpy()


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


COLORS = {"orthogonal": "tab:blue", "scaled Gaussian": "tab:red"}


def time_figure(best: pd.DataFrame) -> Figure:
    """Epochs to threshold and the best learning rate against depth, both inits."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_time, ax_lr = fig.subplots(1, 2)
    ceiling = best["time"].replace(math.inf, np.nan).max()
    ceiling = 1.0 if not np.isfinite(ceiling) else ceiling
    for init, color in COLORS.items():
        rows = _series(best, init)
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
        for _, row in _series(best, init).iterrows():
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
