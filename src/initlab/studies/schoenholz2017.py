"""``schoenholz2017``: random tanh networks train up to a depth of about 6·xi_c.

Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), "Deep Information Propagation" (ICLR
2017, arXiv:1611.01232). Mean-field theory of random networks gives a depth scale xi_c over
which the correlation between two inputs is forgotten; it diverges at the order-to-chaos
transition (for tanh with sigma_b² = 0.05, at sigma_w² ≈ 1.76). Networks of depth L train
when L is below about 6·xi_c(sigma_w²), so only nets near the critical point train at great
depth (paper: MNIST/CIFAR-10, SGD; public reproductions: width 300, sigma_w² in [1, 4],
depth 10–100).

initlab's protocol at the default scale: tanh MLPs of width 128 with every layer drawn from
N(0, sigma_w²/fan_in) (``variance_scaling(scale=sigma_w², mode='fan_in',
distribution='untruncated_normal')``) and biases from N(0, 0.05), on a grid of depths
{5, 10, 20, 40, 60, 80} × sigma_w² {1, 1.25, 1.5, 1.76, 2.5, 3.5, 4}, trained with plain SGD
(lr 0.005, batch 64) for 5 epochs on the first 5,000 Fashion-MNIST training images, 2 seeds.
Far fewer steps than the paper (~400 instead of tens of thousands), so "trainable" is judged
on the last epoch's training accuracy (mean over seeds) against :data:`TRAINED`. The
learning rate was chosen on a pilot grid (0.01 left the 80-layer critical nets unstable,
0.003 slowed the shallow ordered-phase nets).

Each depth is one batch of the batched engine (every sigma_w² and seed at once): ``extra``
holds only ``sigma_b2`` (a setting that must agree within a batch); the standard report reads
sigma_w² from the init spec (``scale``), sigma_b² from ``extra`` and draws its heatmap with
the 6·xi_c curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import depth_of
from initlab.sweep.spec import Axis, Spec
from initlab.theory import critical_sigma_w2, max_trainable_depth

SIGMA_B2 = 0.05
BIAS = "normal(std=0.2236)"
"""N(0, 0.2236²): sigma_b² = 0.05 (0.2236² = 0.049997)."""
TRAINED = 0.5
"""A cell trained when its last epoch's training accuracy (mean over seeds) is at least this
(five times chance; the best cells reach ~0.8 in this budget)."""
FAILED = 0.2
"""A cell failed outright (no learning at all) below this accuracy (twice chance)."""
AGREEMENT = 0.75
"""Share of cells where "trained" and "depth < 6·xi_c" must agree."""
FAR = 2.0
""""Far in the ordered phase": depth at least this × 6·xi_c."""
CRITICAL_TOL = 0.05
"""A grid sigma_w² within this of the critical value counts as the critical point."""


@dataclass(frozen=True, kw_only=True)
class SchoenholzProtocol:
    """One scale's grid and training budget."""

    dataset: str
    depths: tuple[int, ...]
    sigmas: tuple[float, ...]
    width: int
    lr: float
    batch_size: int
    epochs: int
    limit_train: int | None
    seeds: int


