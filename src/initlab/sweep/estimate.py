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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import torch
from torch import nn

from initlab import data
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.models import build_model
from initlab.sweep.grid import swept_values

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
    (the validation set is taken from the training pool; ``limit_train`` caps training)."""
    info = data.info(config.dataset)
    pool = info["num_train"] + info["num_val"]
    n_val = info["num_val"] if config.val_size is None else min(config.val_size, pool)
    n_train = pool - n_val
    if config.limit_train is not None:
        n_train = min(n_train, config.limit_train)
    return n_train, n_val, info["num_test"]


def forward_flops(config: RunConfig) -> float:
    """FLOPs of one example's forward pass (2 × the multiply-adds of Linear/Conv layers)."""
    arch = (config.dataset, config.model, config.hidden, config.activation, config.batch_norm)
    return _forward_flops(*arch, config.residual)


@lru_cache(maxsize=256)
def _forward_flops(
    dataset: str,
    architecture: str,
    hidden: tuple[int, ...],
    activation: str,
    batch_norm: bool,
    residual: bool,
) -> float:
    info = data.info(dataset)
    macs = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
        else:  # conv: every output position does in/groups × kernel multiply-adds
            per_position = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs += output[0].numel() * per_position

    with torch.device("meta"):
        model = build_model(
            architecture,
            info["input_shape"],
            info["num_classes"],
            hidden=hidden,
            activation=activation,
            batch_norm=batch_norm,
            residual=residual,
        ).eval()
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                module.register_forward_hook(count)
        model(torch.empty(1, *info["input_shape"]))
    return 2.0 * macs


def check_buildable(configs: Sequence[RunConfig]) -> None:
    """Build every distinct architecture once (on the meta device: instant) so that a model
    that cannot exist for its dataset (a CNN on flat inputs...) fails before anything runs."""
    for config in configs:
        try:
            forward_flops(config)
        except InitlabError as exc:
            arch = "-".join(map(str, config.hidden)) if config.model == "mlp" else ""
            shown = f"{config.model} {arch}".strip()
            message = f"run {config.label} ({shown} on {config.dataset}): {exc}"
            raise InitlabError(message) from None


def run_cost(config: RunConfig) -> Cost:
    """Model-epochs, FLOPs and optimizer steps of one run."""
    n_train, n_val, n_test = split_sizes(config)
    forward = forward_flops(config)
    flops = forward * (3 * n_train * config.epochs + n_val * config.epochs + n_test)
    steps = math.ceil(n_train / config.batch_size) * config.epochs
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
        cost = run_cost(config)
        rows.append(
            {
                "key": config.key(),
                **swept_values(config, tuple(swept)),
                "epochs": cost.model_epochs,
                "gflop": cost.flops / 1e9,
                "seconds": cost.seconds(per_gflop, per_step),
                "status": (statuses or {}).get(config.key(), "pending"),
            }
        )
    return pd.DataFrame(rows)


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
