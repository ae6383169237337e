"""Per-layer statistics in the batched engine: the single engine's probe, without hooks.

Forward hooks cannot see inside a batched computation, so the batched forward keeps every
intermediate itself (:class:`~initlab.train.batched.network.LayerTrace`) and a probe pass
reproduces what :class:`initlab.probe.tracking.Tracker` measures for one model:

- the probe batch is the first ``PROBE_SIZE`` (256) training examples, shared by all models;
- train mode: batch norm normalizes with the probe batch's own statistics and the running
  statistics are left untouched; dropout masks come from a generator seeded with
  ``PROBE_SEED`` — the masks the hook-based probe draws, identical for every model;
- the objective is each model's mean cross-entropy on the probe batch; gradients are
  collected, no parameter moves;
- what a layer's tensors are follows :mod:`initlab.probe.hooks`: for a hidden block with an
  activation module, ``pre`` = the activation's input u (after batch norm), ``post`` = phi(u)
  (before dropout); with the ``linear`` activation (``nn.Identity``, not an activation module)
  ``pre`` = the linear output z and ``post`` = the block output (the next layer's input), the
  activation name inferred as the hook probe does; the output layer has ``pre`` = logits and
  no ``post``.

The statistics of each model come from a :data:`LayerStats` function (default: the probe's
pure :func:`initlab.probe.metrics.layer_metrics`), on the same schedule as the single engine:
step 0, then after every epoch (``track="epoch"``) or every N optimizer steps; rows are
``{"epoch", "step", "layer", "metric", "value"}`` in ``RunResult.layer_stats``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from initlab.data import Dataset
from initlab.probe.hooks import infer_activation
from initlab.probe.metrics import layer_metrics
from initlab.probe.tracking import PROBE_SEED, PROBE_SIZE
from initlab.train.batched import functional as fn
from initlab.train.batched.network import Trace, backward, forward
from initlab.train.batched.stack import StackedMLP


@dataclass
class StackedLayerTensors:
    """One layer's tensors for all models of a chunk (model axis first), detached.

    ``pre``/``post``/``pre_grad``/``post_grad``: ``[M, R, units]`` (``post`` and
    ``post_grad`` are ``None`` for the output layer); ``weight``/``weight_grad``:
    ``[M, out, in]``; ``bias``: ``[M, out]``; ``activation``: the registry name, or ``None``
    when the probe would infer it per model (the ``linear`` activation) or there is none.
    """

    name: str
    pre: Tensor
    post: Tensor | None
    activation: str | None
    weight: Tensor
    bias: Tensor
    weight_grad: Tensor
    pre_grad: Tensor
    post_grad: Tensor | None
    infer: bool = False
    aliased: bool = False

    def activation_of(self, m: int) -> str | None:
        """Model ``m``'s activation name as the hook probe reports it."""
        if self.infer and self.aliased:
            return "linear"  # the probe sees one tensor pass from layer to layer untouched
        if self.infer and self.post is not None:
            return infer_activation(self.pre[m], self.post[m])
        return self.activation


LayerStats = Callable[[StackedLayerTensors, int], dict[str, float]]
"""``stats(layer, m) -> {metric: value}`` for model ``m`` (slot in the chunk) of one layer."""


def probe_metrics(layer: StackedLayerTensors, m: int) -> dict[str, float]:
    """:func:`initlab.probe.metrics.layer_metrics` of model ``m``: the single engine's rows."""
    post = None if layer.post is None else layer.post[m]
    post_grad = None if layer.post_grad is None else layer.post_grad[m]
    return layer_metrics(
        layer.pre[m],
        post,
        layer.activation_of(m),
        layer.weight[m],
        layer.weight_grad[m],
        post_grad,
        pre_grad=layer.pre_grad[m],
        bias=layer.bias[m],
        unit_dim=-1,
    )


class _Collector:
    """A gradient sink that stores gradients (in the parameters' layout) instead of applying
    them."""

    def __init__(self) -> None:
        self.grads: dict[int, Tensor] = {}

    def linear(self, weight: int, bias: int, dz: Tensor, inp: Tensor) -> None:
        self.grads[weight] = torch.matmul(inp.transpose(-2, -1), dz)
        self.grads[bias] = dz.sum(1, keepdim=True)

    def grad(self, index: int, g: Tensor) -> None:
        self.grads[index] = g


