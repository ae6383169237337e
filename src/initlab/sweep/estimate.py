"""What a sweep will cost: model-epochs, FLOPs and an estimated wall time.

FLOPs are counted from the architecture: the model is built on PyTorch's ``meta`` device
(no memory, no compute) and run on a fake batch with hooks that count the multiply-adds of
every ``Linear`` and ``Conv`` layer (2 FLOPs each; activations, norms and the optimizer are
ignored — they are a few percent for these models). Per run::

    train = 3 × forward × n_train × epochs        (backward ≈ 2 × forward)
    eval  = forward × (n_val × epochs + n_test)   (validation every epoch, test at the end)

Time = GFLOP × :data:`SECONDS_PER_GFLOP` + optimizer steps × :data:`SECONDS_PER_STEP`, both
for ONE torch thread, then divided by the number of parallel workers. The constants were
measured on the reference machine (see ``docs/sweeps.md``); :func:`calibrate` measures them
on this one in about a second (``initlab sweep SPEC --dry-run --calibrate``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

import initlab.data as data
from initlab.config import RunConfig
from initlab.config_checks import check_architecture_settings
from initlab.errors import InitlabError
from initlab.models import build_model, check_factory_args
from initlab.sweep.footprint import (
    OPTIMIZER_STATE,
    NoEstimate,
    architecture,
    profile,
    run_bytes,
    user_data,
)
from initlab.sweep.grid import swept_values
from initlab.train.schedule import steps_per_epoch
from initlab.usercode.specs import is_user_spec

SECONDS_PER_GFLOP = 1 / 75
"""One torch thread trains the 784-300-100-10 and 784-1000³-10 MLPs at ≈ 75 GFLOP/s."""
SECONDS_PER_STEP = 3e-4
"""Fixed cost of an optimizer step (Python, kernel launches): ≈ 0.3 ms for small MLPs."""


@dataclass(frozen=True)
class Cost:
    """The estimated cost of one run."""

    model_epochs: int
    flops: float
    steps: int

    def seconds(self, per_gflop: float = SECONDS_PER_GFLOP, per_step: float = SECONDS_PER_STEP):
        return self.flops / 1e9 * per_gflop + self.steps * per_step


def split_sizes(config: RunConfig) -> tuple[int, int, int]:
    """``(n_train, n_val, n_test)`` of a config's data, from the dataset's documented sizes
    (the validation set is taken from the training pool; ``limit_train`` caps training);
    user data is loaded (:func:`~initlab.sweep.footprint.user_data`) and counted."""
    if is_user_spec(config.dataset):
        loaded = user_data(config)
        return loaded.num_train, loaded.num_val, loaded.num_test
    info = data.info(config.dataset)
    pool = info["num_train"] + info["num_val"]
    n_val = info["num_val"] if config.val_size is None else min(config.val_size, pool)
    n_train = pool - n_val
    if config.limit_train is not None:
        n_train = min(n_train, config.limit_train)
    return n_train, n_val, info["num_test"]


def forward_flops(config: RunConfig, read_data: bool = False) -> float | None:
    """FLOPs of one example's forward pass (2 × the multiply-adds of Linear/Conv layers;
    see :mod:`initlab.sweep.footprint`); ``None`` when the input shape is unknown."""
    macs = profile(config, read_data).macs
    return None if macs is None else 2.0 * macs


def check_buildable(configs: Iterable[RunConfig], read_data: bool = False) -> None:
    """Size every distinct architecture once (arithmetic, or the meta device: instant), so
    that a model that cannot exist for its dataset (a CNN on flat inputs...) or of absurd
    size fails before anything runs. User factories are checked when the sweep starts;
    built-in models on user data only with ``read_data`` (the data is loaded to size them);
    settings a model would ignore
    (:func:`initlab.config_checks.check_architecture_settings`) and a factory's arguments
    (its signature) and a built-in dataset's task are checked here, so a misspelt
    ``model_args`` key or ``task`` fails a dry run as it fails the sweep."""
    from initlab.data.registry import check_task

    seen, tasks = set(), set()
    for config in configs:
        if not is_user_spec(config.dataset) and (config.dataset, config.task) not in tasks:
            tasks.add((config.dataset, config.task))
            check_task(config.dataset, config.task)  # as loading the data would, unread
        arch = architecture(config)
        if arch in seen:
            continue
        seen.add(arch)
        check_architecture_settings(config)
        if is_user_spec(config.model):
            check_factory_args(config.model, config.model_args)
            continue
        try:
            profile(config, read_data)
        except NoEstimate:
            continue
        except InitlabError as exc:
            shape = "-".join(map(str, config.hidden)) if config.model == "mlp" else ""
            shown = f"{config.model} {shape}".strip()
            message = f"run {config.label} ({shown} on {config.dataset}): {exc}"
            raise InitlabError(message) from None


def run_cost(config: RunConfig, read_data: bool = False) -> Cost | None:
    """Model-epochs, FLOPs and optimizer steps of one run; ``None`` for a model that cannot
    be sized, and for user data unless ``read_data`` (its sizes are known once it is read:
    :func:`initlab.sweep.footprint.data_shape`)."""
    if is_user_spec(config.dataset) and not read_data:
        return None
    try:
        forward = forward_flops(config, read_data)
    except NoEstimate:
        return None
    if forward is None:
        return None
    n_train, n_val, n_test = split_sizes(config)
    flops = forward * (3 * n_train * config.epochs + n_val * config.epochs + n_test)
    steps = steps_per_epoch(n_train, config.batch_size) * config.epochs
    return Cost(config.epochs, flops, steps)


def cost_table(
    configs: Sequence[RunConfig],
    swept: Sequence[str],
    statuses: dict[str, str] | None = None,
    per_gflop: float = SECONDS_PER_GFLOP,
    per_step: float = SECONDS_PER_STEP,
) -> pd.DataFrame:
    """One row per run: ``key``, the swept settings, ``epochs``, ``gflop``, ``seconds``
    (one thread) and ``status`` (from ``statuses``, else ``pending``)."""
    rows = []
    for config in configs:
        cost, key = run_cost(config), config.key()
        rows.append(
            {
                "key": key,
                **swept_values(config, tuple(swept)),
                "epochs": config.epochs,
                "gflop": cost.flops / 1e9 if cost else math.nan,
                "seconds": cost.seconds(per_gflop, per_step) if cost else math.nan,
                "status": (statuses or {}).get(key, "pending"),
            }
        )
    return pd.DataFrame(rows)


def model_table(configs: Iterable[RunConfig]) -> pd.DataFrame:
    """One row per distinct model (architecture, batch size, optimizer, precision) of
    ``configs``: ``model``, ``params``, the MB of ``weights`` (weights + gradients +
    optimizer state, fp32), of ``activations`` (one batch), their sum ``memory`` and
    ``GFLOP/epoch`` (training plus validation, see :func:`run_cost`); ``note`` says why a
    size is missing (a user factory that cannot build on the meta device, user data)."""
    rows: dict[tuple, dict] = {}
    for config in configs:
        key = (architecture(config), config.batch_size, config.optimizer, config.precision)
        if key not in rows:
            rows[key] = _model_row(config)
    frame = pd.DataFrame(list(rows.values()))
    if "note" in frame and not frame["note"].fillna("").astype(bool).any():
        frame = frame.drop(columns="note")
    return frame


def _model_row(config: RunConfig) -> dict:
    row = {"model": model_name(config), "batch": config.batch_size, "optimizer": config.optimizer}
    try:
        size = profile(config)
    except NoEstimate as exc:
        return {**row, "note": str(exc)}
    total = run_bytes(config, size)
    weights = 4 * size.parameters * (2 + OPTIMIZER_STATE.get(config.optimizer, 2))
    cost = run_cost(config)
    return {
        **row,
        "params": size.parameters,
        "weights": weights / 1e6,
        "activations": math.nan if total is None else (total - weights) / 1e6,
        "memory": math.nan if total is None else total / 1e6,
        "GFLOP/epoch": math.nan if cost is None else cost.flops / 1e9 / config.epochs,
        "note": "" if cost is not None else "data sizes are known once the data is read",
    }


def model_name(config: RunConfig) -> str:
    """``mlp 784-300-100-10``-like: ``mlp 300-100``, ``cnn``, ``build(width=64)``."""
    if config.model == "mlp":
        return "mlp " + ("-".join(map(str, config.hidden)) or "linear")
    if config.model_args or ":" in config.model:
        args = ", ".join(f"{k}={v}" for k, v in sorted(config.model_args.items()))
        return f"{config.model.rpartition(':')[2]}({args})"
    return config.model


def sampled_totals(sample: Sequence[RunConfig], total: int) -> dict[str, float]:
    """Totals for ``total`` runs extrapolated from a uniform ``sample`` of them: each
    total = ``total`` × the sample's mean (runs that cannot be costed are left out of the
    mean). Keys: ``model_epochs``, ``gflop``, ``seconds`` (one thread), ``costed``."""
    costs = [c for c in map(run_cost, sample) if c is not None]
    if not costs:
        return {"model_epochs": math.nan, "gflop": math.nan, "seconds": math.nan, "costed": 0}
    scale = total / len(costs)
    return {
        "model_epochs": scale * sum(c.model_epochs for c in costs),
        "gflop": scale * sum(c.flops for c in costs) / 1e9,
        "seconds": scale * sum(c.seconds() for c in costs),
        "costed": len(costs),
    }


def calibrate(seconds: float = 0.5) -> tuple[float, float]:
    """Measure ``(seconds per GFLOP, seconds per step)`` on this machine with one thread:
    SGD steps of a 784-512-512-10 MLP (batch 256: compute-bound) and of a 64-16-10 MLP
    (batch 32: overhead-bound), each for about ``seconds``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        big = _step_time(784, (512, 512), 256, seconds)
        small = _step_time(64, (16,), 32, seconds)
    finally:
        torch.set_num_threads(threads)
    macs = 784 * 512 + 512 * 512 + 512 * 10
    gflop_per_step = 3 * 2 * macs * 256 / 1e9
    per_gflop = max(big - small, 1e-9) / gflop_per_step
    return per_gflop, small


def _step_time(inputs: int, hidden: tuple[int, ...], batch: int, budget: float) -> float:
    """Mean seconds of one SGD step of an MLP, after two warm-up steps."""
    model = build_model("mlp", (inputs,), 10, hidden=hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, inputs), torch.randint(0, 10, (batch,))
    steps, started = 0, 0.0
    while steps < 5 or time.perf_counter() - started < budget:
        if steps == 2:
            started = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return (time.perf_counter() - started) / (steps - 2)
