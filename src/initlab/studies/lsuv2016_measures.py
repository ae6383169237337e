"""The ``lsuv2016`` study's measurements: per-layer std at init (on the tracking probe, and
on examples LSUV never saw), each init's learning rate chosen on validation accuracy.

LSUV fits each layer's scale on the run's first :data:`~initlab.train.build.INIT_BATCH` (512)
training examples and stops once ``|Var − 1| < 0.1`` there; the tracking probe's step-0
statistics come from the first 256 training examples, a subset of that batch, so a unit std
measured there holds by construction. Here each LSUV run's network is built again as the run
built it (the study's settings with the run's activation, init and seed, LSUV fitted on the
same training examples) and measured on the first :data:`HELDOUT` *test* examples, which no
run trains or initializes on: the check then asks whether the unit variance carries over to
other data of the same distribution.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from initlab.studies.base import StudyContext

HELDOUT = 1000
"""Test examples the held-out std is measured on (all of them where the test set is smaller:
the tiny scale's digits have 360)."""
COLUMNS = ["activation", "init", "index", "layer", "value", "se"]


def init_stds(ctx: StudyContext) -> pd.DataFrame:
    """``activation, init, index, layer, value``: the pre-activation std of every layer at
    step 0 (the init) on the tracking probe (the first 256 training examples), mean over runs;
    ``index`` counts the hidden layers from 1, the output layer comes last."""
    columns = ["activation", "init", "index", "layer", "value"]
    stats = ctx.layer_stats
    if stats.empty:
        return pd.DataFrame(columns=columns)
    rows = stats[(stats["step"] == 0) & (stats["metric"] == "pre_std")]
    rows = rows.merge(ctx.runs[["run_id", "activation", "init"]], on="run_id")
    rows = rows.assign(index=[layer_index(name) for name in rows["layer"]])
    mean = rows.groupby(["activation", "init", "index", "layer"])["value"].mean().reset_index()
    finite = mean["index"].where(np.isfinite(mean["index"]))
    top = finite.groupby([mean["activation"], mean["init"]]).transform("max").fillna(0)
    mean["index"] = np.where(np.isfinite(mean["index"]), mean["index"], top + 1).astype(int)
    return mean.sort_values(["activation", "init", "index"])[columns].reset_index(drop=True)


def best_lrs(runs: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Per (activation, init): the learning rate with the best mean final *validation*
    accuracy (a diverged run counts as 0), never the test accuracy that the checks then
    compare at it; the smaller rate wins a tie. Empty without validation accuracies."""
    if runs.empty or "final_val_accuracy" not in runs or runs["final_val_accuracy"].isna().all():
        return {}
    val = pd.to_numeric(runs["final_val_accuracy"], errors="coerce").fillna(0.0)
    scored = runs[["activation", "init", "lr"]].assign(val=val)
    means = scored.groupby(["activation", "init", "lr"])["val"].mean().reset_index()
    means = means.sort_values(["val", "lr"], ascending=[False, True])
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


def heldout_stds(ctx: StudyContext, fixed: dict[str, Any], init: str = "lsuv") -> pd.DataFrame:
    """``activation, init, index, layer, value, se``: the pre-activation std of every layer of
    ``init``'s networks at init on :data:`HELDOUT` test examples, mean over the runs' seeds
    (one network per activation and seed: the init does not depend on the learning rate);
    ``se``: the largest standard error of one network's std (:func:`std_and_se`); ``index`` as
    in :func:`init_stds` (hidden layers from 1, the output last)."""
    runs = ctx.runs
    if runs.empty or not {"activation", "init", "seed"} <= set(runs.columns):
        return pd.DataFrame(columns=COLUMNS)
    nets = runs.loc[runs["init"] == init, ["activation", "seed"]].drop_duplicates()
    rows, data = [], None
    for activation, seed in zip(nets["activation"], nets["seed"], strict=True):
        config = _config(fixed, activation=activation, init=init, seed=int(seed))
        data = _load(config, ctx.data_dir) if data is None else data
        model = _build(config, data)
        x = data.x_test[:HELDOUT]
        for layer, (std, se) in layer_stds(model, x).items():
            rows.append({"activation": activation, "init": init, "layer": layer, "value": std,
                         "se": se, "index": layer_index(layer)})  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    keys = ["activation", "init", "index", "layer"]
    mean = frame.groupby(keys).agg(value=("value", "mean"), se=("se", "max")).reset_index()
    top = np.nan_to_num(mean.loc[mean["index"] < math.inf, "index"].max())
    mean["index"] = mean["index"].where(mean["index"] < math.inf, top + 1).astype(int)
    return mean.sort_values(keys)[COLUMNS].reset_index(drop=True)


def layer_index(name: str) -> float:
    """``blocks.3.linear`` → 4; the output layer (any other name) → inf (placed last)."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1]) + 1
    return math.inf


def _config(fixed: dict[str, Any], **run: Any):
    from initlab.config import RunConfig

    settings = {k: v for k, v in fixed.items() if k != "track"}
    return RunConfig(**settings, **run)


def _load(config, data_dir: str | None):
    from initlab.train.run import load_data

    return load_data(config, data_dir)  # the run's own split: its LSUV batch, its test set


def _build(config, data) -> torch.nn.Module:
    from initlab.train.build import build_initialized_model

    return build_initialized_model(config, data.input_shape, data.num_classes, data=data)


def layer_stds(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Per layer of ``model`` (the probe's layers and names): ``(std, se)`` of its
    pre-activation on the batch ``x``, in eval mode (:func:`std_and_se`)."""
    from initlab.probe.hooks import collect

    return {layer.name: std_and_se(layer.pre) for layer in collect(model, x, mode="eval")}


def std_and_se(pre: torch.Tensor) -> tuple[float, float]:
    """``(s, se)``: the population std ``s`` of every element of ``pre`` (``[n, ...]``: n
    examples) and its standard error over examples. The examples are independent draws, the
    units of one example are not, so the noise is that of the n per-example mean squares
    ``q_i = mean_units (z − mean)²``: ``s² = mean_i q_i`` has standard error ``sd(q)/√n``, and
    ``s`` (delta method) ``sd(q) / (2 s √n)`` — about ``cv(q) / (2√n)`` relative, with
    ``cv(q)`` the spread of the examples' scales: 1–2% for n = 360 to 1000 and cv ≤ 0.5."""
    z = pre.detach().double().flatten(1)
    q = (z - z.mean()).pow(2).mean(dim=1)
    s = float(q.mean().sqrt())
    n = q.numel()
    se = float(q.std() / (2 * s * math.sqrt(n))) if n > 1 and s > 0 else math.nan
    return s, se
