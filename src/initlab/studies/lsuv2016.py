"""``lsuv2016``: layer-sequential unit-variance initialization against orthogonal, He, Glorot.

Mishkin & Matas (2016), "All you need is a good init" (ICLR 2016, arXiv:1511.06422). LSUV
starts from orthonormal weights, then, layer after layer, forwards a minibatch and rescales
the layer's weights until its output variance is 1 (|Var − 1| < 0.1, at most 10 rescalings).
On very deep thin nets (CIFAR-10 FitNets, ResNets) it matched or beat orthonormal, MSRA (He)
and Xavier (Glorot) init, converged faster early in training, and worked for activations
(tanh, maxout) where other schemes struggled.

initlab's protocol at the default scale: a 16-hidden-layer MLP of width 128, relu and tanh,
every layer (the output layer too) from ``lsuv`` / ``orthogonal`` / ``he_normal`` /
``glorot_normal``, SGD with momentum 0.9 and batch 64 for 5 epochs on the first 10,000
Fashion-MNIST training images, 5 seeds. Each init gets its best learning rate of
{0.003, 0.01} (by mean final test accuracy): a fair comparison rather than one learning rate
that happens to suit one scheme. LSUV sees the run's first 512 training images; the
per-layer statistics at init come from the tracking probe (the first 256, a subset).
No CIFAR, no convolutions, no maxout: the MLP stands in for the FitNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import GroupAccuracy
from initlab.sweep.spec import Axis, Spec

INITS = ("lsuv", "orthogonal", "he_normal", "glorot_normal")
ACTIVATIONS = ("relu", "tanh")
UNIT_TOL = 0.1
"""LSUV: every layer's pre-activation std at init within 1 ± this."""
SHRINK = 0.1
"""Orthogonal + relu: last/first hidden layer pre-activation std below this (it shrinks)."""
NOISE_SE = 2.0
""""Within noise": a gap of at most this many combined standard errors of the means."""
MIN_NOISE = 0.002
"""A floor on the noise band (seeds that happen to agree exactly)."""


@dataclass(frozen=True, kw_only=True)
class LsuvProtocol:
    """One scale's runs."""

    dataset: str
    depth: int
    width: int
    lrs: tuple[float, ...]
    epochs: int
    limit_train: int | None
    batch_size: int
    seeds: int


PROTOCOLS = {
    "tiny": LsuvProtocol(
        dataset="digits",
        depth=6,
        width=32,
        lrs=(0.01,),
        epochs=2,
        limit_train=None,
        batch_size=32,
        seeds=1,
    ),
    "default": LsuvProtocol(
        dataset="fashion-mnist",
        depth=16,
        width=128,
        lrs=(0.003, 0.01),
        epochs=5,
        limit_train=10000,
        batch_size=64,
        seeds=5,
    ),
    "full": LsuvProtocol(
        dataset="fashion-mnist",
        depth=20,
        width=256,
        lrs=(0.001, 0.003, 0.01, 0.03),
        epochs=20,
        limit_train=None,
        batch_size=64,
        seeds=5,
    ),
}


