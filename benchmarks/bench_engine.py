"""Throughput of many models: a plain PyTorch loop vs initlab's single and batched engines.

The protocol is `initlab compare`'s default: Fashion-MNIST (55,000 training images), a
784-300-100-10 ReLU MLP, SGD lr 0.01, batch 32, validation (5,000 images) after every epoch.
Contenders, on the same data in the same process:

(a) a plain loop as a user writes it (``DataLoader`` over a ``TensorDataset``, one model at a
    time) — sequential, so its throughput is the same for any number of models: it is
    measured on one model. On an AMD CPU, ``mkl_dispatch.enable()`` (first thing, as the
    ``initlab`` command does) lets MKL use its AVX-512 kernels in this process, so (a) gets
    them too: the ratios compare engines on the same BLAS. (a0) is the same loop in a fresh
    Python that leaves MKL alone (``INITLAB_MKL_DISPATCH=off``): what a user's loop gets;
(b) initlab's single engine (``run_config``), likewise sequential (``train_seconds``);
(c) the batched engine (``train_group``) on groups of 1, 4, 15 and 60 models, with its
    default chunking (at most 8 seed MLPs train simultaneously: 15 = 8 + 7, 60 = 8 chunks
    of 7-8; see ``initlab.train.batched.memory``); time = the models'
    ``train_seconds`` summed (training + validation; building the models and the final test
    evaluation, which (a) does not do, are excluded — the wall time including them is
    printed too). The chunks are trained one ``train_group`` call each, exactly as
    ``train_group`` does with the whole group, so that the best of the rounds is kept chunk
    by chunk: a 35-second group is otherwise rarely spared by other jobs on a shared machine.

Throughput is model-epochs per second; a model-epoch is one pass over the training set plus
one validation pass. "% peak" is the useful FLOP rate (6 P N_train + 2 P N_val per model-epoch,
P = 266,200 weights) over the sgemm peak measured here with a large ``torch.mm``. Timings are
interleaved (a, b, c for every size, then again) and the best of ``--repeats`` rounds is kept
(the short one-model runs (a) and (b) run three times per round): the machine is shared and
noisy, and a run disturbed by another job only ever looks slower. ``--limit-train N`` times
a fraction of an epoch (the first N training images; validation stays 5,000 images) when
full epochs take too long; ``--wait-idle`` waits for idle CPUs before each timing.

    python benchmarks/bench_engine.py [--models 1,4,15,60] [--repeats 3] [--threads 2]
                                      [--limit-train N] [--wait-idle]
"""

from __future__ import annotations

from initlab import mkl_dispatch  # isort: skip

mkl_dispatch.enable()  # before torch, as the initlab command does (initlab.mkl_dispatch)

import argparse
import itertools
import math
import os
import subprocess
import sys
import time

import torch
from plain import plain_dataloader

from initlab.config import RunConfig
from initlab.data import Dataset, load
from initlab.train.batched import default_chunk_size, train_group
from initlab.train.batched.engine import split_evenly
from initlab.train.run import run_config

WIDTHS = (784, 300, 100, 10)
WEIGHTS = sum(a * b for a, b in itertools.pairwise(WIDTHS))


