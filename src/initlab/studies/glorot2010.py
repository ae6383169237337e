"""``glorot2010``: Glorot & Bengio (2010), "Understanding the difficulty of training deep
feedforward neural networks" (AISTATS).

Paper protocol: MLPs with 5 hidden layers of 1000 units, softmax + negative log-likelihood,
plain SGD with minibatches of 10, biases 0, learning rate chosen on validation per model;
sigmoid, tanh and softsign, each with the "standard" init U(±1/sqrt(fan_in)) and the
"normalized" init U(±sqrt(6/(fan_in + fan_out))). Table 1 (test error %, MNIST): Softsign
1.64, Softsign N 1.72, Tanh 1.76, Tanh N 1.64, Sigmoid 2.21. Figure 2: sigmoid's top hidden
layer is pushed to its lower saturation value 0 early in training. Figures 6–7: at init, with
the standard init the back-propagated gradients shrink toward the input, not with the
normalized init. Statistics over a fixed set of 300 test examples.

initlab protocol: the same depth, loss, optimizer, minibatch size and bias policy; the standard
init is ``torch_default`` (PyTorch's U(±1/sqrt(fan_in))) with zero biases, the normalized init
``glorot_uniform``; the output layer gets the same init as the hidden ones. MNIST cannot be
downloaded here, so the study uses Fashion-MNIST (harder: errors are ~10× the paper's). Scaled
down at ``default``: width 256 (not 1000), the first 10,000 training images, 5 epochs, a
learning-rate grid {0.01, 0.1} (the best per model on validation, as in the paper), 3 seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from initlab.config import RunConfig
from initlab.probe import Diagnosis, diagnose
from initlab.probe.plots import draw_histograms
from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import chance_filled, hidden_layer_rows
from initlab.sweep.spec import Axis, Spec
from initlab.train.run import build_initialized_model

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
STANDARD, NORMALIZED = "torch_default", "glorot_uniform"
LABELS = {STANDARD: "", NORMALIZED: " N"}
"""Table 1's names: ``Tanh`` is the standard init, ``Tanh N`` the normalized one."""
DEPTH = 5
PROBE_EXAMPLES = 300
"""The paper's fixed set of test examples for the statistics at init."""
PAPER_TABLE1 = {
    "Softsign": 1.64,
    "Softsign N": 1.72,
    "Tanh": 1.76,
    "Tanh N": 1.64,
    "Sigmoid": 2.21,
}
SHRINK = 0.5
"""Gradients "shrink toward the input" when std(dL/dz) of the first hidden layer is below
``SHRINK`` × that of the last hidden layer (a factor 2 over 4 layers)."""
NEAR_ZERO = 0.1
"""Sigmoid's top hidden layer is "near 0" when its mean activation is below this (init: 0.5)."""
EARLY_EPOCHS = 2
""""Early in training": within the first ``EARLY_EPOCHS`` epochs."""
LOWER_DRIFT = 0.1
"""The first hidden layer "stays near 0.5": its mean moves less than this meanwhile."""


@dataclass(frozen=True, kw_only=True)
class GlorotProtocol:
    """What changes with the scale."""

    dataset: str
    width: int
    epochs: int
    lrs: tuple[float, ...]
    seeds: int
    limit_train: int | None
    track: int
    """Per-layer statistics every ``track`` SGD steps (to see "early in training")."""


PROTOCOLS = {
    "tiny": GlorotProtocol(
        dataset="digits", width=32, epochs=3, lrs=(0.1,), seeds=1, limit_train=None, track=20
    ),
    "default": GlorotProtocol(
        dataset="fashion-mnist",
        width=256,
        epochs=5,
        lrs=(0.01, 0.1),
        seeds=3,
        limit_train=10_000,
        track=100,
    ),
    "full": GlorotProtocol(
        dataset="fashion-mnist",
        width=1000,
        epochs=20,
        lrs=(0.01, 0.03, 0.1),
        seeds=3,
        limit_train=None,
        track=1000,
    ),
}


