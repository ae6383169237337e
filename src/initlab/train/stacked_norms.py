"""Stacked per-token leaves for :mod:`initlab.train.stacked`: embedding tables, layer norms.

Activations are laid out ``[M, B, ...]`` (model axis first); every stacked tensor is
``[M, ...]`` (the stack's own leaves, no copies). Per model ``m``:

- ``nn.Embedding`` → :class:`StackedEmbedding`: ``y[m] = W[m][x[m]]`` as one lookup
  ``W_flat[x[m] + m V]`` in the ``[M·V, d]`` view of the ``[M, V, d]`` table (its gradient
  lands in the stacked leaf);
- ``nn.LayerNorm`` → :class:`StackedLayerNorm`: ``y = (x - mean) / sqrt(var + eps) · w[m] +
  b[m]`` over the normalized trailing dims, the affine part one ``addcmul`` for all models.

:mod:`initlab.train.stacked_attention` dispatches these leaves too (its :func:`replacement`
asks this module first), so this module need not be listed among the extensions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.train.layers import NotStackable

FUNCTIONS: set = set()
"""Graph functions these leaves make safe on ``[M, B, ...]`` tensors (none)."""
METHODS: set[str] = set()
"""Tensor methods these leaves make safe on ``[M, B, ...]`` tensors (none)."""


class StackedEmbedding(nn.Module):
    """M ``nn.Embedding`` tables ``W [M, V, d]``: ``y[m] = W_flat[x[m] + m V]`` with
    ``W_flat = W.view(M·V, d)``; ``x`` ``[M, B, ...]`` integer ids, ``y`` ``[M, B, ..., d]``.
    ``scale_grad_by_freq`` counts per model (the offset ids of two models never meet)."""

    def __init__(self, source: nn.Embedding, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        if source.padding_idx is not None or source.max_norm is not None or source.sparse:
            raise NotStackable("Embedding with padding_idx, max_norm or sparse gradients")
        self.weight, self.scale_grad_by_freq = tensors["weight"], source.scale_grad_by_freq
        m, v = self.weight.shape[:2]
        self.offsets = torch.arange(m, device=self.weight.device) * v

    def forward(self, x: Tensor) -> Tensor:
        m = self.weight.shape[0]
        ids = x + self.offsets.view(m, *(1,) * (x.dim() - 1))
        table = self.weight.reshape(-1, self.weight.shape[-1])
        return F.embedding(ids, table, scale_grad_by_freq=self.scale_grad_by_freq)


class StackedLayerNorm(nn.Module):
    """M ``nn.LayerNorm``: ``F.layer_norm`` without affine over the normalized trailing dims,
    then ``y · w[m] + b[m]`` (``w``, ``b`` ``[M, *shape]`` viewed ``[M, 1, ..., *shape]``)."""

    def __init__(self, source: nn.LayerNorm, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        self.shape, self.eps = tuple(source.normalized_shape), source.eps
        self.weight, self.bias = tensors.get("weight"), tensors.get("bias")

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x, self.shape, None, None, self.eps)
        view = (x.shape[0],) + (1,) * (x.dim() - 1 - len(self.shape)) + self.shape
        if self.weight is None:
            return y if self.bias is None else y + self.bias.view(view)
        if self.bias is None:
            return y * self.weight.view(view)
        return torch.addcmul(self.bias.view(view), y, self.weight.view(view))


def replacement(name: str, module: nn.Module, tensors: dict[str, Tensor]) -> nn.Module | None:
    """The stacked equivalent of an ``nn.Embedding`` or ``nn.LayerNorm`` leaf, else ``None``."""
    if type(module) is nn.Embedding:
        return StackedEmbedding(module, tensors)
    if type(module) is nn.LayerNorm:
        return StackedLayerNorm(module, tensors)
    return None