@register
class Lsuv2016(Study):
    name = "lsuv2016"
    title = "LSUV: unit variance at every layer, as good as the best other init"
    paper = "Mishkin & Matas 2016, All you need is a good init"
    claim = (
        "LSUV (orthonormal init, then each layer's weights rescaled until its output variance "
        "on a minibatch is 1) gives unit output variance at every layer of a deep net, where "
        "orthogonal init with relu shrinks the signal layer after layer, and trains a deep net "
        "at least as well and as fast as the best of orthogonal, He and Glorot. initlab "
        "compares the four on a deep relu and a deep tanh MLP, each at its best learning rate."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "dataset": p.dataset,
            "hidden": (p.width,) * p.depth,
            "output_init": None,
            "optimizer": "momentum",
            "momentum": 0.9,
            "batch_size": p.batch_size,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "track": "epoch",
        }
        if p.dataset == "fashion-mnist":
            fixed["val_size"] = 1000
        return Spec(
            name=f"study-lsuv2016-{scale}",
            fixed=fixed,
            axes=(
                Axis(("activation",), tuple((a,) for a in ACTIVATIONS)),
                Axis(("init",), tuple((i,) for i in INITS)),
                Axis(("lr",), tuple((lr,) for lr in p.lrs)),
            ),
            seeds=tuple(range(p.seeds)),
            group_by=("activation", "init", "lr"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        stds = init_stds(ctx)
        best = best_lrs(ctx.runs)
        return [
            lsuv_unit_variance(stds),
            others_drift(stds),
            lsuv_at_least_best(ctx.runs, best, "test_accuracy", "final test accuracy"),
            lsuv_at_least_best(
                epoch_accuracy(ctx, 1), best, "val_accuracy", "validation accuracy after epoch 1"
            ),
        ]

    def figures(self, ctx: StudyContext) -> list[Image]:
        return [
            Image.from_figure(
                "init_variance",
                variance_figure(init_stds(ctx)),
                "pre-activation std of every layer at init, per init and activation",
            ),
            Image.from_figure(
                "learning_curves",
                curves_figure(ctx, best_lrs(ctx.runs)),
                "validation accuracy per epoch at each init's best learning rate",
            ),
        ]


def init_stds(ctx: StudyContext) -> pd.DataFrame:
    """``activation, init, index, layer, value``: the pre-activation std of every layer at
    step 0 (the init), mean over runs; ``index`` counts the hidden layers from 1, the output
    layer comes last."""
    columns = ["activation", "init", "index", "layer", "value"]
    stats = ctx.layer_stats
    if stats.empty:
        return pd.DataFrame(columns=columns)
    rows = stats[(stats["step"] == 0) & (stats["metric"] == "pre_std")]
    rows = rows.merge(ctx.runs[["run_id", "activation", "init"]], on="run_id")
    rows = rows.assign(index=[_layer_index(name) for name in rows["layer"]])
    mean = rows.groupby(["activation", "init", "index", "layer"])["value"].mean().reset_index()
    finite = mean["index"].where(np.isfinite(mean["index"]))
    top = finite.groupby([mean["activation"], mean["init"]]).transform("max").fillna(0)
    mean["index"] = np.where(np.isfinite(mean["index"]), mean["index"], top + 1).astype(int)
    return mean.sort_values(["activation", "init", "index"])[columns].reset_index(drop=True)


def _layer_index(name: str) -> float:
    """``blocks.3.linear`` → 4; the output layer (any other name) → inf (placed last)."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1]) + 1
    return math.inf


def _range(values: pd.Series) -> str:
    return f"{values.min():.3f}–{values.max():.3f}"


def lsuv_unit_variance(stds: pd.DataFrame) -> Expectation:
    """Every LSUV layer's pre-activation std at init within 1 ± :data:`UNIT_TOL`."""
    claim = f"LSUV: every layer's output (pre-activation) std at init is 1 ± {UNIT_TOL}"
    rows = stds[stds["init"] == "lsuv"]
    if rows.empty:
        return Expectation(claim, None, "no per-layer statistics of LSUV runs at init")
    worst = float((rows["value"] - 1).abs().max())
    parts = [f"{a}: {_range(g['value'])}" for a, g in rows.groupby("activation")]
    layers = rows["index"].nunique()
    evidence = f"std over {layers} layers, {'; '.join(parts)}; worst |std − 1| {worst:.3f}"
    return Expectation(claim, bool(worst <= UNIT_TOL), evidence)


def others_drift(stds: pd.DataFrame) -> Expectation:
    """Orthogonal + relu shrinks (last/first hidden < :data:`SHRINK`); no other init keeps
    every layer within 1 ± :data:`UNIT_TOL`."""
    claim = (
        f"without LSUV the scale drifts: orthogonal with relu shrinks the std from the first "
        f"to the last hidden layer by more than {1 / SHRINK:g}×, and no other init keeps every "
        f"layer within 1 ± {UNIT_TOL}"
    )
    others = stds[stds["init"] != "lsuv"]
    ortho = others[(others["init"] == "orthogonal") & (others["activation"] == "relu")]
    if ortho.empty:
        return Expectation(claim, None, "no per-layer statistics of orthogonal relu runs")
    hidden = ortho[ortho["layer"].str.startswith("blocks.")].sort_values("index")
    if len(hidden) < 2:
        return Expectation(claim, None, "fewer than two hidden layers of orthogonal relu runs")
    shrink = float(hidden["value"].iloc[-1] / hidden["value"].iloc[0])
    parts, all_off = [], True
    for (act, init), g in others.groupby(["activation", "init"]):
        inside = bool(((g["value"] - 1).abs() <= UNIT_TOL).all())
        all_off = all_off and not inside
        parts.append(f"{init}/{act} {_range(g['value'])}")
    evidence = f"orthogonal/relu last/first hidden {shrink:.4f}; std ranges: {'; '.join(parts)}"
    return Expectation(claim, bool(shrink < SHRINK and all_off), evidence)


def best_lrs(runs: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Per (activation, init): the learning rate with the best mean final test accuracy."""
    if runs.empty:
        return {}
    means = runs.groupby(["activation", "init", "lr"])["test_accuracy"].mean().reset_index()
    means = means.sort_values(["test_accuracy", "lr"], ascending=[False, True])
    best = means.groupby(["activation", "init"], sort=False).head(1)
    return {
        (a, i): float(lr)
        for a, i, lr in zip(best["activation"], best["init"], best["lr"], strict=True)
    }


def epoch_accuracy(ctx: StudyContext, epoch: int) -> pd.DataFrame:
    """``run_id, activation, init, lr, val_accuracy`` at ``epoch``."""
    epochs = ctx.results.epochs
    if epochs.empty:
        return pd.DataFrame(columns=["run_id", "activation", "init", "lr", "val_accuracy"])
    rows = epochs.loc[epochs["epoch"] == epoch, ["run_id", "val_accuracy"]]
    return rows.merge(ctx.runs[["run_id", "activation", "init", "lr"]], on="run_id")


def _at_best(
    runs: pd.DataFrame, best: dict[tuple[str, str], float], activation: str, init: str, metric: str
) -> GroupAccuracy | None:
    lr = best.get((activation, init))
    sel = runs[(runs["activation"] == activation) & (runs["init"] == init)]
    values = sel.loc[np.isclose(sel["lr"].astype(float), lr or math.nan), metric]
    values = pd.to_numeric(values, errors="coerce").fillna(0.0)  # diverged: learned nothing
    if values.empty:
        return None
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return GroupAccuracy(float(values.mean()), std, len(values))


def lsuv_at_least_best(
    runs: pd.DataFrame, best: dict[tuple[str, str], float], metric: str, what: str
) -> Expectation:
    """Per activation, LSUV's ``metric`` (at its best lr) ≥ the best other init's (at its
    best lr) minus the noise band (:data:`NOISE_SE` combined standard errors)."""
    claim = (
        f"LSUV's {what} is at least as good as the best other init's, within noise "
        "(each at its best lr)"
    )
    parts, verdicts = [], []
    for activation in sorted(runs["activation"].unique()) if not runs.empty else []:
        lsuv = _at_best(runs, best, activation, "lsuv", metric)
        others = {
            i: g
            for i in INITS[1:]
            if (g := _at_best(runs, best, activation, i, metric)) is not None
        }
        if lsuv is None or not others:
            continue
        rival, acc = max(others.items(), key=lambda kv: kv[1].mean)
        noise = max(NOISE_SE * math.hypot(lsuv.se, acc.se), MIN_NOISE)
        # one seed gives no noise estimate: the comparison cannot decide
        verdicts.append(lsuv.mean >= acc.mean - noise if min(lsuv.n, acc.n) > 1 else None)
        parts.append(
            f"{activation}: lsuv {lsuv} (lr {best[(activation, 'lsuv')]:g}) vs {rival} {acc} "
            f"(lr {best[(activation, rival)]:g}), gap {lsuv.mean - acc.mean:+.4f}, "
            f"noise {noise:.4f}"
        )
    if not verdicts:
        return Expectation(claim, None, "no activation with both LSUV and other runs")
    if False in verdicts:
        return Expectation(claim, False, "; ".join(parts))
    decided = None not in verdicts
    return Expectation(claim, True if decided else None, "; ".join(parts))


COLORS = {
    "lsuv": "tab:green",
    "orthogonal": "tab:blue",
    "he_normal": "tab:red",
    "glorot_normal": "tab:orange",
}


def variance_figure(stds: pd.DataFrame) -> Figure:
    """Pre-activation std per layer at init, one panel per activation, one line per init."""
    activations = sorted(stds["activation"].unique()) or ["?"]
    fig = Figure(figsize=(5.2 * len(activations), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(activations), sharey=True))
    for ax, activation in zip(axes, activations, strict=True):
        for init, color in COLORS.items():
            g = stds[(stds["activation"] == activation) & (stds["init"] == init)]
            if not g.empty:
                ax.plot(g["index"], g["value"], marker="o", ms=3, color=color, label=init)
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.axhspan(1 - UNIT_TOL, 1 + UNIT_TOL, color="grey", alpha=0.15)
        ax.set(yscale="log", title=f"{activation}: std of each layer's output at init")
        ax.set_xlabel("layer (last = output layer)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("pre-activation std (probe batch)")
    return fig


def curves_figure(ctx: StudyContext, best: dict[tuple[str, str], float]) -> Figure:
    """Validation accuracy per epoch at each init's best lr (mean over seeds)."""
    epochs = ctx.epochs
    activations = sorted(ctx.runs["activation"].unique()) if not ctx.runs.empty else ["?"]
    fig = Figure(figsize=(5.2 * len(activations), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(activations), sharey=True))
    for ax, activation in zip(axes, activations, strict=True):
        for init, color in COLORS.items():
            lr = best.get((activation, init))
            if lr is None or epochs.empty:
                continue
            sel = epochs[(epochs["activation"] == activation) & (epochs["init"] == init)]
            curve = sel[np.isclose(sel["lr"].astype(float), lr)].groupby("epoch")["val_accuracy"]
            mean, std = curve.mean(), curve.std().fillna(0)
            ax.plot(
                mean.index, mean.to_numpy(), marker="o", color=color, label=f"{init} (lr {lr:g})"
            )
            ax.fill_between(mean.index, mean - std, mean + std, color=color, alpha=0.15)
        ax.set(title=activation, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("validation accuracy (±1 std over seeds)")
    return fig