def probe_masks(net: StackedMLP, rows: int, seed: int = PROBE_SEED) -> list[Tensor | None] | None:
    """The probe's dropout multipliers ``[rows, width]`` per hidden block (shared by all
    models): block after block from one generator seeded ``seed``, as ``nn.Dropout`` draws
    them under the hook probe's seeded RNG."""
    if net.dropout == 0:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    keep = 1 - net.dropout
    return [
        torch.empty(rows, w).bernoulli_(keep, generator=gen).div_(keep) for w in net.widths[1:-1]
    ]


@torch.no_grad()
def probe_tensors(net: StackedMLP, x: Tensor, y: Tensor) -> list[StackedLayerTensors]:
    """Forward and backward of every model on the shared probe batch ``(x [R, in], y [R])``
    in train mode, without changing any parameter or running statistic."""
    probe_net = StackedMLP(
        net.params,
        [b.clone() for b in net.buffers],  # batch norm's running statistics stay as they are
        net.layers,
        net.activation,
        net.dropout,
        net.steps,
        net.widths,
    )
    trace = forward(probe_net, x, train=True, masks=probe_masks(net, x.shape[0]), keep=True)
    _, dlogits = fn.cross_entropy(trace.logits, y.unsqueeze(0).expand(net.size, -1))
    sink = _Collector()
    backward(probe_net, trace, dlogits, sink, record=True)
    return [
        _layer(net, trace, k, sink.grads[spec.weight].transpose(1, 2))
        for k, spec in enumerate(net.layers)
    ]


def _layer(net: StackedMLP, trace: Trace, k: int, weight_grad: Tensor) -> StackedLayerTensors:
    """Layer k's tensors as the hook probe defines them (see the module docstring)."""
    spec, grads = net.layers[k], trace.grads[k]
    weight = net.params[spec.weight].transpose(1, 2)  # [M, out, in], as nn.Linear holds it
    bias = net.params[spec.bias].squeeze(1)
    if not spec.hidden:
        return StackedLayerTensors(
            spec.name, trace.logits, None, None, weight, bias, weight_grad, grads["pre"], None
        )
    t = trace.layers[k]
    if net.activation != "linear":
        return StackedLayerTensors(
            spec.name, t.act_in, t.act, net.activation, weight, bias, weight_grad,
            grads["act_in"], grads["act"],
        )  # fmt: skip
    aliased = not (spec.residual or spec.gamma is not None or net.dropout)
    return StackedLayerTensors(
        spec.name, t.pre, t.out, None, weight, bias, weight_grad, grads["pre"], grads["out"],
        infer=True, aliased=aliased,
    )  # fmt: skip


class BatchedTracker:
    """Records per-layer statistics of a chunk's models on the fixed probe batch.

    ``every``: ``"epoch"`` or N (optimizer steps); ``stats``: the per-model statistics
    function (default :func:`probe_metrics`). :meth:`rows` gives each model's tidy rows.
    """

    def __init__(self, every: str | int, data: Dataset, stats: LayerStats | None = None) -> None:
        self.every = every
        self.per_step = every if isinstance(every, int) and not isinstance(every, bool) else 0
        size = min(PROBE_SIZE, data.num_train)
        self.x = data.x_train[:size].reshape(size, -1)
        self.y = data.y_train[:size]
        self.stats = stats or probe_metrics

    def rows(self, net: StackedMLP, epoch: int, step: int) -> list[list[dict[str, Any]]]:
        """For each model of ``net`` (in slot order), its tidy rows at this moment."""
        layers = probe_tensors(net, self.x, self.y)
        per_model: list[list[dict[str, Any]]] = [[] for _ in range(net.size)]
        for m, rows in enumerate(per_model):
            for layer in layers:
                for metric, value in self.stats(layer, m).items():
                    row = {"epoch": epoch, "step": step, "layer": layer.name, "metric": metric}
                    rows.append({**row, "value": float(value)})
        return per_model
