"""``batchnorm``: batch normalization makes training insensitive to the init scale.

Ioffe & Szegedy (2015), "Batch normalization: accelerating deep network training by reducing
internal covariate shift" (ICML), §3.3: with batch norm, back-propagation through a layer is
unaffected by the scale of its parameters — BN(W u) = BN(a W u) — so training no longer
depends on a careful init; without it, a deep plain net's signal vanishes when the weights
are too small and explodes when they are too large.

Protocol (no single paper table: this is the classic demonstration): deep plain ReLU MLPs,
every hidden layer initialized with N(0, s²) (``random_normal(stddev=s)``) for s over two
orders of magnitude, with and without a BatchNorm after every hidden linear layer; the output
layer (not followed by a BatchNorm) is ``glorot_uniform`` in every run, so only the scale of
the hidden layers varies; biases 0; SGD with momentum 0.9, lr 0.05, minibatch 64. Scaled for
``default``: 10 hidden layers of width 128, s in {0.01, 0.03, 0.1, 0.3, 1.0} (He's std for
width 128 is 0.125), the first 10,000 Fashion-MNIST training images, 10 epochs, 3 seeds.

The scale is not quite free with BN: the forward pass is scale-invariant, but the gradient
shrinks as 1/s, so the *effective* learning rate goes as lr/s² — large initial weights learn
slower (Ioffe & Szegedy: "larger weights lead to smaller gradients"). Within a fixed budget
this is the residual sensitivity the spread measures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import chance_filled
from initlab.sweep.spec import Axis, Spec

BN_SPREAD_MAX = 0.05
"""With BN, "nearly insensitive": mean test accuracy varies by at most this over the scales."""
PLAIN_SPREAD_MIN = 0.3
"""Without BN, "sensitive": mean test accuracy varies by at least this over the scales."""
FAILED_MARGIN = 0.05
"""A scale "fails" when its mean test accuracy is within this of chance (diverged = chance)."""
_STDDEV = re.compile(r"stddev\s*=\s*([0-9.eE+-]+)")


@dataclass(frozen=True, kw_only=True)
class BatchNormProtocol:
    """What changes with the scale."""

    dataset: str
    depth: int
    width: int
    stds: tuple[float, ...]
    epochs: int
    seeds: int
    limit_train: int | None


PROTOCOLS = {
    "tiny": BatchNormProtocol(
        dataset="digits",
        depth=6,
        width=32,
        stds=(0.01, 0.1, 1.0),
        epochs=3,
        seeds=1,
        limit_train=None,
    ),
    "default": BatchNormProtocol(
        dataset="fashion-mnist",
        depth=10,
        width=128,
        stds=(0.01, 0.03, 0.1, 0.3, 1.0),
        epochs=10,
        seeds=3,
        limit_train=10_000,
    ),
    "full": BatchNormProtocol(
        dataset="fashion-mnist",
        depth=10,
        width=256,
        stds=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        epochs=20,
        seeds=5,
        limit_train=None,
    ),
}


def init_of(std: float) -> str:
    """The init spec of one scale."""
    return f"random_normal(stddev={std:g})"


def std_of(init: str) -> float:
    """The std of an init spec written by :func:`init_of` (NaN for anything else)."""
    match = _STDDEV.search(str(init))
    return float(match.group(1)) if match else math.nan


@register
class BatchNorm(Study):
    name = "batchnorm"
    title = "Batch norm makes training insensitive to the init scale"
    paper = (
        "Ioffe & Szegedy, Batch normalization: accelerating deep network training by "
        "reducing internal covariate shift, ICML 2015 (§3.3)"
    )
    claim = (
        "With a BatchNorm after every linear layer, a deep ReLU MLP reaches about the same "
        "accuracy whatever the scale of its initial weights over two orders of magnitude; "
        "without it, too small a scale makes the signal vanish (chance accuracy) and too "
        "large a scale makes it explode (divergence)."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "dataset": p.dataset,
            "hidden": (p.width,) * p.depth,
            "activation": "relu",
            "output_init": "glorot_uniform",
            "bias": "zeros",
            "optimizer": "momentum",
            "momentum": 0.9,
            "lr": 0.05,
            "batch_size": 64,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "track": "off",
        }
        axes = (
            Axis(("batch_norm",), ((True,), (False,))),
            Axis(("init",), tuple((init_of(s),) for s in p.stds)),
        )
        return Spec(
            name=f"study-batchnorm-{scale}",
            fixed=fixed,
            axes=axes,
            seeds=tuple(range(p.seeds)),
            group_by=("batch_norm", "init"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        table = accuracy_table(ctx)
        return [bn_insensitive(table), plain_sensitive(table), plain_extremes_fail(table)]

    def figures(self, ctx: StudyContext) -> list[Image]:
        table = accuracy_table(ctx)
        return [accuracy_figure(table)] if not table.empty else []


def chance_of(ctx: StudyContext) -> float:
    """1 / number of classes of the study's dataset."""
    return 1.0 / ctx.dataset(str(ctx.runs["dataset"].iloc[0])).num_classes


