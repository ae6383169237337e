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
{0.003, 0.01}, selected by mean final *validation* accuracy (1,000 held-out training images)
and then compared on the test set: a fair comparison rather than one learning rate that happens
to suit one scheme, and no selection on the test set. LSUV sees the run's first 512 training
images; its unit variance is checked on held-out test images
(:mod:`~initlab.studies.lsuv2016_measures`), the drift of the other inits on the tracking
probe (the first 256 training images).
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
from initlab.studies.lsuv2016_measures import best_lrs, epoch_accuracy, heldout_stds, init_stds
from initlab.sweep.spec import Axis, Spec

INITS = ("lsuv", "orthogonal", "he_normal", "glorot_normal")
ACTIVATIONS = ("relu", "tanh")
UNIT_TOL = 0.1
"""LSUV: every layer's pre-activation std at init on held-out examples within 1 ± this."""
LSUV_BAND = 1 - math.sqrt(0.9)
"""LSUV's own stopping rule, |Var − 1| < 0.1 on its fit batch, as a band on the std: ±0.051.
``UNIT_TOL − LSUV_BAND`` (0.049) is what is left for the difference between the fit batch and
held-out examples; a held-out std from n examples has a standard error of about
``cv/(2√n)`` (:func:`~initlab.studies.lsuv2016_measures.std_and_se`): ≤ 0.013 at the tiny
scale's n = 360 (measured), smaller at n = 1000, so the margin is ≥ 3.5 standard errors and a
working LSUV is decided. The verdict is undecided only where the worst |std − 1| lies within
``NOISE_SE`` standard errors of ``UNIT_TOL``."""
MIN_HIDDEN = 4
"""The shrink check needs this many hidden layers: with fewer, relu's theoretical shrink
(1/√2)^(depth−1) is ≥ 0.35, too close to "no shrink" (1) to tell them apart."""
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
        "compares the four on a deep relu and a deep tanh MLP, each at the learning rate its "
        "validation accuracy picks."
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
        best = best_lrs(ctx.runs)
        return [
            lsuv_unit_variance(heldout_stds(ctx, self.spec(ctx.scale).fixed)),
            others_drift(init_stds(ctx)),
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
                "validation accuracy per epoch at each init's learning rate (picked on validation)",
            ),
        ]


def _range(values: pd.Series) -> str:
    return f"{values.min():.3f}–{values.max():.3f}"


def lsuv_unit_variance(stds: pd.DataFrame) -> Expectation:
    """Every LSUV layer's pre-activation std at init, measured on held-out test examples
    (:func:`~initlab.studies.lsuv2016_measures.heldout_stds`), within 1 ± :data:`UNIT_TOL`:
    the unit variance LSUV fits on its batch carries over to data it never saw. An
    implementation check: held-out examples of the same distribution differ from the fit
    batch by sampling noise only (1–2%), so only a broken LSUV (or a fit batch unlike the data)
    fails it; undecided within noise of the tolerance (:data:`LSUV_BAND`)."""
    claim = (
        "implementation check (not evidence for the paper: true unless LSUV is broken): "
        f"LSUV's unit variance carries over to examples it was not fitted on — every layer's "
        f"output (pre-activation) std at init is 1 ± {UNIT_TOL} on held-out test examples"
    )
    rows = stds[stds["init"] == "lsuv"]
    if rows.empty:
        return Expectation(claim, None, "no LSUV networks measured on held-out examples")
    worst = float((rows["value"] - 1).abs().max())
    se = float(rows["se"].max()) if "se" in rows else math.nan
    parts = [f"{a}: {_range(g['value'])}" for a, g in rows.groupby("activation")]
    layers = rows["index"].nunique()
    evidence = (
        f"held-out std over {layers} layers, {'; '.join(parts)}; worst |std − 1| {worst:.3f} "
        f"(standard error ≤ {se:.3f})"
    )
    noise = NOISE_SE * se
    if not abs(worst - UNIT_TOL) > noise:  # nan too: no noise estimate
        return Expectation(claim, None, f"{evidence}: within noise of the tolerance")
    return Expectation(claim, bool(worst < UNIT_TOL), evidence)


