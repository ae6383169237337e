"""``lab``: the classic initialization lab — zeros, random normal, Glorot, He — done fairly.

Reference run (Keras, 784-300-100-10 ReLU, SGD, batch 32, 5 epochs, MNIST): he_normal
0.9536, random_normal 0.9483, zeros 0.1135 (the share of the digit 1 in MNIST's test set).
"""

from __future__ import annotations

import math

import torch

from initlab.config import DEFAULT_INITS
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.checks import final_layer_metric, group_accuracy
from initlab.sweep.spec import Axis, Spec

INITS = {
    "tiny": ("zeros", "random_normal", "he_normal"),
    "default": ("zeros", "random_normal", "glorot_uniform", "he_normal"),
    "full": DEFAULT_INITS,
}
FIXED = {
    "tiny": {"dataset": "digits", "hidden": (64, 32), "epochs": 4, "lr": 0.1},
    "default": {"dataset": "fashion-mnist", "hidden": (300, 100), "epochs": 5, "lr": 0.01},
    "full": {"dataset": "fashion-mnist", "hidden": (300, 100), "epochs": 5, "lr": 0.01},
}
SEEDS = {"tiny": 2, "default": 3, "full": 5}


@register
class Lab(Study):
    name = "lab"
    title = "The initialization lab"
    paper = "The classic course lab (Keras reference run on MNIST: he_normal 0.9536, zeros 0.1135)"
    claim = (
        "Zero initialization leaves every hidden unit identical forever, so the network "
        "predicts one class for every input and its loss settles at the label entropy; any random "
        "scheme breaks the symmetry and learns, He at least as well as a fixed-std normal."
    )

    def spec(self, scale: str) -> Spec:
        axis = Axis(("init",), tuple((i,) for i in INITS[scale]))
        fixed = {**FIXED[scale], "activation": "relu", "output_init": "glorot_uniform"}
        return Spec(
            name=f"study-lab-{scale}",
            fixed=fixed,
            axes=(axis,),
            seeds=tuple(range(SEEDS[scale])),
            group_by=("init",),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        return [
            _zeros_at_chance(ctx),
            _zeros_symmetric(ctx),
            _zeros_loss_is_label_entropy(ctx),
            _he_at_least_random_normal(ctx),
        ]


def _zeros_at_chance(ctx: StudyContext) -> Expectation:
    """Every zeros run's test accuracy is one class's share of the test set, to within half
    an example: it predicts that class for every input. (Not "the majority class": on
    balanced data every class's share is about the same, and a tie in the training labels
    can go to any class.)"""
    claim = "zeros predicts one class for every input: test accuracy = that class's share"
    runs = ctx.runs[ctx.runs["init"] == "zeros"]
    accuracies = runs["test_accuracy"].dropna().astype(float).tolist()
    if not accuracies:
        return Expectation(claim, None, "no finished zeros run")
    labels = ctx.dataset(str(runs["dataset"].iloc[0])).y_test
    shares = torch.bincount(labels).double() / len(labels)
    tolerance = 0.5 / len(labels)
    matched = [
        [k for k, x in enumerate(shares.tolist()) if abs(a - x) <= tolerance] for a in accuracies
    ]
    shown = ", ".join(f"{a:.4f} ({_classes(m)})" for a, m in zip(accuracies, matched, strict=True))
    evidence = f"zeros per run: {shown}; within ±{tolerance:.2g} (half an example of {len(labels)})"
    return Expectation(claim, all(matched), evidence)


def _classes(matched: list[int]) -> str:
    """Which classes' test shares an accuracy equals: the classes the run may predict for
    every input (on balanced data several classes have the same share)."""
    if not matched:
        return "no class's share"
    if len(matched) == 1:
        return f"= class {matched[0]}'s share"
    return f"= the share of classes {', '.join(map(str, matched))}: one of them every time"


def _zeros_symmetric(ctx: StudyContext) -> Expectation:
    claim = "after training, every hidden unit of the zeros net is identical to the others"
    runs = ctx.runs[ctx.runs["init"] == "zeros"]
    if runs.empty or ctx.layer_stats.empty:
        return Expectation(claim, None, "no per-layer statistics of a zeros run (tracking off?)")
    widths = [int(w) for w in str(runs["hidden"].iloc[0]).split("-")]
    dup = final_layer_metric(ctx.layer_stats, runs["run_id"], "weight_duplicates")
    hidden = dup[dup["layer"].str.startswith("blocks.")]  # the MLP's hidden layers
    found = [int(v) for v in hidden.groupby("layer", sort=False)["value"].min()]
    ok = len(found) == len(widths) and all(d == w for d, w in zip(found, widths, strict=True))
    return Expectation(
        claim, ok, f"identical units per hidden layer: {found} of {widths} (worst seed)"
    )


def _zeros_loss_is_label_entropy(ctx: StudyContext) -> Expectation:
    claim = "the zeros net's training loss settles at the entropy of the labels"
    runs = ctx.runs[ctx.runs["init"] == "zeros"]
    if runs.empty:
        return Expectation(claim, None, "no finished zeros run")
    labels = ctx.dataset(runs["dataset"].iloc[0]).y_train
    p = torch.bincount(labels).double() / len(labels)
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    loss = float(runs["final_train_loss"].mean())
    return Expectation(
        claim,
        abs(loss - entropy) < 0.02,
        f"loss {loss:.4f}, H(y) = {entropy:.4f} nats (ln 10 = {math.log(10):.4f})",
    )


def _he_at_least_random_normal(ctx: StudyContext) -> Expectation:
    claim = (
        "random schemes learn; he_normal is not worse than random_normal (its mean not below "
        "random_normal's by more than two standard errors)"
    )
    he = group_accuracy(ctx.runs, "init", "he_normal")
    rn = group_accuracy(ctx.runs, "init", "random_normal")
    if he is None or rn is None:
        return Expectation(claim, None, "missing he_normal or random_normal runs")
    chance = 1.5 / ctx.dataset(ctx.runs["dataset"].iloc[0]).num_classes
    margin = 2 * max(he.se, rn.se, 1e-3)
    ok = he.mean > chance and rn.mean > chance and he.mean >= rn.mean - margin
    return Expectation(
        claim, ok, f"he_normal {he}; random_normal {rn}; he_normal − random_normal = "
        f"{he.mean - rn.mean:+.4f}, allowed down to −{margin:.4f} (2 s.e.); learning means "
        f"above 1.5 × chance = {chance:.3f}"
    )  # fmt: skip
