"""Stacked per-token pieces for :mod:`initlab.train.stacked`: embeddings, norms, feed-forward.

Activations are laid out ``[M, B, ...]`` (model axis first); every stacked tensor is
``[M, ...]`` (the stack's own leaves, no copies). Per model ``m``:

- ``nn.Embedding`` → :class:`StackedEmbedding`, and ``F.embedding(ids, self.table)``
  (:func:`embedding`): ``y[m] = W[m][x[m]]`` as one lookup ``W_flat[x[m] + m V]`` in the
  ``[M·V, d]`` view of the ``[M, V, d]`` table (its gradient lands in the stacked leaf);
- ``nn.LayerNorm`` → :class:`StackedLayerNorm`, and ``F.layer_norm`` (:func:`layer_norm`):
  ``y = (x - mean) / sqrt(var + eps) · w[m] + b[m]`` over the normalized trailing dims, the
  affine part one ``addcmul`` for all models;
- ``F.linear(x, self.weight, self.bias)`` (:func:`linear`): ``nn.Linear``'s stacked product;
- a transformer's feed-forward block ``linear2(act(linear1(x)))`` → :class:`FeedForward`,
  one autograd function run model by model (its wide hidden activation stays in cache).

:mod:`initlab.train.stacked_attention` dispatches these leaves too (its :func:`replacement`
asks this module first), so this module need not be listed among the extensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.train.layers import NotStackable, _StackedLinear

ACTIVATIONS = (F.relu, F.gelu, F.silu, torch.relu, torch.tanh, torch.sigmoid)
ACTIVATION_MODULES = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)
FUSED_ACTIVATIONS = {F.relu: False, torch.relu: False, nn.ReLU: False, F.gelu: True}
"""Activations of :class:`FeedForward` (``True``: gelu); others run as separate leaves."""


class StackedEmbedding(nn.Module):
    """M ``nn.Embedding`` tables ``W [M, V, d]`` (:func:`embedding`); ``x`` ``[M, B, ...]``
    integer ids, ``y`` ``[M, B, ..., d]``."""

    def __init__(self, source: nn.Embedding, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        if source.padding_idx is not None or source.max_norm is not None or source.sparse:
            raise NotStackable("Embedding with padding_idx, max_norm or sparse gradients")
        self.weight, self.scale_grad_by_freq = tensors["weight"], source.scale_grad_by_freq
        self.offsets = table_offsets(self.weight)  # once, not a kernel every step

    def forward(self, x: Tensor) -> Tensor:
        return embedding(
            x, self.weight, scale_grad_by_freq=self.scale_grad_by_freq, offsets=self.offsets
        )


def table_offsets(weight: Tensor) -> Tensor:
    """``[0, V, 2 V, ...]``: where model m's rows start in the ``[M·V, d]`` view of the
    ``[M, V, d]`` tables."""
    m, v = weight.shape[:2]
    return torch.arange(0, m * v, v, device=weight.device)


def embedding(
    ids: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
    norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
    *, offsets: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """``F.embedding`` per model: ``y[m] = W[m][ids[m]]`` as ONE lookup ``W_flat[ids[m] + m V]``
    in the ``[M·V, d]`` view of the ``[M, V, d]`` tables (its gradient lands in the stacked
    tensor); ``scale_grad_by_freq`` counts per model (the offset ids of two models never
    meet). ``padding_idx``, ``max_norm`` (one row index, an in-place renorm) and ``sparse``
    have no per-model form here and are refused. ``offsets``: :func:`table_offsets` of
    ``weight``, when the caller keeps them."""
    if padding_idx is not None or max_norm is not None or sparse:
        raise NotStackable("forward calls F.embedding with padding_idx, max_norm or sparse")
    if weight.dim() != 3:
        raise NotStackable("forward calls F.embedding with a table other than [rows, dim]")
    m, v = weight.shape[:2]
    offsets = table_offsets(weight) if offsets is None else offsets
    flat = weight.reshape(m * v, weight.shape[-1])
    return F.embedding(ids + offsets.view(m, *(1,) * (ids.dim() - 1)), flat,
                       scale_grad_by_freq=scale_grad_by_freq)  # fmt: skip


class StackedLayerNorm(nn.Module):
    """M ``nn.LayerNorm`` (:func:`layer_norm` with their ``[M, *shape]`` weights and biases)."""

    def __init__(self, source: nn.LayerNorm, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        self.shape, self.eps = tuple(source.normalized_shape), source.eps
        self.weight, self.bias = tensors.get("weight"), tensors.get("bias")

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.shape, self.weight, self.bias, self.eps)


def layer_norm(
    x: Tensor, shape: int | Sequence[int], weight: Tensor | None = None,
    bias: Tensor | None = None, eps: float = 1e-5,
) -> Tensor:  # fmt: skip
    """``F.layer_norm`` per model: without affine over the normalized trailing dims (the same
    dims in both layouts), then ``y · w[m] + b[m]`` (``w``, ``b`` ``[M, *shape]`` viewed
    ``[M, 1, ..., *shape]``), one ``addcmul`` for all models."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    for t in (weight, bias):
        if t is not None and tuple(t.shape[1:]) != shape:
            raise NotStackable("forward calls F.layer_norm with an affine tensor not shaped "
                               "like normalized_shape")  # fmt: skip
    y = F.layer_norm(x, shape, None, None, eps)
    view = (x.shape[0],) + (1,) * (x.dim() - 1 - len(shape)) + shape
    if weight is None:
        return y if bias is None else y + bias.view(view)
    if bias is None:
        return y * weight.view(view)
    return torch.addcmul(bias.view(view), y, weight.view(view))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` per model: ``y[m] = x[m] W[m]^T + b[m]`` by the stacked product of
    ``nn.Linear``'s leaves (:class:`initlab.train.layers._StackedLinear`)."""
    if weight.dim() != 3 or (bias is not None and bias.dim() != 2):
        raise NotStackable("forward calls F.linear with a weight other than [out, in] or a "
                           "bias other than [out]")  # fmt: skip
    return _StackedLinear.apply(x, weight, bias)


def mm_into(a: Tensor, b: Tensor, out: Tensor) -> None:
    """``out = a @ b``, written through ``out``'s own layout (a transposed view is filled as
    ``(b^T a^T)^T``, so a weight gradient lands in the weight's memory layout)."""
    if out.is_contiguous():
        torch.mm(a, b, out=out)
    else:
        torch.mm(b.t(), a.t(), out=out.t())


def affine_into(x: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor) -> None:
    """``out = x W^T + b`` (one ``addmm``; ``mm`` without bias)."""
    if bias is None:
        torch.mm(x, weight.t(), out=out)
    else:
        torch.addmm(bias, x, weight.t(), out=out)


class FeedForward(torch.autograd.Function):
    """``y[m] = act(x[m] W1[m]^T + b1[m]) W2[m]^T + b2[m]`` for act relu or gelu, one model
    at a time so the ``[N, 4 d]`` hidden activation stays in cache between its producer and
    consumers. Backward per model: ``dh = dy W2``, ``dW2 = dy^T h``, ``dz = act'(z) ⊙ dh``,
    ``dW1 = dz^T x``, ``dx = dz W1``, ``db = sum dz``."""

    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, b1, w2: Tensor, b2, gelu: bool) -> Tensor:
        m, flat = x.shape[0], x.reshape(x.shape[0], -1, x.shape[-1])
        saved = flat.new_empty(m, flat.shape[1], w1.shape[1])  # relu: h; gelu: z
        y = flat.new_empty(m, flat.shape[1], w2.shape[1])
        for i in range(m):
            affine_into(flat[i], w1[i], None if b1 is None else b1[i], saved[i])
            h = F.gelu(saved[i]) if gelu else saved[i].relu_()
            affine_into(h, w2[i], None if b2 is None else b2[i], y[i])
        ctx.save_for_backward(flat, w1, w2, saved)
        ctx.gelu, ctx.biases, ctx.shape = gelu, (b1 is not None, b2 is not None), x.shape
        return y.view(*x.shape[:-1], w2.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        flat, w1, w2, saved = ctx.saved_tensors
        g = grad.reshape(flat.shape[0], -1, grad.shape[-1])
        gx, gw1, gw2 = torch.empty_like(flat), torch.empty_like(w1), torch.empty_like(w2)
        gb1 = flat.new_empty(w1.shape[:2]) if ctx.biases[0] else None
        for i in range(flat.shape[0]):
            z = saved[i]
            h = F.gelu(z) if ctx.gelu else z
            mm_into(g[i].t(), h, gw2[i])
            dh = g[i] @ w2[i]
            if ctx.gelu:
                dz = torch.ops.aten.gelu_backward(dh, z)
            else:
                dz = torch.ops.aten.threshold_backward(dh, h, 0.0)
            mm_into(dz.t(), flat[i], gw1[i])
            if gb1 is not None:
                torch.sum(dz, 0, out=gb1[i])
            torch.mm(dz, w1[i], out=gx[i])
        gb2 = g.sum(1) if ctx.biases[1] else None
        return gx.view(ctx.shape), gw1, gb1, gw2, gb2, None


def elementwise_activation(act) -> tuple[object, bool | None]:
    """A feed-forward activation that acts elementwise (``F.relu``, ``F.gelu``, ... or such a
    module) and its :class:`FeedForward` flag (``None``: not fused); else NotStackable."""
    if act in ACTIVATIONS or type(act) in ACTIVATION_MODULES:
        return act, FUSED_ACTIVATIONS.get(act, FUSED_ACTIVATIONS.get(type(act)))
    raise NotStackable(f"a feed-forward activation {act!r}")


def replacement(name: str, module: nn.Module, tensors: dict[str, Tensor]) -> nn.Module | None:
    """The stacked equivalent of an ``nn.Embedding`` or ``nn.LayerNorm`` leaf, else ``None``."""
    if type(module) is nn.Embedding:
        return StackedEmbedding(module, tensors)
    if type(module) is nn.LayerNorm:
        return StackedLayerNorm(module, tensors)
    return None
