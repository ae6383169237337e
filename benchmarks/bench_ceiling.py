"""How fast a stack of MLPs could train if nothing but its matrix products cost time.

One training step of ``M`` MLPs (widths ``dims``, batch ``B``) in the engine's layouts
(``initlab.train.layers``: weights stored ``[M, in, out]``) is, per layer ``l``,

    forward          y_l = x_l W_l + b_l                      (one ``baddbmm``)
    input gradient   dx_l = g_l W_l^T        (not for layer 0) (one ``bmm``)
    fused SGD        W_l <- W_l - lr x_l^T g_l                 (one ``baddbmm_``)

and nothing else: no activation, loss, data gathering, autograd or Python. Timing exactly
these products on random tensors, in ``workers`` single-thread processes at once (as
``initlab compare`` runs on a multi-core CPU, so the processes share the caches and memory
bandwidth as they do in training), gives a bound no engine built on these kernels can beat:
``seconds_per_model_epoch`` over ``examples`` training examples. A goal such as "3x the
plain loop" is reachable on a CPU only where ``plain / bound`` exceeds it.

    python benchmarks/bench_ceiling.py [--models 15] [--workers 2]
"""

from __future__ import annotations

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before torch, as the initlab command does (initlab.mkl_dispatch)

import argparse
import itertools
import time

import machine
import torch

SEED_MLP = (784, 300, 100, 10)


def product_step_seconds(models: int, dims=SEED_MLP, batch: int = 32, rounds: int = 5) -> float:
    """Best-of-``rounds`` seconds of one step's matrix products (module docstring), one
    thread, after a warm-up."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    pairs = list(itertools.pairwise(dims))
    xs = [torch.randn(models, batch, i, generator=gen) for i, _ in pairs]
    ws = [torch.randn(models, i, o, generator=gen) * i**-0.5 for i, o in pairs]
    bs = [torch.zeros(models, 1, o) for _, o in pairs]
    gs = [torch.randn(models, batch, o, generator=gen) for _, o in pairs]

    def step() -> None:
        for x, w, b in zip(xs, ws, bs, strict=True):
            torch.baddbmm(b, x, w)
        for layer, (x, w, g) in enumerate(zip(xs, ws, gs, strict=True)):
            if layer:
                torch.bmm(g, w.transpose(1, 2))
            w.baddbmm_(x.transpose(1, 2), g, alpha=-1e-6)  # tiny steps: no overflow

    for _ in range(20):
        step()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(50):
            step()
        best = min(best, (time.perf_counter() - start) / 50)
    return best


def _worker(args: tuple) -> float:
    models, dims = args
    product_step_seconds(models, dims, rounds=1)  # warm-up
    machine.all_ready()
    return product_step_seconds(models, dims)


def seconds_per_model_epoch(
    models: int = 15, workers: int = 2, examples: int = 20_000, dims=SEED_MLP, batch: int = 32
) -> float:
    """The bound: ``workers`` processes, each stepping its own stack of ``models`` at once;
    the slowest one's step time, times the steps of an epoch, over all their models."""
    steps = machine.at_once(_worker, [(models, tuple(dims))] * workers)
    return max(steps) * (examples / batch) / (models * workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=15, help="models per stack")
    parser.add_argument("--workers", type=int, default=2, help="single-thread processes")
    parser.add_argument("--examples", type=int, default=20_000, help="training examples")
    args = parser.parse_args()
    bound = seconds_per_model_epoch(args.models, args.workers, args.examples)
    print(
        f"seed MLP, {args.models} models per stack, {args.workers} workers x 1 thread: "
        f"matrix products alone {bound:.3f} s per model-epoch ({args.examples} examples)"
    )


if __name__ == "__main__":
    main()
