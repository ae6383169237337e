"""The residual stream in a coordinate check: the inputs of the normalization layers.

A pre-LN block computes ``x + f(norm(x))`` and a final norm reads the sum: the stream itself
is no layer's output, so per-layer rows never show it, and the final norm keeps the logits
level however it grows. These rows are the input of every normalization layer call that is
not a traced layer's output (a convolution's output entering batch norm is measured as the
convolution's): ``l1`` and ``std``, under the module ``<norm name> (input)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from initlab.norm_layers import is_norm

STREAM = " (input)"
"""Appended to a normalization layer's name for the rows of its input: the residual stream a
pre-LN block (``x + f(norm(x))``) or a final norm reads, recorded nowhere else. A pre-LN
net's stream grows with depth (√depth with unscaled branches) while its final norm keeps
every layer's output and the logits level: only these rows show it."""


def stream_inputs(model: nn.Module, seen: list[tuple[str, Tensor]]) -> Callable[[Any], list]:
    """A :func:`~initlab.probe.trace.trace` ``more`` hook that appends ``(name, input)`` to
    ``seen`` at every call of a normalization layer of ``model``."""

    def more(_tracer: Any) -> list:
        def hook(name: str) -> Callable:
            return lambda _module, args: seen.append((name, args[0])) if args else None

        norms = [(n, m) for n, m in model.named_modules() if is_norm(m)]
        return [m.register_forward_pre_hook(hook(n)) for n, m in norms]

    return more


def stream_rows(seen: list[tuple[str, Tensor]], calls: list) -> list[tuple]:
    """``(module, metric, value)`` of each norm input in ``seen`` that is not a traced
    layer's output (a conv's output entering batch norm is measured as the conv's), labelled
    ``name`` + :data:`STREAM` (``[k]`` for the k-th call)."""
    outputs = {id(call.output[0]) for call in calls}  # the tensor as the model holds it
    rows, count = [], {}
    for name, x in seen:
        count[name] = count.get(name, 0) + 1
        if not isinstance(x, Tensor) or id(x) in outputs or not x.is_floating_point():
            continue
        label = name + STREAM + (f"[{count[name]}]" if count[name] > 1 else "")
        x = x.detach().float()
        rows += [(label, "l1", float(x.abs().mean())), (label, "std", float(x.std()))]
    return rows
