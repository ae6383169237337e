"""The ``glorot2010`` study's protocol and measurements: the scales, the shared settings, the
network diagnosed at init, the sigmoid runs' layer statistics and Table 1's test errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from initlab.config import RunConfig
from initlab.probe import Diagnosis, diagnose
from initlab.studies.base import StudyContext
from initlab.studies.checks import chance_filled, hidden_layer_rows
from initlab.train.run import build_initialized_model

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
STANDARD, NORMALIZED = "torch_default", "glorot_uniform"
LABELS = {STANDARD: "", NORMALIZED: " N"}
"""Table 1's names: ``Tanh`` is the standard init, ``Tanh N`` the normalized one."""
DEPTH = 5
PROBE_EXAMPLES = 300
"""The paper's fixed set of test examples for the statistics at init."""


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


def fixed_settings(scale: str) -> dict[str, Any]:
    """The settings every run of the study shares at ``scale``: depth, SGD with minibatches
    of 10, zero biases, the output layer initialized like the hidden ones."""
    p = PROTOCOLS[scale]
    return {
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


def init_diagnosis(ctx: StudyContext, activation: str, init: str, seed: int = 0) -> Diagnosis:
    """The scale's network with ``activation`` and ``init``, diagnosed at init on the first
    :data:`PROBE_EXAMPLES` test examples (as the paper's statistics)."""
    fixed = fixed_settings(ctx.scale)
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