def accuracy_table(ctx: StudyContext) -> pd.DataFrame:
    """Per (batch_norm, std): test accuracy ``mean``, ``std`` and ``n`` over seeds (diverged
    runs count as chance), how many ``diverged``, and the ``chance`` level."""
    runs = ctx.runs
    if runs.empty:
        return pd.DataFrame()
    chance = chance_of(ctx)
    frame = runs.assign(
        s=runs["init"].map(std_of),
        acc=chance_filled(runs["test_accuracy"], chance),
        diverged=runs["status"] == "diverged",
        batch_norm=runs["batch_norm"].astype(bool),
    )
    table = frame.groupby(["batch_norm", "s"]).agg(
        mean=("acc", "mean"), std=("acc", "std"), n=("acc", "size"), diverged=("diverged", "sum")
    )
    return table.assign(chance=chance)


NO_RUNS = "no runs yet"
"""The evidence of every check on a store with no runs (:func:`accuracy_table` is empty)."""


def _unmeasured(table: pd.DataFrame, bn: bool) -> str | None:
    """Why ``table`` cannot tell for one setting (:data:`NO_RUNS`, or fewer than two scales
    of it finished); ``None`` when it can."""
    if table.empty:
        return NO_RUNS
    if bn not in table.index.get_level_values("batch_norm") or len(table.loc[bn]) < 2:
        return f"fewer than two scales {'with' if bn else 'without'} batch norm finished"
    return None


def _spread(table: pd.DataFrame, bn: bool) -> tuple[float, str]:
    """(max − min of the mean accuracy over scales, per-scale text) for one setting that
    :func:`_unmeasured` passed."""
    rows = table.loc[bn]
    text = ", ".join(
        f"s={s:g}: {r['mean']:.3f}" + (f" ({int(r['diverged'])} diverged)" if r["diverged"] else "")
        for s, r in rows.iterrows()
    )
    return float(rows["mean"].max() - rows["mean"].min()), text


def bn_insensitive(table: pd.DataFrame) -> Expectation:
    """With BN the spread over scales is at most :data:`BN_SPREAD_MAX`."""
    claim = (
        "with batch norm, test accuracy is nearly insensitive to the init scale: spread (max − "
        f"min of the mean over seeds) ≤ {BN_SPREAD_MAX}"
    )
    if why := _unmeasured(table, True):
        return Expectation(claim, None, why)
    spread, text = _spread(table, True)
    return Expectation(claim, spread <= BN_SPREAD_MAX, f"spread {spread:.3f}; {text}")


def plain_sensitive(table: pd.DataFrame) -> Expectation:
    """Without BN the spread over scales is at least :data:`PLAIN_SPREAD_MIN`."""
    claim = (
        f"without batch norm, test accuracy depends on the init scale: spread ≥ {PLAIN_SPREAD_MIN}"
    )
    if why := _unmeasured(table, False):
        return Expectation(claim, None, why)
    spread, text = _spread(table, False)
    note = " (diverged runs count as chance)"
    return Expectation(claim, spread >= PLAIN_SPREAD_MIN, f"spread {spread:.3f}; {text}{note}")


def plain_extremes_fail(table: pd.DataFrame) -> Expectation:
    """Without BN, the smallest and the largest scale both end near chance (the smallest
    because the signal vanishes, the largest because it explodes or saturates)."""
    claim = (
        "without batch norm, the smallest scale vanishes and the largest explodes: both end "
        f"within {FAILED_MARGIN} of chance accuracy (or diverge)"
    )
    if why := _unmeasured(table, False):
        return Expectation(claim, None, why)
    rows = table.loc[False]
    chance = float(table["chance"].iloc[0])
    small, large = rows.iloc[0], rows.iloc[-1]
    ok = bool(small["mean"] - chance < FAILED_MARGIN and large["mean"] - chance < FAILED_MARGIN)
    evidence = (
        f"chance {chance:.3f}; s={rows.index[0]:g}: {small['mean']:.3f} "
        f"({int(small['diverged'])} of {int(small['n'])} diverged); s={rows.index[-1]:g}: "
        f"{large['mean']:.3f} ({int(large['diverged'])} of {int(large['n'])} diverged)"
    )
    return Expectation(claim, ok, evidence)


def accuracy_figure(table: pd.DataFrame) -> Image:
    """Test accuracy vs init scale (log x), with and without BN, error bars = std over seeds;
    scales where runs diverged are marked with a cross."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    styles = {True: ("tab:green", "with batch norm"), False: ("tab:purple", "without")}
    for bn in (True, False):
        if bn not in table.index.get_level_values("batch_norm"):
            continue
        rows = table.loc[bn]
        colour, label = styles[bn]
        x = rows.index.to_numpy(float)
        err = rows["std"].fillna(0).to_numpy()
        ax.errorbar(x, rows["mean"], yerr=err, marker="o", capsize=4, color=colour, label=label)
        bad = rows[rows["diverged"] > 0]
        if not bad.empty:
            ax.scatter(bad.index, bad["mean"], marker="x", s=80, color="black", zorder=3)
    ax.axhline(float(table["chance"].iloc[0]), ls="--", color="grey", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set(
        title="test accuracy vs init scale (× = some runs diverged, counted as chance)",
        xlabel="init std s of every hidden layer, N(0, s²)",
        ylabel="test accuracy",
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Image.from_figure(
        "batchnorm-scale",
        fig,
        "Test accuracy against the init scale, with and without batch norm, mean ± std over seeds",
    )
