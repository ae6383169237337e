"""How many models one chunk holds: a memory bound, and a cache-friendly size below it.

**Memory bound.** For an MLP with widths ``w_0 (input), w_1..w_L (hidden), C (classes)``,
batch size ``B`` and ``N`` training examples, one model costs (float32 = 4 bytes, int64 = 8)

    parameters + optimizer state   4 * P * (1 + s)
        P = sum_l (w_{l-1} + 1) w_l  (+ 4 w_l per hidden layer with batch norm)
        s = 1 (sgd: a gradient), 2 (momentum: buffer + gradient), 3 (adam/adamw: m, v, gradient)
    training activations           4 * B * (w_0 + 6 * sum(hidden) + 3 C)
        (the gathered input; per hidden unit z, u, a, mask, output and gradient; per class
        the logits, softmax and gradient)
    data order of one epoch        8 * N   (the permutation)

and a chunk holds at most ``(budget - EVAL_ACTIVATION_BUDGET) // per_model`` models
(evaluation has its own fixed budget, :mod:`.evaluate`), so a group of any size trains in
bounded memory. The seed protocol (784-300-100-10, SGD, batch 32, 55,000 images) costs about
3 MB per model: ~250 models fit the default 1 GiB.

**Cache-friendly size.** Below that bound the chunk is sized so that its stacked weights
take about ``CACHE_BUDGET`` (9 MiB; 8 seed MLPs of 1.07 MB): every step streams all of them
through the forward product and the fused update. Measured on this machine (2 cores,
32 MiB L3 shared with other tenants), 15 seed MLPs trained one epoch (with validation) in
0.471 s per model-epoch as 8 + 7, 0.478 s as 4 + 4 + 4 + 3 and 0.519 s as one chunk of 15
(best per chunk of 4 interleaved rounds); on 50 fixed minibatches (cache-warm data) the step
alone costs 0.39-0.40 s per model-epoch at 6-10 models against 0.43-0.47 s at 16-64. With
MKL's AVX-512 kernels (:mod:`initlab.mkl_dispatch`) 8 is still best: 15 models in chunks of
4, 5, 8 and 15 took 0.319, 0.299, 0.263 and 0.285 s per model-epoch. The
cache-friendly size never goes below ``MIN_CHUNK`` (the Python overhead of a step is shared
by the models of a chunk) nor above ``MAX_CHUNK``.

    chunk_size = clip(min(memory bound, max(MIN_CHUNK, CACHE_BUDGET // (4 * P))), 1, MAX_CHUNK)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from initlab.config import RunConfig
from initlab.train.batched.evaluate import EVAL_ACTIVATION_BUDGET

DEFAULT_MEMORY_BUDGET = 2**30
CACHE_BUDGET = 9 * 2**20
MIN_CHUNK = 4
MAX_CHUNK = 256
STATE_FACTOR = {"sgd": 1, "momentum": 2, "adam": 3, "adamw": 3}


def parameter_count(config: RunConfig, input_size: int, num_classes: int) -> int:
    """Trainable parameters of ``config``'s MLP (plus batch-norm running statistics)."""
    widths = (input_size, *config.hidden, num_classes)
    count = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    if config.batch_norm:
        count += 4 * sum(config.hidden)
    return count


def model_bytes(config: RunConfig, input_size: int, num_classes: int, num_train: int) -> int:
    """Bytes one model of ``config`` occupies in a chunk (formula in the module docstring)."""
    params = 4 * parameter_count(config, input_size, num_classes)
    state = params * (1 + STATE_FACTOR.get(config.optimizer, 3))
    acts = 4 * config.batch_size * (input_size + 6 * sum(config.hidden) + 3 * num_classes)
    return state + acts + 8 * num_train


def default_chunk_size(
    configs: Sequence[RunConfig],
    input_shape: Sequence[int],
    num_classes: int,
    num_train: int,
    budget: int = DEFAULT_MEMORY_BUDGET,
) -> int:
    """Models per chunk: within ``budget`` bytes, and cache-friendly (module docstring)."""
    input_size = math.prod(input_shape)
    per_model = max(model_bytes(c, input_size, num_classes, num_train) for c in configs)
    room = max(budget - EVAL_ACTIVATION_BUDGET, per_model)
    weights = max(4 * parameter_count(c, input_size, num_classes) for c in configs)
    cache = max(MIN_CHUNK, CACHE_BUDGET // weights)
    return max(1, min(MAX_CHUNK, room // per_model, cache))