def cpu_idle_fraction(seconds: float = 1.0) -> float:
    """Fraction of CPU time idle over ``seconds`` (Linux ``/proc/stat``; 1.0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            a = [int(v) for v in f.readline().split()[1:9]]
        time.sleep(seconds)
        with open("/proc/stat") as f:
            b = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 1.0
    delta = [y - x for x, y in zip(a, b, strict=True)]
    return (delta[3] + delta[4]) / max(sum(delta), 1)


def wait_idle(enabled: bool, threshold: float = 0.9, patience: float = 300.0) -> None:
    """On a shared machine: wait (at most ``patience`` s) until the CPUs are mostly idle."""
    deadline = time.monotonic() + patience
    while enabled and time.monotonic() < deadline and cpu_idle_fraction() < threshold:
        pass


def sgemm_peak(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` ``torch.mm`` of two n x n float32 matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def onednn_peak(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of oneDNN's fp32 matmul (AVX-512 where MKL's sgemm may use AVX2), or NaN."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a, b = torch.randn(n, n), torch.randn(n, n)
        op(a, b, None, "none", [], "")
    except (AttributeError, RuntimeError):
        return math.nan
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        op(a, b, None, "none", [], "")
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def plain_loop(data: Dataset) -> float:
    """Seconds for one model-epoch of the tutorial loop (DataLoader, shuffle, validate)."""
    return plain_dataloader(data, 1)


BASELINE_SCRIPT = """
import sys, torch
sys.path.insert(0, {here!r})
from plain import plain_dataloader
from initlab.data import load
torch.set_num_threads({threads})
data = load("fashion-mnist", limit_train={limit})
print(min(plain_dataloader(data, 1) for _ in range({runs})))
"""


def plain_loop_default_mkl(threads: int, limit: int | None, runs: int) -> float:
    """Best of ``runs`` epochs of (a) in a fresh Python with MKL's default kernel choice."""
    script = BASELINE_SCRIPT.format(
        here=os.path.dirname(os.path.abspath(__file__)), threads=threads, limit=limit, runs=runs
    )
    env = {**os.environ, mkl_dispatch.ENV_VAR: "off"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def config(seed: int, limit: int | None) -> RunConfig:
    return RunConfig(init="he_normal", epochs=1, seed=seed, limit_train=limit, track="off")


def single_engine(data: Dataset, limit: int | None) -> float:
    """Seconds for one model-epoch of ``run_config`` (its ``train_seconds``)."""
    return run_config(config(0, limit), data).train_seconds


def batched_engine(data: Dataset, models: int, limit: int | None) -> list[tuple[float, float]]:
    """Per chunk: (summed train_seconds, wall time) of ``models`` models, 1 epoch.

    The chunks are those ``train_group`` makes (``split_evenly`` with the default chunk
    size), trained by one ``train_group`` call each — what ``train_group`` does with the
    whole group — so that the best of several rounds can be kept chunk by chunk.
    """
    configs = [config(s, limit) for s in range(models)]
    size = default_chunk_size(configs, data.input_shape, data.num_classes, data.num_train)
    times = []
    for chunk in split_evenly(configs, size):
        start = time.perf_counter()
        results = train_group(chunk, data)
        wall = time.perf_counter() - start
        assert all(r.status == "ok" for r in results), [r.message for r in results]
        times.append((sum(r.train_seconds for r in results), wall))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1,4,15,60")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument(
        "--wait-idle", action="store_true", help="before each timing, wait for idle CPUs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(m) for m in args.models.split(",")]
    data = load("fashion-mnist", limit_train=args.limit_train)
    peak = plain = plain_default = single = dnn = math.inf
    batched: dict[int, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):  # interleaved, best of N: robust to machine noise
        wait_idle(args.wait_idle)
        peak = min(peak, 1 / sgemm_peak())
        dnn = min(dnn, 1 / onednn_peak())
        wait_idle(args.wait_idle)
        baseline = plain_loop_default_mkl(args.threads, args.limit_train, 3)
        plain_default = min(plain_default, baseline)
        for _ in range(3):  # the one-model runs are short: thrice per round
            wait_idle(args.wait_idle)
            plain = min(plain, plain_loop(data))
            wait_idle(args.wait_idle)
            single = min(single, single_engine(data, args.limit_train))
        for m in sizes:
            wait_idle(args.wait_idle)
            chunks = batched_engine(data, m, args.limit_train)
            batched[m] = [min(a, b) for a, b in zip(batched.get(m, chunks), chunks, strict=True)]
    report(data, 1 / peak, (plain, plain_default), single, batched, args)
    print(f"(oneDNN fp32 matmul peak on this machine: {1 / dnn:.0f} GFLOP/s)")


def report(data, peak, plains, single, batched, args) -> None:
    """Print the table: model-epochs/s, ratio to the plain loop, fraction of sgemm peak."""
    plain, plain_default = plains
    print(f"MKL kernel choice (initlab.mkl_dispatch): {mkl_dispatch.status()}")
    flop = 6 * WEIGHTS * data.num_train + 2 * WEIGHTS * data.num_val
    print(
        f"threads={args.threads} repeats={args.repeats} (best of) train images="
        f"{data.num_train} val images={data.num_val} sgemm peak (torch.mm 4096)={peak:.0f} "
        f"GFLOP/s; one model-epoch = {flop / 1e9:.1f} GFLOP (6PN + 2PN_val)"
    )
    head = f"{'contender':28s} {'models':>6s} {'model-epochs/s':>14s} {'s/model-epoch':>13s}"
    print(f"{head} {'vs (a)':>8s} {'vs (a0)':>8s} {'% peak':>6s} {'wall s':>7s}")

    def row(name: str, m: int, seconds: float, wall: float) -> None:
        rate = 1 / seconds
        pct = 100 * flop * rate / 1e9 / peak
        print(
            f"{name:28s} {m:6d} {rate:14.2f} {seconds:13.3f} "
            f"{plain / seconds:7.2f}x {plain_default / seconds:7.2f}x {pct:5.0f}% {wall:7.2f}"
        )

    row("(a0) plain loop, default MKL", 1, plain_default, plain_default)
    row("(a) plain loop (DataLoader)", 1, plain, plain)
    row("(b) initlab single engine", 1, single, single)
    for m, chunks in batched.items():
        train, wall = (sum(column) for column in zip(*chunks, strict=True))
        row("(c) initlab batched engine", m, train / m, wall)


if __name__ == "__main__":
    main()
