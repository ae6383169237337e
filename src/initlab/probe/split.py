"""Which output features each piece of a split layer output holds (a fused projection).

nanoGPT's ``q, k, v = c_attn(x).split(d, dim=2)`` (also ``chunk(3, -1)``, or timm's
``reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)``) cuts the output
``o = x Wᵀ`` of one ``Linear(d, 3d)`` into three pieces, each the output of its own row
block ``W[a:b]`` (``o[..., j] = x · W[j]``): three ``d × d`` maps fused in one matrix, as
``nn.MultiheadAttention``'s ``in_proj_weight`` is. :func:`column_spans` finds those blocks
from the pieces alone, whatever views lead to them.

Each piece is a view of ``o``'s memory, so the output feature (column) ``j`` of every
element it holds is read off a tensor of column indices laid out like ``o``: with
``C[o.storage_offset() + Σ_i k_i · o.stride(i)] = k_last`` for every index ``k`` of ``o``,
the piece's columns are ``C`` seen through the piece's own ``size``/``stride``/
``storage_offset`` (``torch.as_strided``). The pieces are a *clean partition* of the
``F`` output features when each holds exactly the columns of one contiguous span
``[a, b)``, each as often (every row/token of ``o``), the spans tile ``[0, F)`` without
overlap and the pieces together hold all of ``o``. Anything else — pieces copied rather
than viewed, a split along the batch or sequence (every piece holds all ``F`` columns),
Megatron's interleaved heads ``o.view(B, T, H, 3·hd).split(hd, -1)`` (each piece holds
``H`` separate column blocks) — is no partition: ``None``, whole-tensor fans.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

Spans = tuple[tuple[int, int], ...]
"""Row spans ``((a₀, b₀), (a₁, b₁), ...)`` of a weight ``[F, in]``, tiling ``[0, F)``."""


def linear_spans(
    module: nn.Module, output: Tensor | None, pieces: Sequence[Tensor]
) -> Spans | None:
    """:func:`column_spans` of a Linear layer's ``output`` (``None`` for any other layer:
    a convolution's features are not its output's last dimension)."""
    if not isinstance(module, nn.Linear) or output is None:
        return None
    try:
        return column_spans(output, pieces, module.out_features)
    except (RuntimeError, NotImplementedError):  # no plain storage (sparse, meta, a subclass)
        return None


def column_spans(output: Tensor, pieces: Sequence[Tensor], features: int) -> Spans | None:
    """The contiguous spans of output features (``output``'s last dimension, of size
    ``features``) that ``pieces`` partition it into, in increasing order; ``None`` unless
    the pieces are two or more views of ``output``'s memory that partition its features
    cleanly (see the module docstring)."""
    if len(pieces) < 2 or output.dim() == 0 or output.shape[-1] != features:
        return None
    if sum(p.numel() for p in pieces) != output.numel() or not all(
        _views(p, output) for p in pieces
    ):
        return None
    columns = _column_map(output, features)
    spans = [_span(columns, p, features) for p in pieces]
    if any(s is None for s in spans):
        return None
    ordered = sorted(spans)
    ends = [0] + [b for _, b in ordered]
    if any(a != end for (a, _), end in zip(ordered, ends, strict=False)) or ends[-1] != features:
        return None
    return tuple(ordered)


def _views(piece: Tensor, output: Tensor) -> bool:
    """Whether ``piece`` lies in ``output``'s memory, with its dtype and device."""
    return (
        piece.dtype == output.dtype
        and piece.device == output.device
        and piece.untyped_storage().data_ptr() == output.untyped_storage().data_ptr()
    )


def _column_map(output: Tensor, features: int) -> Tensor:
    """``C``: for every element of ``output``'s storage, the output feature it holds
    (``-1`` where ``output`` holds none); int32, half int64's memory (a nanoGPT batch of
    8 × 1024 tokens: 75 MB, once per traced split)."""
    size = output.untyped_storage().nbytes() // output.element_size()
    columns = torch.full((size,), -1, dtype=torch.int32, device=output.device)
    laid = columns.as_strided(output.shape, output.stride(), output.storage_offset())
    laid.copy_(torch.arange(features, dtype=torch.int32, device=output.device).expand(output.shape))
    return columns


def _span(columns: Tensor, piece: Tensor, features: int) -> tuple[int, int] | None:
    """``(a, b)`` when ``piece`` holds columns ``a..b-1`` only, each ``numel / (b - a)``
    times; ``None`` otherwise (or when it reaches outside the storage)."""
    if piece.numel() == 0:
        return None
    reach = piece.storage_offset() + sum(
        (n - 1) * s for n, s in zip(piece.shape, piece.stride(), strict=True)
    )
    if piece.storage_offset() < 0 or reach >= columns.numel():
        return None
    held = columns.as_strided(piece.shape, piece.stride(), piece.storage_offset()).flatten()
    if int(held.min()) < 0:
        return None
    a, b = int(held.min()), int(held.max()) + 1
    counts = torch.bincount(held - a, minlength=b - a)
    if int(counts.min()) == 0 or int(counts.min()) != int(counts.max()):
        return None
    return (a, b) if (b - a) * int(counts[0]) == piece.numel() and b <= features else None
