"""Time per model-epoch: initlab's single-model trainer vs. plain PyTorch loops, same run.

The protocol is `initlab compare`'s default: Fashion-MNIST (55,000 training images), a
784-300-100-10 ReLU MLP, SGD lr 0.01, batch 32, validation after every epoch. Two plain loops
are timed beside initlab: the one a user writes from the PyTorch tutorial (``DataLoader`` over
a ``TensorDataset``, shuffle=True) and a careful one (index the in-memory tensors directly).
initlab is timed as its single-model engine on one run and as ``initlab.compare`` on its
default 21 runs (7 inits × 3 seeds), which trains same-shaped models together.

    python benchmarks/bench_compare.py [--epochs 2] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before torch, as the initlab command does (initlab.mkl_dispatch)

import argparse
import time

import machine
import torch
from plain import plain_dataloader, plain_indexed

from initlab.compare import DEFAULT_INITS, compare
from initlab.config import RunConfig
from initlab.data import load
from initlab.train.run import run_config


def initlab_single(data, epochs: int) -> float:
    """The single-model engine on one run (per-layer tracking on, as by default)."""
    config = RunConfig(init="he_normal", epochs=epochs, seed=0)
    result = run_config(config, data)
    return result.train_seconds / epochs


def initlab_compare(data, epochs: int) -> float:
    """`initlab compare` as a user runs it: 7 inits × 3 seeds, default engine (batched),
    tracking on; wall time of the whole call (including the results store) per model-epoch."""
    start = time.perf_counter()
    results = compare(DEFAULT_INITS, seeds=3, epochs=epochs)
    return (time.perf_counter() - start) / (len(results.runs) * epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine.header(args.threads), flush=True)
    data = load("fashion-mnist")
    contenders = {
        "plain loop (DataLoader)": plain_dataloader,
        "plain loop (indexed tensors)": plain_indexed,
        "initlab single-model engine": initlab_single,
        "initlab compare (21 models)": initlab_compare,
    }
    best = {name: float("inf") for name in contenders}
    for _ in range(args.repeats):  # interleaved, best of N: robust to machine noise
        for name, fn in contenders.items():
            best[name] = min(best[name], fn(data, args.epochs))
    reference = best["plain loop (DataLoader)"]
    print(f"threads={args.threads} epochs={args.epochs} repeats={args.repeats} (best of repeats)")
    print(f"{'contender':32s} {'s/model-epoch':>14s} {'vs DataLoader loop':>19s}")
    for name, seconds in best.items():
        print(f"{name:32s} {seconds:14.3f} {reference / seconds:18.2f}x")


if __name__ == "__main__":
    main()