@register
class Glorot2010(Study):
    name = "glorot2010"
    title = "Glorot & Bengio 2010: standard vs normalized init"
    paper = (
        "Glorot & Bengio, Understanding the difficulty of training deep feedforward neural "
        "networks, AISTATS 2010"
    )
    claim = (
        "In 5-hidden-layer MLPs trained with plain SGD, the standard init U(±1/sqrt(n)) makes "
        "back-propagated gradients shrink toward the input while the normalized init keeps "
        "them about constant; sigmoid's top hidden layer saturates at 0 early in training; "
        "the normalized init helps tanh, and sigmoid is the worst activation. Fashion-MNIST "
        "(scikit-learn's 8×8 digits at the tiny scale) stands in for MNIST (not downloadable "
        "here)."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "dataset": p.dataset,
            "hidden": (p.width,) * DEPTH,
            "optimizer": "sgd",
            "batch_size": 10,
            "epochs": p.epochs,
            "bias": "zeros",
            "output_init": None,
            "limit_train": p.limit_train,
            "track": p.track,
        }
        axes = (
            Axis(("activation",), tuple((a,) for a in ACTIVATIONS)),
            Axis(("init",), ((STANDARD,), (NORMALIZED,))),
            Axis(("lr",), tuple((lr,) for lr in p.lrs)),
        )
        return Spec(
            name=f"study-glorot2010-{scale}",
            fixed=fixed,
            axes=axes,
            seeds=tuple(range(p.seeds)),
            group_by=("activation", "init", "lr"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        errors = error_table(ctx)
        return [
            gradients_shrink_expectation(gradient_ratios(ctx)),
            sigmoid_saturation(ctx),
            tanh_normalized_helps(errors),
            sigmoid_worst(errors),
        ]

    def figures(self, ctx: StudyContext) -> list[Image]:
        images = [histogram_figure(ctx)]
        sigmoid = sigmoid_figure(ctx)
        if sigmoid is not None:
            images.append(sigmoid)
        errors = error_table(ctx)
        if not errors.empty:
            images.append(error_figure(errors))
        return images


# -- (a) gradients at init -------------------------------------------------------------


def init_diagnosis(ctx: StudyContext, activation: str, init: str, seed: int = 0) -> Diagnosis:
    """The scale's network with ``activation`` and ``init``, diagnosed at init on the first
    :data:`PROBE_EXAMPLES` test examples (as the paper's statistics)."""
    fixed = Glorot2010().spec(ctx.scale).fixed
    config = RunConfig(
        dataset=fixed["dataset"],
        hidden=fixed["hidden"],
        activation=activation,
        init=init,
        output_init=None,
        bias="zeros",
        seed=seed,
    )
    data = ctx.dataset(config.dataset)
    model = build_initialized_model(config, data.input_shape, data.num_classes)
    x, y = data.x_test[:PROBE_EXAMPLES], data.y_test[:PROBE_EXAMPLES]
    return diagnose(model, x, y, label=f"{activation}, {init}")


def first_last_ratio(diag: Diagnosis, column: str = "pre_grad_std") -> float:
    """``column`` of the first hidden layer over that of the last hidden layer."""
    hidden = diag.layers[diag.layers["layer"].str.startswith("blocks.")]
    return float(hidden[column].iloc[0] / hidden[column].iloc[-1])


def gradient_ratios(ctx: StudyContext, activation: str = "tanh") -> dict[str, float]:
    """Per init: std(dL/dz) first / last hidden layer at init, mean over the study's seeds."""
    seeds = range(PROTOCOLS[ctx.scale].seeds)
    return {
        init: float(
            np.mean([first_last_ratio(init_diagnosis(ctx, activation, init, s)) for s in seeds])
        )
        for init in (STANDARD, NORMALIZED)
    }


def gradients_shrink_expectation(ratios: dict[str, float]) -> Expectation:
    """Standard init: the ratio is below :data:`SHRINK`; normalized init: it is not."""
    claim = (
        "at init (tanh), back-propagated gradients shrink toward the input with the standard "
        "init, not with the normalized init (paper Fig. 7)"
    )
    standard, normalized = ratios.get(STANDARD), ratios.get(NORMALIZED)
    if standard is None or normalized is None or not np.isfinite([standard, normalized]).all():
        return Expectation(claim, None, f"ratios not measurable: {ratios}")
    ok = standard < SHRINK <= normalized
    evidence = (
        f"std(dL/dz) first / last hidden layer, {PROBE_EXAMPLES} test examples: standard "
        f"{standard:.3f}, normalized {normalized:.3f} (shrinking = below {SHRINK}; linear-regime "
        f"theory: (1/sqrt(3))^{DEPTH - 1} = {3 ** (-(DEPTH - 1) / 2):.3f} and 1)"
    )
    return Expectation(claim, ok, evidence)


# -- (b) sigmoid's top hidden layer -----------------------------------------------------


def sigmoid_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Sigmoid + standard init at the largest learning rate of the study (the one at which
    SGD moves the weights most within the budget)."""
    sig = runs[(runs["activation"] == "sigmoid") & (runs["init"] == STANDARD)]
    return sig[sig["lr"] == sig["lr"].max()] if not sig.empty else sig


def sigmoid_layer_means(ctx: StudyContext, metric: str = "post_mean") -> pd.DataFrame:
    """``metric`` per hidden layer (columns, 0-based) and tracked step (rows, with the
    epoch), mean over the sigmoid runs of :func:`sigmoid_runs`."""
    runs = sigmoid_runs(ctx.runs)
    if runs.empty or ctx.layer_stats.empty:
        return pd.DataFrame()
    rows = hidden_layer_rows(ctx.layer_stats, metric)
    rows = rows[rows["run_id"].isin(runs["run_id"])]
    return rows.pivot_table(index=["epoch", "step"], columns="index", values="value")


def sigmoid_saturation(ctx: StudyContext) -> Expectation:
    """The last hidden layer's mean activation drops below :data:`NEAR_ZERO` within the first
    :data:`EARLY_EPOCHS` epochs while the first hidden layer's stays near its init value."""
    claim = (
        "sigmoid + standard init: the top hidden layer is pushed toward 0 early in training "
        f"(mean activation < {NEAR_ZERO} within {EARLY_EPOCHS} epochs) while the first hidden "
        "layer stays near 0.5 (paper Fig. 2)"
    )
    means = sigmoid_layer_means(ctx)
    if means.empty:
        return Expectation(claim, None, "no tracked statistics of sigmoid + standard-init runs")
    early = means[means.index.get_level_values("epoch") <= EARLY_EPOCHS]
    top, first = early[early.columns.max()], early[early.columns.min()]
    below = top[top < NEAR_ZERO]
    drift = float((first - first.iloc[0]).abs().max())
    ok = not below.empty and drift < LOWER_DRIFT
    reached = f"from step {below.index[0][1]}" if not below.empty else "never"
    sat = sigmoid_layer_means(ctx, "saturated_frac")
    sat_top = float(sat[sat.columns.max()].iloc[-1]) if not sat.empty else float("nan")
    lr = sigmoid_runs(ctx.runs)["lr"].max()
    evidence = (
        f"lr {lr:g}: top hidden layer mean {top.iloc[0]:.3f} at init → {top.min():.3f} "
        f"(min over the first {EARLY_EPOCHS} epochs; below {NEAR_ZERO}: {reached}); first "
        f"hidden layer drifts at most {drift:.3f}; top layer's fraction outside (0.01, 0.99) "
        f"at the end: {sat_top:.3f}"
    )
    return Expectation(claim, ok, evidence)


# -- (c) test errors ---------------------------------------------------------------------


def table_name(activation: str, init: str) -> str:
    """Table 1's row name: ``Tanh``, ``Tanh N``, ..."""
    return activation.capitalize() + LABELS.get(init, f" ({init})")


def error_table(ctx: StudyContext) -> pd.DataFrame:
    """Per (activation, init): the learning rate with the best mean final validation accuracy
    (the paper's model selection), and the test error in % at it (mean, std, n over seeds).
    Diverged runs count as chance accuracy."""
    runs = ctx.runs
    if runs.empty:
        return pd.DataFrame()
    chance = 1.0 / ctx.dataset(str(runs["dataset"].iloc[0])).num_classes
    runs = runs.assign(
        val=chance_filled(runs["final_val_accuracy"], chance),
        err=100 * (1 - chance_filled(runs["test_accuracy"], chance)),
    )
    by_lr = runs.groupby(["activation", "init", "lr"], sort=False).agg(
        val=("val", "mean"), err=("err", "mean"), err_std=("err", "std"), n=("err", "size")
    )
    best = by_lr.loc[by_lr.groupby(level=[0, 1], sort=False)["val"].idxmax()].reset_index()
    best["name"] = [table_name(a, i) for a, i in zip(best["activation"], best["init"], strict=True)]
    return best.set_index("name")


def _row(errors: pd.DataFrame, name: str) -> str:
    r = errors.loc[name]
    std = f" ± {r['err_std']:.2f}" if r["n"] > 1 else ""
    return f"{name} {r['err']:.2f}{std} (lr {r['lr']:g})"


def tanh_normalized_helps(errors: pd.DataFrame) -> Expectation:
    """Tanh N's mean test error is below Tanh's by more than twice the standard error of the
    difference; the right order within the noise is undecided."""
    claim = "the normalized init helps tanh: Tanh N has a lower test error than Tanh (Table 1)"
    if errors.empty or not {"Tanh", "Tanh N"} <= set(errors.index):
        return Expectation(claim, None, "missing tanh runs")
    std, norm = errors.loc["Tanh"], errors.loc["Tanh N"]
    gap = float(std["err"] - norm["err"])
    paper = "paper (MNIST): Tanh 1.76, Tanh N 1.64"
    if min(std["n"], norm["n"]) < 2:  # one seed: no standard error, so no verdict
        evidence = (
            f"test error %: {_row(errors, 'Tanh')}; {_row(errors, 'Tanh N')}; gap {gap:.2f} "
            f"(one seed: no standard error, undecided; use more seeds); {paper}"
        )
        return Expectation(claim, None, evidence)
    se = float(
        np.sqrt(np.nansum([std["err_std"] ** 2 / std["n"], norm["err_std"] ** 2 / norm["n"]]))
    )
    ok: bool | None = gap > 2 * se if gap > 0 else False
    if gap > 0 and not ok:
        ok = None
    evidence = (
        f"test error %: {_row(errors, 'Tanh')}; {_row(errors, 'Tanh N')}; gap {gap:.2f} "
        f"(2 se = {2 * se:.2f}); {paper}"
    )
    return Expectation(claim, ok, evidence)


def sigmoid_worst(errors: pd.DataFrame) -> Expectation:
    """Sigmoid (standard init) has a higher test error than every tanh and softsign model."""
    claim = "sigmoid is the worst of the three activations (Table 1)"
    if errors.empty or "Sigmoid" not in errors.index:
        return Expectation(claim, None, "missing sigmoid runs")
    others = errors.drop(index=[n for n in errors.index if n.startswith("Sigmoid")])
    if others.empty:
        return Expectation(claim, None, "no tanh or softsign runs to compare with")
    ok = bool(errors.loc["Sigmoid", "err"] > others["err"].max())
    shown = "; ".join(_row(errors, n) for n in errors.index)
    paper = ", ".join(f"{k} {v}" for k, v in PAPER_TABLE1.items())
    return Expectation(claim, ok, f"test error %: {shown}. Paper (MNIST): {paper}")


# -- figures -----------------------------------------------------------------------------


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
