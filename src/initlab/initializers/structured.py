"""Structured schemes: orthogonal, identity/eye, dirac, delta_orthogonal, sparse.

All follow PyTorch's layout ``[out, in/groups, *k]``: "rows" is ``size(0)`` and the trailing
dimensions are flattened into columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from initlab.errors import InitlabError
from initlab.initializers.base import Sampler, Scheme, Shape
from initlab.initializers.checks import check_ndim, check_nonnegative, check_real
from initlab.initializers.fans import Fans

_CONV_DIMS = (3, 4, 5)


def orthogonal_matrix(
    rows: int, cols: int, generator: torch.Generator | None, like: Tensor
) -> Tensor:
    """A Haar-random ``rows × cols`` matrix with orthonormal rows (rows <= cols) or columns.

    Exactly ``torch.nn.init.orthogonal_``'s draw: an N(0, 1) ``[rows, cols]`` matrix
    (transposed when rows < cols), ``Q, R = qr(A)``, ``Q *= sign(diag(R))`` (Mezzadri 2007:
    makes Q Haar-distributed), transposed back. Drawn in the dtype of ``like`` (float32 when
    ``like`` is a half type, which QR does not support).
    """
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    flattened = like.new_empty((rows, cols), dtype=dtype).normal_(0, 1, generator=generator)
    if rows < cols:
        flattened.t_()
    q, r = torch.linalg.qr(flattened)
    q *= torch.diag(r, 0).sign()
    if rows < cols:
        q.t_()
    return q


def group_blocks(tensor: Tensor, fans: Fans) -> list[Tensor]:
    """``tensor``'s blocks of ``size(0) / groups`` rows, one per group of a grouped
    convolution (:attr:`Fans.groups`; views, group 0 first), or ``[tensor]``."""
    groups = fans.groups
    if groups == 1 or tensor.size(0) % groups != 0:
        return [tensor]
    return list(tensor.split(tensor.size(0) // groups))


@dataclass(frozen=True)
class Orthogonal(Sampler):
    """``gain ·`` a random semi-orthogonal ``[size(0), numel/size(0)]`` matrix, reshaped;
    on a grouped convolution one such matrix per group's block of rows."""

    gain: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        if tensor.dim() < 2:
            raise InitlabError(f"needs >= 2 dimensions, got shape {list(tensor.shape)}")
        for block in group_blocks(tensor, fans):
            rows = block.size(0)
            q = orthogonal_matrix(rows, block.numel() // rows, generator, block)
            block.copy_(q.reshape(block.shape)).mul_(self.gain)

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        """``gain / sqrt(max(rows, cols))`` (rows = fan_out, cols = fan_in without ``shape``;
        rows = ``shape[0] / groups`` on a grouped convolution)."""
        if shape is not None and len(shape) >= 2:
            rows, cols = shape[0], math.prod(shape[1:])
            if fans.groups > 1 and rows % fans.groups == 0:
                rows //= fans.groups
        else:
            rows, cols = fans.fan_out, fans.fan_in
        return self.gain / math.sqrt(max(rows, cols, 1))


@dataclass(frozen=True)
class Identity(Sampler):
    """``gain · eye(rows, cols)`` on a 2-D tensor."""

    gain: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        check_ndim(tensor, (2,), "identity is for Linear weights [out, in]; use dirac for convs")
        eye = torch.eye(*tensor.shape, dtype=tensor.dtype, device=tensor.device)
        tensor.copy_(eye).mul_(self.gain)


@dataclass(frozen=True)
class Dirac(Sampler):
    """PyTorch ``dirac_``: 1 at ``[g·out_per_group + d, d, k//2, ...]``, zeros elsewhere.
    ``groups`` 1 (the default) takes a grouped convolution's own (``fans.groups``), as
    orthogonal and delta-orthogonal do: ``dirac_(w)`` of a ``groups=4`` convolution with
    PyTorch's default of 1 sets 2 of its 8 taps and is no identity map."""

    groups: int

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        check_ndim(tensor, _CONV_DIMS, "a Conv1d/2d/3d weight [out, in/groups, *k]")
        groups = self.groups if self.groups != 1 else fans.groups
        if tensor.size(0) % groups != 0:
            raise InitlabError(f"groups={groups} must divide the {tensor.size(0)} output channels")
        out_per_group = tensor.size(0) // groups
        centre = tuple(size // 2 for size in tensor.shape[2:])
        tensor.zero_()
        for g in range(groups):
            for d in range(min(out_per_group, tensor.size(1))):
                tensor[(g * out_per_group + d, d, *centre)] = 1


@dataclass(frozen=True)
class DeltaOrthogonal(Sampler):
    """JAX ``delta_orthogonal``: ``gain ·`` orthogonal ``[out, in]`` at tap ``(k-1)//2``."""

    gain: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        check_ndim(tensor, _CONV_DIMS, "a Conv1d/2d/3d weight [out, in, *k]")
        blocks = group_blocks(tensor, fans)
        out_channels, in_channels = blocks[0].shape[:2]
        if out_channels < in_channels:
            per = " per group" if len(blocks) > 1 else ""
            raise InitlabError(
                f"needs out_channels >= in_channels{per} (JAX: fan_in <= fan_out), "
                f"got out={out_channels} < in={in_channels}"
            )
        centre = tuple((size - 1) // 2 for size in tensor.shape[2:])
        tensor.zero_()
        for block in blocks:
            q = orthogonal_matrix(out_channels, in_channels, generator, tensor)
            block[(slice(None), slice(None), *centre)] = q.to(tensor.dtype) * self.gain


@dataclass(frozen=True)
class Sparse(Sampler):
    """PyTorch ``sparse_`` with the generator honoured: N(0, std²), then per-column zeros."""

    sparsity: float
    stddev: float

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        check_ndim(tensor, (2,), "sparse is for Linear weights [out, in]")
        rows, cols = tensor.shape
        num_zeros = math.ceil(self.sparsity * rows)
        tensor.normal_(0, self.stddev, generator=generator)
        for col in range(cols):
            perm = torch.randperm(rows, generator=generator, device=tensor.device)
            tensor[perm[:num_zeros], col] = 0

    def std(self, fans: Fans, shape: Shape | None = None) -> float:
        """``std·sqrt(1 − ceil(sparsity·rows)/rows)``: a zero w.p. ceil(s·rows)/rows."""
        rows = shape[0] if shape else fans.fan_out
        if rows <= 0:
            return 0.0
        return self.stddev * math.sqrt(1.0 - math.ceil(self.sparsity * rows) / rows)


def orthogonal(gain: float = 1.0) -> Sampler:
    """Saxe et al. (2014): W = gain · Q, Q a Haar-random semi-orthogonal matrix.

    Q comes from the QR of an N(0, 1) matrix of shape [size(0), numel/size(0)] (transposed when
    rows < cols), with ``Q *= sign(diag(R))``; then W W^T = gain²·I when rows <= cols, else
    W^T W = gain²·I. Exactly ``torch.nn.init.orthogonal_`` (rows = size(0)). Keras flattens the
    other way (rows = prod(shape[:-1]) of its [*k, in, out] layout): the same matrix up to the
    layout transpose.

    On a grouped convolution (fans from the module, :attr:`Fans.groups` > 1) each group's block
    of ``size(0) / groups`` rows is drawn on its own, group 0 first: the groups never mix, and
    one draw over the flattened ``[out, in/groups · k]`` weight (``orthogonal_``'s) gives a
    depthwise convolution's channels random norms (0.1 to 0.7 for 16 channels of 5 taps)
    where each group's own draw gives every channel's filter the norm ``gain``.
    """
    check_real("gain", gain)
    return Orthogonal(gain)


def identity(gain: float = 1.0) -> Sampler:
    """Keras ``Identity``: W = gain · I (rectangular eye, 2-D only); PyTorch ``eye_`` at gain 1."""
    check_real("gain", gain)
    return Identity(gain)


def dirac(groups: int = 1) -> Sampler:
    """PyTorch ``dirac_``: W[g·(out/groups)+d, d, k//2, ...] = 1 for d < min(out/groups, in).

    A 3/4/5-D conv weight; with padding k//2 (odd k) the conv copies its first
    min(out/groups, in/groups) input channels of each group to its output. Zeros elsewhere.
    """
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise InitlabError(f"groups must be an integer >= 1, got {groups!r}")
    return Dirac(groups)


def delta_orthogonal(gain: float = 1.0) -> Sampler:
    """JAX ``delta_orthogonal`` (Xiao et al. 2018): W[:, :, c, ...] = gain · Q, zeros elsewhere.

    Q is a random [out, in] matrix with orthonormal columns (Q^T Q = I), placed at the centre
    tap c = (k-1)//2 of every spatial dimension (JAX's choice; PyTorch's dirac uses k//2, the
    same for odd k). Needs out >= in, as JAX does. On a grouped convolution (fans from the
    module) each group gets its own ``[out/groups, in/groups]`` Q (a depthwise one: ±gain at
    the centre of each channel's filter), where one ``[out, in/groups]`` Q would spread a
    single unit vector over all the channels.
    """
    check_real("gain", gain)
    return DeltaOrthogonal(gain)


def sparse(sparsity: float = 0.1, std: float = 0.01) -> Sampler:
    """Martens (2010), PyTorch ``sparse_``: N(0, std²), then ceil(sparsity·rows) zeros per column.

    The zeroed rows of each column come from ``randperm(rows, generator=generator)``: unlike
    ``torch.nn.init.sparse_`` (which draws them from the global RNG), the generator is
    honoured. The normal draws are the same as torch's for the same generator state.
    """
    check_real("sparsity", sparsity)
    if not 0 <= sparsity < 1:
        raise InitlabError(f"sparsity must be in [0, 1), got {sparsity}")
    check_nonnegative("std", std)
    return Sparse(sparsity, std)


# Formulas are printed through Rich (`initlab list initializers`): no square brackets, which
# Rich would take for markup and drop.
_ORTHO = "{gain}·Q, Q Haar-orthogonal of shape (size(0), numel/size(0)) (QR of N(0,1), sign-fixed)"
SCHEMES = [
    Scheme(
        "orthogonal",
        orthogonal,
        "pytorch",
        _ORTHO,
        keras_equivalent="keras.initializers.Orthogonal(gain) — same law, transposed layout",
        jax_equivalent="jax.nn.initializers.orthogonal(scale=gain)",
    ),
    Scheme(
        "identity",
        identity,
        "keras",
        "{gain}·I (2-D)",
        pytorch_equivalent="torch.nn.init.eye_ (gain 1)",
    ),
    Scheme(
        "eye",
        identity,
        "pytorch",
        "{gain}·I (2-D); alias of identity",
        keras_equivalent="identity",
    ),
    Scheme(
        "dirac",
        dirac,
        "pytorch",
        "1 at (g·out/groups + d, d, k//2, ...) for d < min(out/groups, in/groups) and each "
        "group g < groups ({groups}), else 0",
        jax_equivalent="delta_orthogonal puts an orthogonal matrix at (k-1)//2 instead",
    ),
    Scheme(
        "delta_orthogonal",
        delta_orthogonal,
        "jax",
        "{gain}·Q of shape (out, in) (Q^T Q = I) at tap (k-1)//2, else 0; needs out >= in",
        pytorch_equivalent="none (dirac_ is its identity-matrix special case, at k//2)",
    ),
    Scheme(
        "sparse",
        sparse,
        "pytorch",
        "N(0, {std}²), then ceil({sparsity}·rows) zeros in each column",
        keras_equivalent="none",
    ),
]
