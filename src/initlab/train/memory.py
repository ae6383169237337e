"""How many models one stack holds: a memory bound, and a cache-friendly size below it.

**Memory bound.** One model with ``P`` parameters (and buffers), ``A`` activation elements
per example (the outputs of all its leaf modules, measured on two examples by
:func:`activations_per_example`), batch size ``B`` and ``N`` training examples costs

    parameters, gradient, optimizer state   4 * P * (2 + s)
        s = 0 (sgd), 1 (momentum: buffer), 2 (adam/adamw: m, v)
    training activations                    4 * B * A * 2   (kept for backward, and gradients)
    data order of one epoch                 8 * N           (the permutation)

bytes, and a stack holds at most ``budget // per_model`` models: ``DEFAULT_MEMORY_BUDGET``
(1 GiB) on the CPU, half the free memory on a CUDA device.

**Cache-friendly size** (CPU only). Below that bound a CPU stack is sized so that its
weights take about ``CACHE_BUDGET`` (16 MiB): every step streams all of them through the
forward product and the update, and every step's Python and autograd overhead is shared by
the stack. Measured with the one engine on the 2-core Intel Xeon (2026-12-02, 30 seed MLPs
of 1.07 MB, 20,000 images, one thread): stacks of 8 took 0.321 and 0.328 s per
model-epoch, of 15 0.273 and 0.270, of 30 0.279 and 0.257; as ``initlab compare`` runs (2
workers × 1 thread, 60 models, four rounds) stacks of 15 were the fastest in three (median
about 0.17 s against 0.19 for 8 and 0.21 for 31). The replaced hand-written engine had found
8 best (9 MiB) on an AMD Zen 5 with 32 MiB of L3. Never below ``MIN_CHUNK`` nor above
``MAX_CHUNK``.

    chunk = clip(min(memory bound, max(MIN_CHUNK, CACHE_BUDGET // (4 P))), 1, MAX_CHUNK)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

DEFAULT_MEMORY_BUDGET = 2**30
CACHE_BUDGET = 16 * 2**20
MIN_CHUNK = 4
MAX_CHUNK = 256
STATE_FACTOR = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}


def parameter_count(model: nn.Module) -> int:
    """Elements of all parameters and floating-point buffers of ``model``."""
    tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
    return sum(t.numel() for t in tensors)


@torch.no_grad()
def activations_per_example(model: nn.Module, x: Tensor) -> int:
    """Output elements of every leaf module per example, on the batch ``x`` (eval mode)."""
    total = [0]

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, Tensor):
            total[0] += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return math.ceil(total[0] / max(len(x), 1))


def model_bytes(params: int, activations: int, optimizer: str, batch: int, num_train: int) -> int:
    """Bytes one model occupies in a stack (formula in the module docstring)."""
    state = 4 * params * (2 + STATE_FACTOR.get(optimizer, 2))
    return state + 8 * batch * activations + 8 * num_train


def memory_budget(device: torch.device) -> int:
    """Bytes a stack may use: 1 GiB on the CPU, half the free memory of a CUDA device."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free // 2)
    return DEFAULT_MEMORY_BUDGET


def chunk_size(
    params: int,
    activations: int,
    optimizer: str,
    batch: int,
    num_train: int,
    device: torch.device,
    budget: int | None = None,
) -> int:
    """Models per stack: within the memory budget, and cache-friendly on the CPU."""
    per_model = model_bytes(params, activations, optimizer, batch, num_train)
    room = (budget if budget is not None else memory_budget(device)) // max(per_model, 1)
    if device.type != "cpu":
        return int(max(1, min(MAX_CHUNK, room)))
    cache = max(MIN_CHUNK, CACHE_BUDGET // max(4 * params, 1))
    return int(max(1, min(MAX_CHUNK, room, cache)))


def split_evenly(items: Sequence, size: int) -> list[list]:
    """``ceil(n / size)`` consecutive chunks whose sizes differ by at most one
    (15 items, size 7: 5 + 5 + 5, not 7 + 7 + 1 — a chunk of one is slow)."""
    count = -(-len(items) // size)
    base, extra = divmod(len(items), count)
    chunks, start = [], 0
    for k in range(count):
        step = base + (1 if k < extra else 0)
        chunks.append(list(items[start : start + step]))
        start += step
    return chunks
