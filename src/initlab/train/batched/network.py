"""Forward and hand-written backward of M stacked MLPs with batched matrix products.

Shapes: input ``[M, B, in]`` (or ``[R, in]`` shared by every model), activations
``[M, B, width]``, weights ``[M, in, out]`` (:mod:`.stack`). For a hidden block of model m

    z = h W + b                        (baddbmm)
    u = BN(z) (batch statistics)  or z
    a = phi(u)
    o = a * mask (inverted dropout)  or a
    h' = h + o  (residual, when in == out)  or o

and the output layer is ``logits = h W + b``. The backward takes ``dL/dlogits`` and walks
the layers in reverse: ``dz = (dh' * mask) * phi'(u)`` (through BN when present), weight
gradient ``h^T dz`` ``[M, in, out]``, bias gradient ``sum_i dz``, input gradient ``dz W^T``
(plus ``dh'`` through the skip). The weight gradient is handed to a :class:`GradSink` (the
optimizer) as its two factors, so plain SGD can fuse it into the update (``W.baddbmm_``)
without ever materializing it. Every intermediate of a layer is kept in a :class:`LayerTrace`
so per-layer statistics can be computed without forward hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from initlab.train.batched import functional as fn
from initlab.train.batched.stack import LayerSpec, StackedMLP


class GradSink(Protocol):
    """Receives the gradients of one backward pass (usually: the stacked optimizer)."""

    def linear(self, weight: int, bias: int, dz: Tensor, inp: Tensor) -> None:
        """Layer gradients ``dW = inp^T dz`` ``[M, in, out]`` and ``db = sum_i dz``."""

    def grad(self, index: int, g: Tensor) -> None:
        """The gradient ``g`` of parameter ``index`` (batch-norm gamma/beta)."""


@dataclass
class LayerTrace:
    """Everything one hidden block computed, for the backward and for statistics.

    ``inp`` the block input, ``pre`` the linear output z (``None`` when it was overwritten in
    place), ``act_in`` the activation's input u (= z without batch norm; ``None`` when
    overwritten), ``act`` phi(u), ``mask`` the dropout multiplier (0 or 1/(1-p)), ``out`` the
    block output, ``norm`` the batch-norm cache.
    """

    inp: Tensor
    pre: Tensor | None
    act_in: Tensor | None
    act: Tensor
    out: Tensor
    mask: Tensor | None = None
    norm: fn.NormCache | None = None


@dataclass
class Trace:
    """A forward pass: the hidden blocks' traces, the output layer's input, the logits."""

    layers: list[LayerTrace]
    last_input: Tensor
    logits: Tensor
    grads: list[dict[str, Tensor]] = field(default_factory=list)


def linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``h W + b`` for every model; ``h`` is ``[M, B, in]`` or ``[R, in]`` (shared input).

    A shared input becomes one large ``addmm`` against all models' weights side by side
    (``[R, in] @ [in, M*out]``), returned as a ``[M, R, out]`` view.
    """
    if h.dim() == 2:
        m, inp, out = weight.shape
        side_by_side = weight.transpose(0, 1).reshape(inp, m * out)
        z = torch.addmm(bias.reshape(1, m * out), h, side_by_side)
        return z.view(h.shape[0], m, out).transpose(0, 1)
    return torch.baddbmm(bias, h, weight)


def _hidden_forward(
    net: StackedMLP, spec: LayerSpec, h: Tensor, train: bool, mask: Tensor | None, keep: bool
) -> LayerTrace:
    """One hidden block (see the module docstring); ``keep`` preserves z and u for stats."""
    rule = fn.rule(net.activation)
    p, buf = net.params, net.buffers
    z = linear(h, p[spec.weight], p[spec.bias])
    cache = None
    if spec.gamma is None:
        u = z
    elif train:
        u, cache = fn.batch_norm_train(
            z, p[spec.gamma], p[spec.beta], buf[spec.mean], buf[spec.var]
        )
    else:
        u = fn.batch_norm_eval(z, p[spec.gamma], p[spec.beta], buf[spec.mean], buf[spec.var])
    inplace = rule.from_output and not keep
    a = rule.forward(u, inplace)
    o = a * mask if mask is not None else a
    out = h + o if spec.residual else o
    pre = None if inplace and u is z else z
    return LayerTrace(h, pre, None if inplace else u, a, out, mask, cache)


