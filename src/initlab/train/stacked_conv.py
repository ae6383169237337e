"""Stacked equivalents of 2-d conv, batch-norm and pooling leaves for
:mod:`initlab.train.stacked`.

The graph sees conv activations as ``[M, B, C, H, W]`` (model axis first, like every stacked
activation). In memory they are ``[B, H, W, M, C]``: the tensor ``[B, M·C, H, W]`` in
``channels_last`` format, i.e. model ``m``'s channel ``c`` is channel ``m·C + c`` of one
image batch. On that tensor each leaf is one call for all M models:

- ``nn.Conv2d`` → :class:`StackedConv2d`: ``F.conv2d`` with ``groups = M · groups`` and the
  weight ``[M, Cout, Cin/groups, k, k]`` viewed as ``[M·Cout, Cin/groups, k, k]``, so output
  channel ``m·Cout + o`` sees only model ``m``'s input channels:
  ``y[m] = conv(x[m], W[m]) + b[m]`` (non-zero ``padding_mode``: ``F.pad`` first, per channel);
- ``nn.BatchNorm2d`` → :class:`StackedBatchNorm2d`: ``F.batch_norm`` over the ``M·C``
  channels, ``y = (x - mean) / sqrt(var + eps) · gamma + beta`` with each model's own batch
  statistics over ``(B, H, W)`` in training (its running statistics updated in place in the
  stacked ``[M, C]`` buffers, ``num_batches_tracked`` incremented) and its own running
  statistics in eval mode;
- ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``, ``AdaptiveMaxPool2d`` →
  :class:`StackedPool2d`: the module itself on ``[B, M·C, H, W]`` (pooling is per channel).

Elementwise operations between leaves (``relu``, the residual ``x + branch``) keep the
strides of their inputs, so activations stay in this layout from one leaf to the next
without copies; only the network's input (contiguous ``[M, B, C, H, W]``) is copied once.
``channels_last`` because oneDNN's grouped convolution on ``[B, M·C, H, W]`` in the default
contiguous format is slower than the M separate convolutions (issue #12's measurements).
What batching saves is in the convolutions; the memory-bound operations (batch norm, relu,
the residual add and their backward) are no cheaper per element and pay more once the M
models' activations outgrow the caches, which is why ``auto`` times the stack against
``looped`` before keeping it.

Refused (:class:`NotStackable`, the stack then uses ``vmap``): subclasses of these modules
(their ``forward`` may differ), ``BatchNorm2d(momentum=None)`` (the cumulative average needs
one ``num_batches_tracked`` for all models), pooling with ``return_indices``, and inputs
that are not ``[batch, channels, H, W]`` (at the first forward).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, channels_last, nn

from initlab.train.layers import NotStackable, StackedBatchNormState

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def to_channels(x: Tensor) -> Tensor:
    """``[M, B, C, H, W]`` → ``[B, M·C, H, W]`` (channel ``m·C + c``) in ``channels_last``
    memory: a view when ``x`` is already laid out ``[B, H, W, M, C]``, else a copy."""
    if x.dim() != 5:
        raise NotStackable("a 2-d conv layer on inputs other than [batch, channels, H, W]")
    m, b, c, h, w = x.shape
    moved = x.permute(1, 3, 4, 0, 2)
    if moved.is_contiguous():
        return moved.view(b, h, w, m * c).permute(0, 3, 1, 2)
    # two copies, [B, M, C, H, W] then channels_last, beat one permuting copy (whose
    # innermost run is C, e.g. 3 for images)
    return x.transpose(0, 1).reshape(b, m * c, h, w).contiguous(memory_format=channels_last)


def from_channels(y: Tensor, m: int) -> Tensor:
    """``[B, M·C, H, W]`` → the ``[M, B, C, H, W]`` view (a copy only if ``y`` is not in
    ``channels_last`` memory)."""
    b, mc, h, w = y.shape
    return y.permute(0, 2, 3, 1).reshape(b, h, w, m, mc // m).permute(3, 0, 4, 1, 2)


class StackedConv2d(nn.Module):
    """M ``nn.Conv2d``: weight ``[M, Cout, Cin/g, kh, kw]``, bias ``[M, Cout]``;
    ``y[m] = conv2d(x[m], W[m], b[m])`` as one grouped conv (module docstring)."""

    def __init__(self, source: nn.Conv2d, tensors: dict[str, Tensor | None]) -> None:
        super().__init__()
        self.weight, self.bias = tensors["weight"], tensors.get("bias")
        self.stride, self.dilation, self.groups = source.stride, source.dilation, source.groups
        self.padding = source.padding
        self.pad: tuple[int, ...] | None = None
        if source.padding_mode != "zeros":
            self.pad, self.padding = tuple(source._reversed_padding_repeated_twice), 0
        self.mode = source.padding_mode

    def forward(self, x: Tensor) -> Tensor:
        m = self.weight.shape[0]
        flat = to_channels(x)
        if self.pad is not None:
            flat = F.pad(flat, self.pad, mode=self.mode)
        bias = None if self.bias is None else self.bias.flatten()
        out = F.conv2d(
            flat,
            self.weight.flatten(0, 1),
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups * m,
        )
        return from_channels(out, m)


class StackedBatchNorm2d(StackedBatchNormState):
    """M ``nn.BatchNorm2d`` on ``[M, B, C, H, W]``: ``F.batch_norm`` over the ``M·C``
    channels of ``[B, M·C, H, W]``, run on its ``channels_last`` memory viewed as the rows
    ``[B·H·W, M·C]`` (the same statistics; torch's kernel for 2-d inputs is the faster one);
    running statistics updated in place in the stacked ``[M, C]`` buffers (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        flat = to_channels(x)
        (b, mc, h, w), m = flat.shape, x.shape[0]
        out = self.normalize_rows(flat.permute(0, 2, 3, 1).reshape(b * h * w, mc))
        return out.view(b, h, w, m, mc // m).permute(3, 0, 4, 1, 2)


class StackedPool2d(nn.Module):
    """A 2-d pooling module applied to ``[B, M·C, H, W]``: per channel, so per model."""

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        if getattr(source, "return_indices", False):
            raise NotStackable(f"{type(source).__name__} with return_indices")
        self.pool = source

    def forward(self, x: Tensor) -> Tensor:
        return from_channels(self.pool(to_channels(x)), x.shape[0])


def replacement(name: str, module: nn.Module, tensors: dict[str, Tensor]) -> nn.Module | None:
    """The stacked equivalent of the leaf ``module`` (``tensors``: its stacked
    parameters and buffers by attribute name), or ``None`` if this module has none."""
    kind = type(module)
    if kind is nn.Conv2d:
        return StackedConv2d(module, tensors)
    if kind is nn.BatchNorm2d:
        return StackedBatchNorm2d(module, tensors)
    if kind in POOLS:
        return StackedPool2d(module)
    return None
