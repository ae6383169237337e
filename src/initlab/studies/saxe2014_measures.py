"""What the ``saxe2014`` study measures, shared by its checks and its figures.

Each run's *time to threshold* (the epoch at which the training loss first falls below
:data:`THRESHOLD`), the best learning rate's time per init and depth, and the singular values
of a product of weight matrices at init.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

import initlab.initializers as initializers
from initlab.run_status import DIVERGED
from initlab.studies.base import StudyContext
from initlab.studies.checks import depth_of

GAUSSIAN = "variance_scaling(scale=1, mode='fan_in', distribution='untruncated_normal')"
INITS = {"orthogonal": "orthogonal", "scaled Gaussian": GAUSSIAN}
"""Display name → init spec (both have Var(W) = 1/fan_in on square layers)."""
THRESHOLD = 0.5
"""Training cross-entropy (nats) whose first crossing is the time to threshold."""


def crossing_time(losses: Sequence[float], threshold: float = THRESHOLD) -> float:
    """The (fractional) epoch at which ``losses`` (one per epoch, epoch 1 first) first fall
    to ``threshold`` or below, linearly interpolated between epochs; ``inf`` if never (a
    non-finite loss ends the curve: the run diverged)."""
    previous = math.nan
    for epoch, loss in enumerate(losses, start=1):
        if not math.isfinite(loss):
            return math.inf
        if loss <= threshold:
            if not math.isfinite(previous):
                return float(epoch)
            return epoch - 1 + (previous - threshold) / (previous - loss)
        previous = loss
    return math.inf


def init_name(spec: str) -> str:
    """The display name of an init spec (the spec itself when it is not one of ours)."""
    return next((name for name, s in INITS.items() if s == spec), spec)


def run_times(ctx: StudyContext, threshold: float = THRESHOLD) -> pd.DataFrame:
    """One row per run: ``init, depth, lr, seed, time`` (epochs to ``threshold``; ``inf``
    for a run that diverged: the store keeps only its finite epochs, so a crossing before
    the loss blew up counted, and a diverged learning rate could be picked as the best)."""
    runs, epochs = ctx.runs, ctx.results.epochs
    if runs.empty:
        return pd.DataFrame(columns=["init", "depth", "lr", "seed", "time"])
    curves = (
        {rid: g.sort_values("epoch")["train_loss"].tolist() for rid, g in epochs.groupby("run_id")}
        if not epochs.empty
        else {}
    )
    return pd.DataFrame(
        {
            "init": [init_name(i) for i in runs["init"]],
            "depth": [depth_of(h) for h in runs["hidden"]],
            "lr": runs["lr"].astype(float),
            "seed": runs["seed"],
            "time": [
                math.inf if status == DIVERGED else crossing_time(curves.get(rid, []), threshold)
                for rid, status in zip(runs["run_id"], runs["status"], strict=True)
            ],
        }
    )


def best_times(times: pd.DataFrame) -> pd.DataFrame:
    """Per (init, depth): the learning rate with the smallest mean time over seeds (a seed
    that never reached the threshold makes its learning rate's mean ``inf``), that
    ``time``, its seeds' ``std`` and ``seeds``, and ``edge``: whether that learning rate is
    the smallest or largest tried (a better one may lie outside the grid)."""
    columns = ["init", "depth", "lr", "time", "std", "seeds", "edge"]
    if times.empty:
        return pd.DataFrame(columns=columns)
    per_lr = (
        times.groupby(["init", "depth", "lr"])["time"]
        .agg(time="mean", std=lambda t: float(np.std(t)) if np.isfinite(t).all() else math.inf)
        .reset_index()
    )
    per_lr["seeds"] = times.groupby(["init", "depth", "lr"])["time"].size().to_numpy()
    grid = per_lr.groupby(["init", "depth"])["lr"]
    per_lr["edge"] = per_lr["lr"] == grid.transform("min")
    per_lr["edge"] |= per_lr["lr"] == grid.transform("max")
    best = per_lr.sort_values(["time", "lr"]).groupby(["init", "depth"], sort=False).head(1)
    return best.sort_values(["init", "depth"]).reset_index(drop=True)[columns]


def init_rows(best: pd.DataFrame, init: str) -> pd.DataFrame:
    """The rows of :func:`best_times` for one init, shallowest first."""
    return best[best["init"] == init].sort_values("depth")


@lru_cache(maxsize=64)
def product_singular_values(init: str, width: int, depth: int, seed: int = 0) -> np.ndarray:
    """Singular values (descending) of ``W_depth ⋯ W_1`` for ``depth`` square
    ``width × width`` matrices drawn from ``init`` (float64; cached: do not modify)."""
    scheme = initializers.parse(init)
    generator = torch.Generator().manual_seed(seed)
    product = torch.eye(width, dtype=torch.float64)
    for _ in range(depth):
        weight = scheme(torch.empty(width, width, dtype=torch.float64), generator)
        product = weight @ product
    return torch.linalg.svdvals(product).numpy()
