"""The ``glorot2010`` study's figures: histograms at init (paper Fig. 6-7), sigmoid's hidden
layers during training (Fig. 2) and Table 1's test errors as bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from initlab.probe.plots import draw_histograms
from initlab.report.model import Image
from initlab.studies.base import StudyContext
from initlab.studies.glorot2010_measures import (
    NORMALIZED,
    STANDARD,
    init_diagnosis,
    sigmoid_layer_means,
    sigmoid_runs,
)


def histogram_figure(ctx: StudyContext) -> Image:
    """Paper Fig. 6–7: per-layer histograms at init of tanh activations and back-propagated
    gradients, standard (top) vs normalized (bottom) init, one curve per hidden layer."""
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for row, init in enumerate((STANDARD, NORMALIZED)):
        diag = init_diagnosis(ctx, "tanh", init)
        name = "standard" if init == STANDARD else "normalized"
        acts = {n: s["activation"] for n, s in diag.samples.items()}
        grads = {n: s["gradient"] for n, s in diag.samples.items()}
        draw_histograms(axes[row][0], acts, f"tanh activations at init — {name} init")
        draw_histograms(axes[row][1], grads, f"back-propagated gradients dL/dz — {name} init")
    return Image.from_figure(
        "glorot2010-histograms",
        fig,
        "Histograms of tanh activation values and back-propagated gradients at init, one "
        "curve per hidden layer, standard vs normalized init (Glorot & Bengio Fig. 6-7)",
    )


def sigmoid_figure(ctx: StudyContext) -> Image | None:
    """Paper Fig. 2: mean (line) and std (band) of each sigmoid hidden layer's activations
    during training, standard init."""
    means, stds = sigmoid_layer_means(ctx), sigmoid_layer_means(ctx, "post_std")
    if means.empty:
        return None
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    steps = means.index.get_level_values("step")
    for i in means.columns:
        line = ax.plot(steps, means[i], label=f"layer {i + 1}")[0]
        if i in stds.columns:
            lo, hi = means[i] - stds[i], means[i] + stds[i]
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
    lr = sigmoid_runs(ctx.runs)["lr"].max()
    ax.set(
        title=f"sigmoid, standard init (lr {lr:g}): activation mean ± std per hidden layer",
        xlabel="SGD steps",
        ylabel="activation value",
        ylim=(-0.05, 1.05),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Image.from_figure(
        "glorot2010-sigmoid",
        fig,
        "Mean and std of the sigmoid hidden layers' activations during training",
    )


def error_figure(errors: pd.DataFrame) -> Image:
    """Table 1 as bars: test error % per model at its best learning rate, ± std over seeds."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(errors))
    colours = ["tab:red" if n.startswith("Sigmoid") else "tab:blue" for n in errors.index]
    bars = ax.bar(x, errors["err"], yerr=errors["err_std"].fillna(0), color=colours, capsize=4)
    ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    ax.set_xticks(
        x, [f"{n}\n(lr {lr:g})" for n, lr in zip(errors.index, errors["lr"], strict=True)]
    )
    ax.set(ylabel="test error (%)", title="test error at the best learning rate (cf. Table 1)")
    ax.grid(alpha=0.3, axis="y")
    return Image.from_figure(
        "glorot2010-test-error", fig, "Test error per activation and init (cf. Table 1)"
    )
