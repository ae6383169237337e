"""``he2015``: He, Zhang, Ren & Sun (2015), "Delving deep into rectifiers: surpassing
human-level performance on ImageNet classification" (ICCV), §2.2 and Figure 3.

Paper protocol: plain (no skip connections, no batch norm) ReLU conv nets on ImageNet, SGD
with momentum 0.9, every layer initialized alike. With "Xavier" init (Var(W) = 1/n, the
linear-unit derivation) a 30-layer net stalls — its gradients diminish and the error does not
go down — while their init N(0, 2/fan_in) converges; at 22 layers both converge, theirs
earlier (Figure 3).

initlab protocol: plain ReLU MLPs of 22 and 30 hidden layers, ``xavier_normal``
(N(0, 2/(fan_in + fan_out)), i.e. 1/n for the square hidden layers) vs
``kaiming_normal(nonlinearity='relu')`` (N(0, 2/fan_in)), both untruncated, applied to every
layer including the output one, biases 0; SGD with momentum 0.9, lr 0.01, minibatch 64;
per-layer statistics after every epoch (and at init). Scaled down at ``default``: width 128,
the first 10,000 Fashion-MNIST training images, 10 epochs, 3 seeds (ImageNet and conv nets
are out of reach on 2 CPU cores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import depth_of, first_epoch_below, hidden_layer_rows
from initlab.sweep.spec import Axis, Spec

XAVIER = "xavier_normal"
HE = "kaiming_normal(nonlinearity='relu')"
LABELS = {XAVIER: "Xavier", HE: "He"}
LN10 = math.log(10)
STALL_MARGIN = 0.05
"""A run "stalls" while its training loss is within this of ln 10 (the loss of a uniform
prediction over 10 classes)."""
STALL_SHARE = 0.5
""""For a long time": at least this share of the epochs."""
CONVERGED = 1.0
"""A run has "converged" (started to learn for real) once its training loss is below this."""
VANISHED = 0.1
"""Gradients "diminish" when std(dL/dz) of the first hidden layer is below ``VANISHED`` × that
of the last hidden layer at init (theory for Var(W) = 1/n: 2^(-(depth-1)/2))."""


@dataclass(frozen=True, kw_only=True)
class HeProtocol:
    """What changes with the scale."""

    dataset: str
    width: int
    depths: tuple[int, int]
    """(moderate, deep): the paper's 22 and 30 layers."""
    epochs: int
    seeds: int
    limit_train: int | None


PROTOCOLS = {
    "tiny": HeProtocol(
        dataset="digits", width=32, depths=(8, 16), epochs=3, seeds=1, limit_train=None
    ),
    "default": HeProtocol(
        dataset="fashion-mnist", width=128, depths=(22, 30), epochs=10, seeds=3, limit_train=10_000
    ),
    "full": HeProtocol(
        dataset="fashion-mnist", width=256, depths=(22, 30), epochs=30, seeds=5, limit_train=None
    ),
}


