"""Recurrent layers in the coordinate check: the hidden states an RNN, LSTM or GRU returns.

The probe's tracer (:func:`initlab.probe.trace.trace`) records Linear/Conv/Embedding calls
and multi-head attention's maps; an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` reads its matrices inside
torch's own kernel, so without more the coordinate check never measures it, although under
muP or NTK its matrices are rescaled with width. :func:`trace` traces as the probe does and
also records every call of an ``nn.RNNBase`` module as one layer call: its input and
``output[0]``, the hidden state at every time step (of its last layer, both directions), which
is what the next layer reads, as it reads a Linear's output. Its width fits are then those of
a hidden layer (its kind: :func:`~initlab.scaling.sentences.module_kind` of a module without a
``weight``). A call given an initial state, or one with dropout between its layers in training,
cannot be recomputed from its input alone: it gets ``l1``/``std`` but no ``update``; a
``PackedSequence`` output is not recorded (and :mod:`initlab.scaling.unmeasured` names the
module).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from initlab.probe.trace import TracedLayer, _Tracer
from initlab.probe.trace import trace as trace_layers

RECURRENT = (nn.RNNBase,)
"""The recurrent modules :func:`trace` records (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``)."""


def trace(
    model: nn.Module, inputs: Tensor, more: Callable[[_Tracer], list] | None = None
) -> tuple[list[TracedLayer], object]:
    """:func:`initlab.probe.trace.trace` with the calls of :data:`RECURRENT` modules among
    the layer calls, in call order (a recurrent call comes after the layers it called);
    ``more(tracer)`` adds hooks of its own (their handles)."""

    def recurrent(tracer: _Tracer) -> list:
        return [
            handle
            for name, module in model.named_modules()
            if isinstance(module, RECURRENT)
            for handle in _hooks(tracer, name or "(model)", module)
        ] + (more(tracer) if more is not None else [])

    return trace_layers(model, inputs, more=recurrent)


def _hooks(tracer: _Tracer, name: str, module: nn.Module) -> list:
    """Hooks recording each call of the recurrent ``module``: its input (``(None, None)`` when
    the call cannot be recomputed from it alone) and its sequence of hidden states."""
    inputs: list = []

    def before(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("input")
        alone = len(args) + len(kwargs) == 1 and isinstance(x, Tensor)
        dropout = module.training and bool(getattr(module, "dropout", 0))
        inputs.append(tracer.live(x) if alone and not dropout else (None, None))

    def after(_module: nn.Module, _args: tuple, _kwargs: dict, output: object) -> None:
        seen = inputs.pop() if inputs else (None, None)
        states = output[0] if isinstance(output, tuple) and output else None
        if isinstance(states, Tensor):  # not a PackedSequence
            tracer.layers.append(TracedLayer(name, module, seen, tracer.live(states)))

    return [
        module.register_forward_pre_hook(before, with_kwargs=True),
        module.register_forward_hook(after, with_kwargs=True),
    ]


def recompute(module: nn.Module, state: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """The output of a traced layer call on ``x`` with the parameters ``state`` (the
    parameters before the last update): a recurrent module's sequence of hidden states."""
    with torch.no_grad():
        out = functional_call(module, dict(state), (x,))
    return out[0] if isinstance(module, RECURRENT) else out