def forward(
    net: StackedMLP,
    x: Tensor,
    *,
    train: bool,
    masks: list[Tensor | None] | None = None,
    keep: bool = False,
) -> Trace:
    """Forward all models on ``x`` (``[M, B, in]``, or ``[R, in]`` shared by all models).

    ``train`` selects batch statistics (and updates the running ones); ``masks`` holds one
    dropout multiplier per hidden block (or ``None``); ``keep`` keeps every intermediate.
    """
    h = x
    traces = []
    for k, spec in enumerate(net.layers[:-1]):
        mask = masks[k] if masks is not None else None
        traces.append(_hidden_forward(net, spec, h, train, mask, keep))
        h = traces[-1].out
    out = net.layers[-1]
    logits = linear(h, net.params[out.weight], net.params[out.bias])
    return Trace(traces, h, logits)


def _through_block(
    net: StackedMLP,
    spec: LayerSpec,
    t: LayerTrace,
    g: Tensor,
    sink: GradSink,
    rec: dict[str, Tensor] | None,
) -> Tensor:
    """From ``dL/d(block output)`` to ``dL/dz`` (dropout, activation, batch norm).

    ``rec`` (if given) receives ``act`` = dL/da, ``act_in`` = dL/du and ``pre`` = dL/dz.
    """
    if t.mask is not None:
        g = g * t.mask
    if rec is not None:
        rec["act"] = g
    g = fn.rule(net.activation).backward(g, t.act_in, t.act)
    if rec is not None:
        rec["act_in"] = rec["pre"] = g
    if t.norm is None:
        return g
    dz, dgamma, dbeta = fn.batch_norm_backward(g, net.params[spec.gamma], t.norm)
    sink.grad(spec.gamma, dgamma)  # type: ignore[arg-type]
    sink.grad(spec.beta, dbeta)  # type: ignore[arg-type]
    if rec is not None:
        rec["pre"] = dz
    return dz


def backward(
    net: StackedMLP,
    trace: Trace,
    dlogits: Tensor,
    sink: GradSink,
    *,
    record: bool = False,
) -> None:
    """Back-propagate ``dlogits`` ``[M, B, C]`` and hand every gradient to ``sink``.

    Input gradients are computed before the sink sees a layer's weight gradient, so a sink
    may update the weights in place. The first layer's input gradient is never computed.
    With ``record``, ``trace.grads[k]`` holds layer k's gradients: ``out`` = dL/dh' (block
    output), ``act`` = dL/da, ``act_in`` = dL/du and ``pre`` = dL/dz; for the output layer
    ``out`` = ``pre`` = dL/dlogits.
    """
    specs = net.layers
    g = dlogits
    trace.grads = [{} for _ in specs] if record else []
    for k in reversed(range(len(specs))):
        spec = specs[k]
        rec = trace.grads[k] if record else None
        if rec is not None:
            rec["out"] = rec["pre"] = g
        g_out = g
        if spec.hidden:
            t = trace.layers[k]
            g = _through_block(net, spec, t, g, sink, rec)
            inp = t.inp
        else:
            inp = trace.last_input
        g_in = torch.bmm(g, net.params[spec.weight].transpose(1, 2)) if k > 0 else None
        sink.linear(spec.weight, spec.bias, g, inp)
        if g_in is not None and spec.residual:
            g_in = g_in.add_(g_out)
        g = g_in  # type: ignore[assignment]
