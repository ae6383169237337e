"""LSUV (Mishkin & Matas 2016): Layer-Sequential Unit-Variance initialization.

Start from orthonormal weights; then for each Linear/Conv layer in the order the forward
pass reaches it, forward a batch, measure the variance of the layer's output and rescale the
layer's weights, ``W ← W · sqrt(target_var / Var)``, until ``|Var − target_var| < tol`` or
``max_iter`` rescalings (usually 1–5). Biases follow the bias policy of
:func:`initlab.initialize` (zeros by default) and are not rescaled.

The forward passes run in eval mode (no dropout noise; batch norm uses its running
statistics and is not updated), stop right after the layer being fitted, and the model's
train/eval mode is restored at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from initlab.errors import InitlabError
from initlab.notes import note


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the layer of interest has run."""


def forward_order(model: nn.Module, inputs: Tensor, layers: Sequence[nn.Module]) -> list[int]:
    """Indices of ``layers`` in the order one forward pass of ``inputs`` calls them."""
    order: list[int] = []
    index = {id(m): i for i, m in enumerate(layers)}

    def hook(module: nn.Module, _args, _out) -> None:
        if index[id(module)] not in order:
            order.append(index[id(module)])

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return order + [i for i in range(len(layers)) if i not in order]


def output_variance(model: nn.Module, inputs: Tensor, layer: nn.Module) -> float:
    """Variance of ``layer``'s output over a forward pass of ``inputs`` (stops right after)."""
    seen: list[float] = []

    def hook(_module: nn.Module, _args, out: Tensor) -> None:
        seen.append(float(out.detach().float().var()))
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not seen:
        raise InitlabError("LSUV: a layer was not reached by the forward pass")
    return seen[0]


def lsuv_layer(
    model: nn.Module,
    inputs: Tensor,
    layer: nn.Module,
    *,
    tol: float,
    max_iter: int,
    target_var: float,
) -> tuple[int, float]:
    """Rescale one layer's weights until its output variance is ``target_var ± tol``.

    Returns ``(rescalings done, final output variance)``. A layer whose output has zero or
    non-finite variance cannot be rescaled and is left as it is.
    """
    var = output_variance(model, inputs, layer)
    done = 0
    while abs(var - target_var) >= tol and done < max_iter:
        if not (var > 0 and math.isfinite(var)):
            break
        with torch.no_grad():
            layer.weight.mul_(math.sqrt(target_var / var))
        done += 1
        var = output_variance(model, inputs, layer)
    return done, var


def lsuv_pass(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    layers: Sequence[tuple[str, nn.Module, object]],
) -> dict[str, tuple[int, float]]:
    """Run LSUV over ``layers`` — ``(name, module, LSUVStart)`` — in forward order.

    ``inputs``: a batch tensor, or an ``(inputs, targets)`` pair. Returns, per layer name,
    ``(rescalings, final output variance)``.
    """
    batch = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    if not isinstance(batch, Tensor):
        raise InitlabError("LSUV needs data: initialize(model, 'lsuv', data=batch_of_inputs)")
    was_training = model.training
    model.eval()
    try:
        modules = [m for _, m, _ in layers]
        report = {}
        for i in forward_order(model, batch, modules):
            name, module, start = layers[i]
            report[name] = lsuv_layer(
                model,
                batch,
                module,
                tol=start.tol,
                max_iter=start.max_iter,
                target_var=start.target_var,
            )
    finally:
        model.train(was_training)
    stuck = [n for n, (_, var) in report.items() if not (var > 0 and math.isfinite(var))]
    if stuck:  # all-zero inputs said nothing: 'output_var 0.0, rescalings 0'
        shown = ", ".join(stuck[:3]) + (f" and {len(stuck) - 3} more" if len(stuck) > 3 else "")
        many = len(stuck) > 1
        said = (
            "their outputs on the batch have no variance, so they keep their orthogonal start"
            if many
            else "its output on the batch has no variance, so it keeps its orthogonal start"
        )
        note(
            f"LSUV could not rescale {shown}: {said}; the inputs reaching "
            f"{'them' if many else 'it'} do not vary: a batch that does not (all zeros), or "
            "units before it that are dead on it (a ReLU whose inputs are all negative, e.g. "
            "in a squeeze-excite bottleneck of a few units)"
        )
    return report