PROTOCOLS = {
    "tiny": SchoenholzProtocol(
        dataset="digits",
        depths=(2, 12),
        sigmas=(1.0, 1.76, 2.5),
        width=32,
        lr=0.05,
        batch_size=32,
        epochs=4,
        limit_train=None,
        seeds=1,
    ),
    "default": SchoenholzProtocol(
        dataset="fashion-mnist",
        depths=(5, 10, 20, 40, 60, 80),
        sigmas=(1.0, 1.25, 1.5, 1.76, 2.5, 3.5, 4.0),
        width=128,
        lr=0.005,
        batch_size=64,
        epochs=5,
        limit_train=5000,
        seeds=2,
    ),
    "full": SchoenholzProtocol(
        dataset="fashion-mnist",
        depths=(10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
        sigmas=tuple(1.0 + 0.25 * k for k in range(13)),
        width=300,
        lr=0.001,
        batch_size=64,
        epochs=20,
        limit_train=None,
        seeds=3,
    ),
}


def init_spec(sigma_w2: float) -> str:
    """The init spec with Var(W) = sigma_w² / fan_in."""
    return f"variance_scaling(scale={sigma_w2:g}, mode='fan_in', distribution='untruncated_normal')"


def sigma_of(spec: str) -> float:
    """sigma_w² back from :func:`init_spec` (NaN for any other spec)."""
    head = "variance_scaling(scale="
    if not isinstance(spec, str) or not spec.startswith(head):
        return math.nan
    return float(spec[len(head) :].split(",")[0])


@lru_cache(maxsize=256)
def bound(sigma_w2: float) -> float:
    """6·xi_c for tanh at ``sigma_w2`` and sigma_b² = 0.05 (inf at the critical point)."""
    return max_trainable_depth("tanh", sigma_w2, SIGMA_B2)


@register
class Schoenholz2017(Study):
    name = "schoenholz2017"
    title = "Deep information propagation: tanh nets train up to depth ≈ 6·ξ_c"
    paper = "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep Information Propagation"
    claim = (
        "Random tanh networks (sigma_b² = 0.05) are trainable up to a depth of about "
        "6·xi_c(sigma_w²), a depth scale that diverges at the order-to-chaos transition "
        "(sigma_w² ≈ 1.76): deep nets train only near the critical point, and deep nets in the "
        "ordered phase (vanishing gradients) or the chaotic one fail. initlab trains a grid "
        "of depths × sigma_w² and compares each cell with the theory's bound."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "dataset": p.dataset,
            "activation": "tanh",
            "bias": BIAS,
            "output_init": None,
            "optimizer": "sgd",
            "lr": p.lr,
            "batch_size": p.batch_size,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "track": "off",
            "extra": {"sigma_b2": SIGMA_B2},
        }
        if p.dataset == "fashion-mnist":
            fixed["val_size"] = 1000
        return Spec(
            name=f"study-schoenholz2017-{scale}",
            fixed=fixed,
            axes=(
                Axis(("hidden",), tuple(((p.width,) * d,) for d in p.depths)),
                Axis(("init",), tuple((init_spec(s),) for s in p.sigmas)),
            ),
            seeds=tuple(range(p.seeds)),
            group_by=("hidden", "init"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        grid = cell_grid(ctx)
        return [agreement(grid), critical_deepest(grid), ordered_fails(grid)]

    def figures(self, ctx: StudyContext) -> list[Image]:
        grid = cell_grid(ctx)
        if grid.empty:
            return []
        return [
            Image.from_figure(
                "agreement",
                agreement_figure(grid),
                "training accuracy per depth × sigma_w² cell, the 6·xi_c curve, and whether "
                "each cell agrees with the theory",
            )
        ]


def final_train_accuracy(ctx: StudyContext) -> pd.Series:
    """Each run's last-epoch training accuracy, by ``run_id`` (0 for a diverged or failed
    run: it learned nothing usable)."""
    runs, epochs = ctx.runs, ctx.results.epochs
    last = (
        epochs.sort_values("epoch").groupby("run_id")["train_accuracy"].last()
        if not epochs.empty
        else pd.Series(dtype=float)
    )
    values = runs["run_id"].map(last).astype(float)
    bad = runs["status"].isin(("diverged", "failed")) | ~np.isfinite(values)
    return pd.Series(np.where(bad, 0.0, values), index=runs["run_id"])


def cell_grid(ctx: StudyContext) -> pd.DataFrame:
    """One row per (depth, sigma_w2) cell: ``accuracy`` (mean over seeds), ``seeds``,
    ``bound`` (6·xi_c), ``predicted`` (depth < bound) and ``trained`` (accuracy ≥ TRAINED)."""
    columns = ["depth", "sigma_w2", "accuracy", "seeds", "bound", "predicted", "trained"]
    if ctx.runs.empty:
        return pd.DataFrame(columns=columns)
    runs = pd.DataFrame(
        {
            "depth": [depth_of(h) for h in ctx.runs["hidden"]],
            "sigma_w2": [sigma_of(i) for i in ctx.runs["init"]],
            "accuracy": final_train_accuracy(ctx).to_numpy(),
        }
    ).dropna(subset=["sigma_w2"])
    return grid_from_runs(runs)[columns]


def grid_from_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Cells from per-run ``depth, sigma_w2, accuracy`` rows (see :func:`cell_grid`)."""
    grid = (
        runs.groupby(["depth", "sigma_w2"])["accuracy"]
        .agg(accuracy="mean", seeds="size")
        .reset_index()
    )
    grid["bound"] = [bound(float(s)) for s in grid["sigma_w2"]]
    grid["predicted"] = grid["depth"] < grid["bound"]
    grid["trained"] = grid["accuracy"] >= TRAINED
    return grid


def _cell(row: pd.Series) -> str:
    return (
        f"σ_w²={row['sigma_w2']:g}, depth {row['depth']} "
        f"({row['accuracy']:.2f}, 6ξ_c={row['bound']:.0f})"
    )


def agreement(grid: pd.DataFrame) -> Expectation:
    """A cell's "trained" agrees with "depth < 6·xi_c" in at least :data:`AGREEMENT` of the
    cells, and more often than the better constant guess (all trained / none trained);
    undecided when every cell trained (or none did) and the theory predicts the same of
    every cell: no cell lies on the other side of the boundary, so nothing is tested."""
    claim = (
        f"trained (last-epoch training accuracy ≥ {TRAINED}) agrees with depth < 6·ξ_c(σ_w²) "
        f"in at least {AGREEMENT:.0%} of the cells, more than a constant guess"
    )
    if len(grid) < 4:
        return Expectation(claim, None, f"only {len(grid)} cells")
    agree = grid["trained"] == grid["predicted"]
    share = float(agree.mean())
    baseline = float(max(grid["trained"].mean(), 1 - grid["trained"].mean()))
    wrong = "; ".join(_cell(r) for _, r in grid[~agree].iterrows()) or "none"
    evidence = (
        f"{int(agree.sum())} of {len(grid)} cells agree ({share:.0%}); constant guess "
        f"{baseline:.0%}; disagreements: {wrong}"
    )
    if baseline == 1.0 and bool(agree.all()):  # as predicted everywhere: no boundary cell
        every = "every cell trained" if bool(grid["trained"].all()) else "no cell trained"
        return Expectation(
            claim, None, f"{evidence}; {every}, as the theory predicts of every cell: the grid "
            "has no cell on the other side of 6·ξ_c to test"
        )  # fmt: skip
    return Expectation(claim, bool(share >= AGREEMENT and share > baseline), evidence)


def deepest_trained(grid: pd.DataFrame) -> pd.Series:
    """Per sigma_w²: the deepest trained depth (0 when none trained)."""
    trained = grid[grid["trained"]].groupby("sigma_w2")["depth"].max()
    return trained.reindex(sorted(grid["sigma_w2"].unique()), fill_value=0)


def critical_deepest(grid: pd.DataFrame) -> Expectation:
    """The sigma_w² at the critical point has the largest deepest-trained depth (ties with
    some ok; undecided when every sigma_w² reaches the same depth: the grid tells none apart)."""
    critical = critical_sigma_w2("tanh", SIGMA_B2)
    claim = (
        f"the network at the critical point (σ_w² ≈ {critical:.2f}) trains at the largest "
        "depth: its deepest trained depth is the largest of all σ_w²"
    )
    if grid.empty:
        return Expectation(claim, None, "no cells")
    deepest = deepest_trained(grid)
    near = [s for s in deepest.index if abs(s - critical) <= CRITICAL_TOL]
    if not near:
        return Expectation(claim, None, f"no σ_w² within {CRITICAL_TOL} of {critical:.3f}")
    best = int(deepest[near[0]])
    shown = ", ".join(f"σ_w²={s:g}: {int(d)}" for s, d in deepest.items())
    evidence = f"deepest trained depth per σ_w²: {shown} (deepest tested {grid['depth'].max()})"
    if deepest.nunique() == 1:  # every σ_w² trains as deep (or as shallow): nothing told apart
        return Expectation(claim, None, f"{evidence}: every σ_w² reaches the same depth")
    return Expectation(claim, bool(best > 0 and best >= deepest.max()), evidence)


def ordered_fails(grid: pd.DataFrame) -> Expectation:
    """Cells far in the ordered phase (sigma_w² < critical, depth ≥ FAR·6·xi_c) all fail."""
    critical = critical_sigma_w2("tanh", SIGMA_B2)
    claim = (
        f"deep nets far in the ordered phase fail: every cell with σ_w² < {critical:.2f} and "
        f"depth ≥ {FAR:g}·6·ξ_c stays near chance (accuracy < {FAILED})"
    )
    far = grid[
        (grid["sigma_w2"] < critical - CRITICAL_TOL) & (grid["depth"] >= FAR * grid["bound"])
    ]
    if far.empty:
        return Expectation(claim, None, "no cell of the grid is that far in the ordered phase")
    ok = bool((far["accuracy"] < FAILED).all())
    evidence = "; ".join(_cell(r) for _, r in far.iterrows())
    return Expectation(claim, ok, evidence)


def agreement_figure(grid: pd.DataFrame, points: int = 20) -> Figure:
    """Training accuracy per cell (categorical axes), ✓/✗ for agreement with the theory,
    and the 6·xi_c curve mapped onto the axes (linear between grid columns, log between
    grid rows)."""
    depths = sorted(grid["depth"].unique())
    sigmas = sorted(grid["sigma_w2"].unique())
    table = grid.pivot(index="depth", columns="sigma_w2", values="accuracy")
    table = table.reindex(index=depths, columns=sigmas)
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(
        table.to_numpy(), origin="lower", cmap=colormaps["magma"], vmin=0, vmax=1, aspect="auto"
    )
    for _, row in grid.iterrows():
        i, j = depths.index(row["depth"]), sigmas.index(row["sigma_w2"])
        mark = "✓" if row["trained"] == row["predicted"] else "✗"
        color = "white" if row["accuracy"] < 0.6 else "black"
        ax.text(
            j,
            i,
            f"{row['accuracy']:.2f}\n{mark}",
            ha="center",
            va="center",
            fontsize=8,
            color=color,
        )
    x = np.linspace(sigmas[0], sigmas[-1], points)
    y = np.array([bound(float(s)) for s in x])
    y[~np.isfinite(y)] = np.nan
    y_index = np.interp(
        np.log(y), np.log(depths), np.arange(len(depths)), left=-1, right=len(depths)
    )
    ax.plot(np.interp(x, sigmas, np.arange(len(sigmas))), y_index, "c--", lw=2, label="6·ξ_c")
    ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set_xlim(-0.5, len(sigmas) - 0.5)
    ax.set_ylim(-0.5, len(depths) - 0.5)
    ax.set(xlabel="σ_w²", ylabel="depth (hidden layers)")
    ax.set_title(f"last-epoch training accuracy; ✓ agrees with depth < 6·ξ_c (trained ≥ {TRAINED})")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(image, ax=ax, label="training accuracy (mean over seeds)")
    return fig