def _hidden_ratio(stds: pd.DataFrame, activation: str, init: str) -> tuple[float, int]:
    """Last over first hidden layer's std of ``init`` with ``activation``, and the number of
    hidden layers (``nan, 0`` where missing)."""
    rows = stds[(stds["init"] == init) & (stds["activation"] == activation)]
    hidden = rows[rows["layer"].str.startswith("blocks.")].sort_values("index")
    if hidden.empty:
        return math.nan, 0
    return float(hidden["value"].iloc[-1] / hidden["value"].iloc[0]), len(hidden)


def others_drift(stds: pd.DataFrame) -> Expectation:
    """Without LSUV, relu: orthogonal init shrinks the std layer after layer as the theory
    says, and He keeps the ratio between layers (its level is reported, not tested).

    Relu halves a symmetric pre-activation's second moment; an orthogonal square matrix (gain
    1) keeps it and He's N(0, 2/n) doubles it back. Over d hidden layers, the last/first hidden
    std is θ = (1/√2)^(d−1) for orthogonal and 1 for He. Orthogonal "shrinks as the theory
    says" when log(ratio) is nearer log θ than 0 (no shrink) or 2·log θ: ratio in (θ^1.5,
    θ^0.5); He "keeps the ratio" when it is nearer 1 than θ or 1/θ: in (θ^0.5, θ^−0.5). The
    bounds follow the depth: at the tiny scale's d = 6, θ = 0.177, orthogonal must be in
    (0.074, 0.42); at d = 16, θ = 0.0055, in (0.0004, 0.074). He's level — its std, which the
    input's scale sets — is shown, not tested: no init but LSUV aims at std 1."""
    claim = (
        "without LSUV, relu: orthogonal init shrinks the std from layer to layer as relu's "
        "halving predicts, last/first hidden ≈ (1/√2)^(depth−1) (nearer that than 1), while He "
        "keeps the ratio between layers (last/first nearer 1); He's level, set by the input's "
        "scale rather than by the init, is shown, not tested"
    )
    ortho, depth = _hidden_ratio(stds, "relu", "orthogonal")
    he, _ = _hidden_ratio(stds, "relu", "he_normal")
    if not (math.isfinite(ortho) and math.isfinite(he)):
        return Expectation(claim, None, "no per-layer statistics of orthogonal and He relu runs")
    if depth < MIN_HIDDEN:
        return Expectation(claim, None, f"{depth} hidden layers: too shallow to tell a shrink")
    theory = 2 ** (-(depth - 1) / 2)
    shrinks = theory**1.5 < ortho < theory**0.5
    keeps = theory**0.5 < he < theory**-0.5
    others = stds[stds["init"] != "lsuv"].groupby(["activation", "init"])["value"]
    ranges = "; ".join(f"{i}/{a} {_range(g)}" for (a, i), g in others)
    evidence = (
        f"{depth} hidden layers, theory (1/√2)^{depth - 1} = {theory:.4f}; last/first hidden: "
        f"orthogonal/relu {ortho:.4f} (shrinks if in {theory**1.5:.4f}–{theory**0.5:.3f}), "
        f"he_normal/relu {he:.3f} (keeps if in {theory**0.5:.3f}–{theory**-0.5:.3g}); "
        f"std ranges (levels, not tested): {ranges}"
    )
    return Expectation(claim, bool(shrinks and keeps), evidence)


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
    """Per activation, LSUV's ``metric`` (at the lr ``best`` picked on validation accuracy,
    :func:`~initlab.studies.lsuv2016_measures.best_lrs`) ≥ the best other init's (at its own)
    minus the noise band (:data:`NOISE_SE` combined standard errors)."""
    claim = (
        f"LSUV's {what} is at least as good as the best other init's, within noise "
        "(each at the lr its validation accuracy picks)"
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
    """Validation accuracy per epoch at each init's lr picked on validation (mean over seeds)."""
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
