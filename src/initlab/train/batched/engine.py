"""``train_group``: train many same-shaped MLP configs at once, one result per config.

The group is split into near-equal chunks of at most ``chunk_size`` models (default:
:func:`~initlab.train.batched.memory.default_chunk_size`: a memory bound and a
cache-friendly size); each chunk
trains all its models simultaneously with batched matrix products (:mod:`.chunk`). The
results are what :func:`initlab.train.run_config` returns for each config alone, up to
float32 rounding: same initial weights, same data order, same formulas.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.errors import InitlabError
from initlab.train.batched.chunk import GroupEpochCallback, run_chunk
from initlab.train.batched.grouping import check_group
from initlab.train.batched.memory import default_chunk_size
from initlab.train.batched.tracking import LayerStats
from initlab.train.result import FAILED, RunResult
from initlab.train.run import load_data


@dataclass
class GroupOutcome:
    """Results in config order, and each model's final state (``MLP`` state-dict names;
    a diverged model's state is the one it had when its loss became non-finite; ``None``
    for a failed chunk)."""

    results: list[RunResult]
    states: list[dict[str, Tensor] | None]


def split_evenly(configs: Sequence[RunConfig], chunk_size: int) -> list[list[RunConfig]]:
    """``ceil(n / chunk_size)`` consecutive chunks whose sizes differ by at most one
    (15 configs, chunk_size 7: 5 + 5 + 5, not 7 + 7 + 1 — a chunk of one is slow)."""
    count = -(-len(configs) // chunk_size)
    base, extra = divmod(len(configs), count)
    chunks, start = [], 0
    for k in range(count):
        size = base + (1 if k < extra else 0)
        chunks.append(list(configs[start : start + size]))
        start += size
    return chunks


def _failed(configs: Sequence[RunConfig], exc: Exception) -> list[RunResult]:
    tail = traceback.format_exc(limit=3).strip().splitlines()[-1]
    message = f"{type(exc).__name__}: {tail}"
    return [RunResult(config=c, status=FAILED, message=message) for c in configs]


def train_group_states(
    configs: Sequence[RunConfig],
    data: Dataset | None = None,
    *,
    on_epoch: GroupEpochCallback | None = None,
    chunk_size: int | None = None,
    stats: LayerStats | None = None,
) -> GroupOutcome:
    """:func:`train_group`, also returning every model's final parameters (which all stay
    in memory: for large groups prefer :func:`train_group`, which keeps none).

    ``stats(layer, m)``: the per-layer statistics function used when tracking is on
    (default: the probe's :func:`~initlab.probe.metrics.layer_metrics`, see :mod:`.tracking`).
    """
    return _train(configs, data, on_epoch, chunk_size, stats, keep_states=True)


def _train(
    configs: Sequence[RunConfig],
    data: Dataset | None,
    on_epoch: GroupEpochCallback | None,
    chunk_size: int | None,
    stats: LayerStats | None,
    keep_states: bool,
) -> GroupOutcome:
    """Train ``configs`` chunk after chunk; a chunk's tensors are freed before the next."""
    check_group(configs)
    data = data if data is not None else load_data(configs[0])
    if chunk_size is None:
        chunk_size = default_chunk_size(configs, data.input_shape, data.num_classes, data.num_train)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InitlabError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    results: list[RunResult] = []
    states: list[dict[str, Tensor] | None] = []
    for chunk in split_evenly(configs, chunk_size):
        try:
            run = run_chunk(chunk, data, on_epoch, stats)
        except InitlabError:
            raise
        except Exception as exc:  # like run_config: a failing run must not end the group
            results.extend(_failed(chunk, exc))
            states.extend([None] * len(chunk))
            continue
        results.extend(run.results)
        states.extend(run.states if keep_states else [None] * len(chunk))
        del run
    return GroupOutcome(results, states)


def train_group(
    configs: Sequence[RunConfig],
    data: Dataset | None = None,
    *,
    on_epoch: GroupEpochCallback | None = None,
    chunk_size: int | None = None,
) -> list[RunResult]:
    """Train every config of one batchable group at once; one :class:`RunResult` each, in order.

    ``configs`` must share :func:`~initlab.train.batched.group_key` (use
    :func:`~initlab.train.batched.group_configs` to split a mixed list; ``None``-key configs
    such as the CNN go to ``run_config``). ``data`` is the dataset of the group (default:
    loaded from the first config). ``on_epoch(config, record)`` is called after each epoch of
    each model, in config order within a chunk, chunk after chunk. ``chunk_size`` bounds the
    models trained simultaneously (default: a memory bound and a cache-friendly size, see
    :mod:`~initlab.train.batched.memory`; the group is split into chunks of near-equal
    size); it never changes the numbers.

    Each result equals ``run_config(config, data)``'s up to float32 rounding: the same
    ``epochs`` records (``seconds`` and ``train_seconds`` are the model's fair share of the
    chunk's wall time: time is split equally among the models training at each moment), test
    metrics, ``status`` (``final_status``; ``diverged`` with the single engine's message for a
    model whose loss became NaN/inf — it stops there, the others go on) and, when tracking is
    on and the probe is available, ``layer_stats``.
    """
    return _train(configs, data, on_epoch, chunk_size, None, keep_states=False).results