@register
class He2015(Study):
    name = "he2015"
    title = "He et al. 2015: Xavier vs He init in deep plain ReLU nets"
    paper = (
        "He, Zhang, Ren & Sun, Delving deep into rectifiers: surpassing human-level "
        "performance on ImageNet classification, ICCV 2015"
    )
    claim = (
        "In a deep plain ReLU network, the Xavier init (Var(W) = 1/n) halves the signal's "
        "variance at every layer, so at 30 layers gradients vanish and training stalls at the "
        "loss of chance (ln 10) while the He init N(0, 2/fan_in) converges; at a moderate "
        "depth (22 layers) both converge, He earlier. ReLU MLPs on Fashion-MNIST (scikit-learn's "
        "8×8 digits at the tiny scale) stand in for the paper's ImageNet conv nets."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "dataset": p.dataset,
            "activation": "relu",
            "optimizer": "momentum",
            "momentum": 0.9,
            "lr": 0.01,
            "batch_size": 64,
            "epochs": p.epochs,
            "bias": "zeros",
            "output_init": None,
            "limit_train": p.limit_train,
            "track": "epoch",
        }
        axes = (
            Axis(("hidden",), tuple(((p.width,) * d,) for d in p.depths)),
            Axis(("init",), ((XAVIER,), (HE,))),
        )
        return Spec(
            name=f"study-he2015-{scale}",
            fixed=fixed,
            axes=axes,
            seeds=tuple(range(p.seeds)),
            group_by=("hidden", "init"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        curves = run_curves(ctx.epochs)
        ratios = gradient_ratios(ctx)
        return [
            gradients_expectation(ratios),
            deep_expectation(curves),
            moderate_expectation(curves),
        ]

    def figures(self, ctx: StudyContext) -> list[Image]:
        curves = run_curves(ctx.epochs)
        images = [loss_figure(curves)] if not curves.empty else []
        profile = gradient_profiles(ctx)
        if not profile.empty:
            images.append(gradient_figure(profile))
        return images


# -- data ---------------------------------------------------------------------------------


def run_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    """Training loss per run: rows (depth, init, run_id), columns the epochs (NaN after a
    run diverged)."""
    if epochs.empty:
        return pd.DataFrame()
    frame = epochs.assign(depth=epochs["hidden"].map(depth_of))
    keys = ["depth", "init", "run_id", "epoch"]
    return frame.set_index(keys)["train_loss"].unstack("epoch").sort_index()


def curves_of(curves: pd.DataFrame, depth: int, init: str) -> list[pd.Series]:
    """The training-loss curve of each run of (depth, init), indexed by epoch."""
    if curves.empty or (depth, init) not in curves.index.droplevel("run_id"):
        return []
    return [row for _, row in curves.loc[(depth, init)].iterrows()]


def gradient_profiles(ctx: StudyContext) -> pd.DataFrame:
    """std(dL/dz) per hidden layer at init (step 0), mean over seeds: rows (depth, init),
    columns the 0-based layer index."""
    if ctx.layer_stats.empty or ctx.runs.empty:
        return pd.DataFrame()
    rows = hidden_layer_rows(ctx.layer_stats, "pre_grad_std")
    rows = rows[rows["step"] == 0].merge(ctx.runs[["run_id", "hidden", "init"]], on="run_id")
    rows["depth"] = rows["hidden"].map(depth_of)
    return rows.pivot_table(index=["depth", "init"], columns="index", values="value")


def gradient_ratios(ctx: StudyContext) -> dict[str, float]:
    """Per init, at the deepest depth: std(dL/dz) first / last hidden layer at init."""
    profile = gradient_profiles(ctx)
    if profile.empty:
        return {}
    deepest = profile.index.get_level_values("depth").max()
    at = profile.loc[deepest]
    return {init: float(row.iloc[0] / row.iloc[-1]) for init, row in at.iterrows()}


# -- expectations -------------------------------------------------------------------------


def gradients_expectation(ratios: dict[str, float]) -> Expectation:
    """Xavier's ratio is below :data:`VANISHED`, He's is not."""
    claim = (
        "at init, in the deepest net, back-propagated gradients diminish toward the input "
        f"with Xavier (first/last hidden layer std(dL/dz) < {VANISHED}), not with He"
    )
    xavier, he = ratios.get(XAVIER), ratios.get(HE)
    if xavier is None or he is None:
        return Expectation(claim, None, "no per-layer statistics at init (tracking off?)")
    ok = xavier < VANISHED <= he
    evidence = f"std(dL/dz) first / last hidden layer at init: Xavier {xavier:.2e}, He {he:.3g}"
    return Expectation(claim, ok, evidence)


def _stalled_epochs(loss: pd.Series) -> int:
    """How many epochs, from the first, the loss stays within the margin of ln 10."""
    near = (loss.dropna() - LN10).abs() < STALL_MARGIN
    return int(near.cumprod().sum())


def _epochs_to_converge(runs: list[pd.Series]) -> list[float]:
    """Per run: the first epoch with a training loss below :data:`CONVERGED` (inf: never)."""
    epochs = [first_epoch_below(c.dropna(), CONVERGED) for c in runs]
    return [e if math.isfinite(e) else math.inf for e in epochs]


def _shown(values: list[float]) -> str:
    return ", ".join("never" if not math.isfinite(v) else f"{v:g}" for v in values)


def deep_expectation(curves: pd.DataFrame) -> Expectation:
    """Deepest net: most Xavier runs stay at ln 10 for at least :data:`STALL_SHARE` of the
    epochs; most He runs end below :data:`CONVERGED`. Judged run by run: a run that escapes
    the plateau at epoch 3 and one that never does average to a curve neither followed."""
    claim = (
        "deepest net (paper: 30 layers): Xavier stalls — in most runs the training loss stays "
        f"at ln 10 for ≥ {STALL_SHARE:.0%} of the epochs — while He converges (most runs end "
        f"with loss < {CONVERGED})"
    )
    if curves.empty:
        return Expectation(claim, None, "no training curves")
    depth = int(curves.index.get_level_values("depth").max())
    xavier, he = curves_of(curves, depth, XAVIER), curves_of(curves, depth, HE)
    if not xavier or not he:
        return Expectation(claim, None, f"missing Xavier or He runs at depth {depth}")
    stalled = [_stalled_epochs(c) for c in xavier]
    n_epochs = len(xavier[0])
    n_stalled = sum(s >= STALL_SHARE * n_epochs for s in stalled)
    final = [float(c.iloc[-1]) for c in he]
    n_converged = sum(f < CONVERGED for f in final)
    ok = n_stalled > len(xavier) / 2 and n_converged > len(he) / 2
    evidence = (
        f"depth {depth}, ln 10 = {LN10:.3f}: Xavier stalled in {n_stalled} of {len(xavier)} "
        f"runs (epochs at ln 10 ± {STALL_MARGIN}, per run: {_shown(stalled)} of {n_epochs}; "
        f"final loss {_shown([round(float(c.iloc[-1]), 3) for c in xavier])}); He below "
        f"{CONVERGED} at the end in {n_converged} of {len(he)} runs (final loss "
        f"{_shown([round(f, 3) for f in final])})"
    )
    return Expectation(claim, ok, evidence)


def moderate_expectation(curves: pd.DataFrame) -> Expectation:
    """Moderate depth: most runs of both inits get below :data:`CONVERGED`; He's median
    number of epochs to get there is smaller."""
    claim = (
        f"moderate depth (paper: 22 layers): both inits converge (training loss < {CONVERGED} "
        "in most runs), He earlier (median epochs to get there)"
    )
    if curves.empty:
        return Expectation(claim, None, "no training curves")
    depth = int(curves.index.get_level_values("depth").min())
    xavier, he = curves_of(curves, depth, XAVIER), curves_of(curves, depth, HE)
    if not xavier or not he:
        return Expectation(claim, None, f"missing Xavier or He runs at depth {depth}")
    ex, eh = _epochs_to_converge(xavier), _epochs_to_converge(he)
    both = all(sum(map(math.isfinite, e)) > len(e) / 2 for e in (ex, eh))
    mx, mh = float(np.median(ex)), float(np.median(eh))  # inf (never) sorts last
    ok = both and mh < mx
    evidence = (
        f"depth {depth}: epochs to a training loss < {CONVERGED}, per run: Xavier "
        f"{_shown(ex)} (median {_shown([mx])}); He {_shown(eh)} (median {_shown([mh])})"
    )
    return Expectation(claim, ok, evidence)


# -- figures ------------------------------------------------------------------------------


def loss_figure(curves: pd.DataFrame) -> Image:
    """Paper Fig. 3: training loss vs epoch, Xavier vs He, one panel per depth; thin lines
    are the runs (seeds), thick lines their mean."""
    depths = sorted(set(curves.index.get_level_values("depth")))
    fig = Figure(figsize=(5.5 * len(depths), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(depths), sharey=True))
    colours = {XAVIER: "tab:blue", HE: "tab:red"}
    for ax, depth in zip(axes, depths, strict=True):
        for init, label in LABELS.items():
            runs = curves_of(curves, depth, init)
            for c in runs:
                ax.plot(c.index, c, color=colours[init], lw=0.8, alpha=0.4)
            if runs:
                mean = pd.concat(runs, axis=1).mean(axis=1)
                ax.plot(mean.index, mean, marker="o", ms=3, lw=2, color=colours[init], label=label)
        ax.axhline(LN10, ls="--", color="grey", lw=1, label="ln 10 (chance)")
        ax.set(title=f"{depth} hidden layers", xlabel="epoch", ylabel="training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Image.from_figure(
        "he2015-loss",
        fig,
        "Training loss per epoch, Xavier vs He init: each run (thin) and their mean (thick), "
        "cf. He et al. Fig. 3",
    )


def gradient_figure(profile: pd.DataFrame) -> Image:
    """std(dL/dz) per hidden layer at init (log scale), per depth and init."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    styles = {XAVIER: ("tab:blue", "Xavier"), HE: ("tab:red", "He")}
    for (depth, init), row in profile.iterrows():
        colour, label = styles.get(init, ("grey", str(init)))
        values = row.dropna()
        dash = "-" if depth == profile.index.get_level_values("depth").max() else "--"
        ax.plot(values.index + 1, values, dash, color=colour, label=f"{label}, {depth} layers")
    ax.set_yscale("log")
    ax.set(
        title="back-propagated gradient std(dL/dz) at init",
        xlabel="hidden layer (1 = next to the input)",
        ylabel="std(dL/dz)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Image.from_figure(
        "he2015-gradients", fig, "Back-propagated gradient std per hidden layer at init"
    )
