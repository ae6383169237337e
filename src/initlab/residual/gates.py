"""Learnable scalars added to residual branches: SkipInit's gate and Fixup's biases and
multiplier.

They are attached in place, keeping every existing parameter's name: a scalar
``nn.Parameter`` registered on the module it acts on, and a forward (pre-)hook that uses it.

* ``skipinit_gate`` (init 0) on a branch's output module: ``out ← skipinit_gate · out``.
* ``fixup_scale`` (init 1) and ``fixup_bias`` (init 0) on a branch's output module:
  ``out ← fixup_scale · out + fixup_bias``.
* ``fixup_bias_in`` (init 0) on each weight layer of a branch: ``x ← x + fixup_bias_in``
  before the layer.

Hooks are module-level functions reading the parameter from the module, so models with them
deep-copy, pickle and run under ``torch.func.functional_call``/``vmap`` like any other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _on_first(output: Any, change: Any) -> Any:
    """``change`` applied to ``output``, or to its first item when it is a tuple (an
    ``nn.MultiheadAttention`` returns ``(attended, weights)``; the branch adds the first)."""
    if isinstance(output, tuple):
        return (change(output[0]), *output[1:])
    return change(output)


def _gate_hook(module: nn.Module, args: Any, output: Any) -> Any:
    return _on_first(output, lambda out: out * module.skipinit_gate)


def _fixup_out_hook(module: nn.Module, args: Any, output: Any) -> Any:
    return _on_first(output, lambda out: out * module.fixup_scale + module.fixup_bias)


def _fixup_in_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0] + module.fixup_bias_in, *args[1:])


def _scalar(module: nn.Module, value: float) -> nn.Parameter:
    like = next(module.parameters(), None)
    kwargs = {"dtype": like.dtype, "device": like.device} if like is not None else {}
    return nn.Parameter(torch.full((), value, **kwargs))


def add_gate(module: nn.Module) -> None:
    """SkipInit: ``module``'s output times a learnable ``skipinit_gate`` that starts at 0."""
    if not hasattr(module, "skipinit_gate"):
        module.register_parameter("skipinit_gate", _scalar(module, 0.0))
        module.register_forward_hook(_gate_hook)
    else:
        module.skipinit_gate.data.zero_()


def add_fixup_output(module: nn.Module) -> None:
    """Fixup's multiplier (1) and bias (0) on a branch's output."""
    if not hasattr(module, "fixup_scale"):
        module.register_parameter("fixup_scale", _scalar(module, 1.0))
        module.register_parameter("fixup_bias", _scalar(module, 0.0))
        module.register_forward_hook(_fixup_out_hook)


def add_fixup_input(module: nn.Module) -> None:
    """Fixup's scalar bias (0) before a branch layer."""
    if not hasattr(module, "fixup_bias_in"):
        module.register_parameter("fixup_bias_in", _scalar(module, 0.0))
        module.register_forward_pre_hook(_fixup_in_hook)
