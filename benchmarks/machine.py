"""What every benchmark prints about the machine it ran on: the CPU, the kernels, the load.

Timings mean little without the CPU they ran on (Intel AVX-512 and AMD AVX2 machines differ
by up to 2x here), the BLAS and ATen kernels torch picked (``initlab.mkl_dispatch``;
``ATEN_CPU_CAPABILITY``) and whether the machine was otherwise idle.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable

import torch

from initlab import mkl_dispatch
from initlab.sweep.engine import cpu_model


def kernels() -> str:
    """MKL's code path, ATen's vector ISA and whether initlab's MKL override is on."""
    aten = torch.backends.cpu.get_cpu_capability()
    return f"MKL {mkl_dispatch.mkl_code_path()}, ATen {aten}; MKL override {mkl_dispatch.status()}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("unknown" where the OS has none)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def header(threads: int, device: torch.device | None = None) -> str:
    """The lines a benchmark prints first: CPU, torch and threads, kernels, load; and the
    GPU (name, memory, CUDA version) when ``device`` is one."""
    lines = (
        f"CPU: {cpu_model()}; torch {torch.__version__}, {threads} threads\n"
        f"kernels: {kernels()}\nload average at the start: {load_average()}"
    )
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines += (
            f"\nGPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs; CUDA {torch.version.cuda}"
        )
    return lines


def matmul_peak(
    clock: Callable[[], float] = time.perf_counter,
    n: int = 2048,
    device: torch.device | str = "cpu",
) -> float:
    """FLOP/s of the best of five ``torch.mm`` of two n x n float32 matrices on ``device``,
    by ``clock`` (one that waits for the GPU, on a GPU)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(5):
        start = clock()
        torch.mm(a, b, out=out)
        best = min(best, clock() - start)
    return 2 * n**3 / best


_BARRIER = None


def _init_worker(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


def all_ready() -> None:
    """In a worker of :func:`at_once`: wait until every worker has reached this call (after
    its warm-up), so the timed parts run at the same time."""
    _BARRIER.wait()


def at_once(worker: Callable, jobs: list) -> list:
    """``[worker(job) for job in jobs]``, each in its own spawned process, all at once (one
    process per job; each calls :func:`all_ready` before the part it times)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(jobs))
    with ctx.Pool(len(jobs), initializer=_init_worker, initargs=(barrier,)) as pool:
        return pool.map(worker, jobs)
