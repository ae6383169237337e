"""Tied tensors: one tensor under several names (a language model's output layer sharing
its embedding's weight)."""

from __future__ import annotations

from torch import nn


def tied_names(module: nn.Module) -> dict[str, str]:
    """Every parameter and buffer name of ``module`` → the first name of the same tensor.

    ``named_parameters`` (and :func:`torch.func.stack_module_state`) keep one name per tensor,
    the first, so a tied tensor (a language model's output layer sharing its embedding's
    weight) maps from each of its names to that one: a model stack sets all of them to keep
    the tie, a weights file stores it once, and a plan says which layer's init set it.
    """
    names: dict[str, str] = {}
    for items in (module.named_parameters, module.named_buffers):
        first: dict[int, str] = {}
        for name, tensor in items(remove_duplicate=False):
            names[name] = first.setdefault(id(tensor), name)
    return names
