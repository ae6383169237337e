"""Duplicate units: rows of weights, or units' activations over a batch, equal up to rounding.

The two symmetry metrics of :mod:`initlab.probe.metrics` (``weight_duplicates``,
``act_duplicates``; both re-exported there) and the test they share,
:func:`duplicate_groups`. Everything is a pure function of tensors.

Cost: each is a few passes over an ``[units, d]`` matrix (``d`` = fan-in, or at most
:data:`DUPLICATE_MAX_OBSERVATIONS` observations) plus a sort of the units, never a pass over
a whole activation map: the observations :func:`activation_duplicates` compares are gathered
straight from the map, and a unit's median (a sort of its row) is only computed where a
cheaper order statistic cannot already decide the :data:`DUPLICATE_MIN_DISTINCT` rule.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

DUPLICATE_RTOL = 1e-5
"""Relative part of the duplicate test: ``rtol`` × the larger of the two rows' largest
``|value|`` (about 80 float32 ulps: far above the rounding of one float32 operation)."""
DUPLICATE_ATOL_FACTOR = 50.0
"""``c`` in the absolute floor ``atol = c · eps(dtype) · sqrt(n) · scale`` (see
:func:`duplicate_tolerance`)."""
DUPLICATE_MIN_DISTINCT = 3
"""``act_duplicates`` compares a unit only when at least this many of its observations stand
out from its median by more than the absolute floor: a ReLU unit alive on one or two samples
of the batch is a row of one or two values, and two such rows at the same sample coincide
within the floor by chance (a birthday problem: a 50-layer He net had two at layer 34)."""
DUPLICATE_MAX_OBSERVATIONS = 8192
"""``act_duplicates`` compares units on at most this many observations (evenly spaced rows of
the ``[observations, units]`` matrix: conv maps of big batches would otherwise be copied 3×)."""
_PROJECTION_SEED = 0
_SURE_MARGIN = 2.5
""":func:`_compared` accepts a unit without its median when its ``k``-th largest and
``k``-th smallest observations are more than ``_SURE_MARGIN · atol`` apart (``2 · atol``
suffices exactly; the rest absorbs the rounding of the differences)."""


@functools.lru_cache(maxsize=64)
def _direction(dim: int) -> Tensor:
    """A ``[dim]`` standard-normal direction from a fixed-seed generator."""
    gen = torch.Generator().manual_seed(_PROJECTION_SEED)
    return torch.randn(dim, generator=gen)


def _as_float(x: Tensor) -> Tensor:
    """``x`` in its own floating dtype (float32 for integer or boolean tensors)."""
    return x if x.is_floating_point() else x.float()


def _floor(scale: float, terms: int, dtype: torch.dtype) -> float:
    """``c · eps(dtype) · sqrt(max(1, terms)) · scale`` (:func:`duplicate_tolerance`)."""
    eps = torch.finfo(dtype).eps
    return DUPLICATE_ATOL_FACTOR * eps * math.sqrt(max(1, terms)) * scale


def duplicate_tolerance(values: Tensor, terms: int | None = None, reference: float = 0.0) -> float:
    """The absolute floor ``atol = c · eps · sqrt(n) · scale`` of the duplicate test.

    Two rows computed by the same formula in a different summation order (another CPU's
    SIMD width, a batched kernel, another thread count) differ by rounding only. A sum of
    ``n`` terms of magnitude at most ``s``, computed in floating point, is off by at most
    ``n · eps · s`` and — the rounding errors having random signs — typically by
    ``sqrt(n) · eps · s`` (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2).
    Values near 0 have no relative precision at all: a weight row that only ever received
    rounding noise (a zero-initialized unit behind a normalization) holds ``~1e-7 · scale``
    on one CPU and a different ``~1e-7 · scale`` on the next, so a purely relative test
    calls such rows identical on one machine and different on another. Hence the floor,
    with ``eps`` the machine epsilon of ``values.dtype`` (float32: 1.19e-7), ``n`` =
    ``terms``, the length of the reductions that produced the values (the fan-in; default:
    the row length), ``scale`` the larger of the largest finite ``|value|`` of the whole
    matrix and ``reference``, the size values of this kind have when they mean something
    (weights: ``1/sqrt(fan_in)``, see :func:`weight_duplicates`), and ``c`` =
    :data:`DUPLICATE_ATOL_FACTOR` = 50 for the random walk's tail (4 σ) and reductions run
    in stages (blocked matrix products, accumulated updates).
    """
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return 0.0
    n = values.shape[-1] if terms is None else terms
    scale = max(float(finite.abs().max()), reference)
    return _floor(scale, n, _as_float(values).dtype)


def _close_neighbours(blocks: list[Tensor], sizes: list[Tensor], rtol: float, atol: float):
    """Sort rows by their projection on a fixed direction; ``close[i]``: rows ``i`` and
    ``i + 1`` of that order pass ``max|a - b| <= rtol · max(size_a, size_b) + atol`` in
    every block (``sizes``: each block's per-row size, e.g. its largest ``|value|``)."""
    joined = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
    order = torch.argsort(joined @ _direction(joined.shape[1]).to(joined))
    close = torch.ones(len(order) - 1, dtype=torch.bool, device=joined.device)
    for block, size in zip(blocks, sizes, strict=True):
        rows, size = block[order], size[order]
        diff = (rows[1:] - rows[:-1]).abs_().amax(dim=1)
        close &= diff <= rtol * torch.maximum(size[1:], size[:-1]) + atol
    return close


def _count_groups(close: Tensor) -> tuple[int, int]:
    """``(rows in a run of neighbouring matches, number of runs)``."""
    dup = torch.zeros(len(close) + 1, dtype=torch.bool, device=close.device)
    dup[1:] |= close
    dup[:-1] |= close
    starts = close.clone()
    starts[1:] &= ~close[:-1]
    return int(dup.sum()), int(starts.sum())


def _finite_rows(m: Tensor) -> tuple[Tensor, Tensor]:
    """``m`` without its rows holding a non-finite value, and those rows' largest ``|value|``
    (``max|row|`` is inf or NaN exactly when the row holds an inf or a NaN)."""
    size = m.abs().amax(dim=1)
    finite = torch.isfinite(size)
    if bool(finite.all()):
        return m, size
    return m[finite], size[finite]


def duplicate_groups(
    rows: Tensor,
    rtol: float = DUPLICATE_RTOL,
    atol: float | None = None,
    *,
    terms: int | None = None,
    reference: float = 0.0,
) -> tuple[int, int]:
    """``(units, groups)``: how many rows equal another row, and in how many groups.

    Rows ``a`` and ``b`` are the same when ``max|a - b| <= rtol · max(max|a|, max|b|) + atol``
    (``atol``: :func:`duplicate_tolerance` with ``terms`` and ``reference`` unless given). So
    exactly equal rows (a zero init) and rows equal up to summation order (relative
    differences ~1e-7, or rounding noise near 0) are the same on every CPU, while independent
    random rows of ``d`` values with std σ coincide with probability about ``(tol/σ)^d``
    per pair — never, for ``d >= 2`` (rows of one value are a birthday problem).

    O(n·d + n log n), not O(n²): rows are sorted by their projection on one fixed Gaussian
    direction (a seeded generator; the global RNG is not touched) and each is tested against
    its neighbour in that order; rows within the tolerance have projections within
    ``sqrt(d) · tol · |g|`` of each other, so they are neighbours unless an unrelated row's
    projection falls into that gap (probability ~0). A group is a run of neighbouring
    matches. Rows with non-finite values are never counted. ``rows``: ``[n, d]``, compared
    in their own floating dtype.
    """
    n = rows.shape[0]
    if n < 2:
        return 0, 0
    m, size = _finite_rows(_as_float(rows.detach().reshape(n, -1)))
    if m.shape[0] < 2:
        return 0, 0
    if atol is None:
        scale = max(float(size.max()), reference)
        atol = _floor(scale, m.shape[1] if terms is None else terms, m.dtype)
    return _count_groups(_close_neighbours([m], [size], rtol, atol))


def weight_duplicates(weight: Tensor | None, bias: Tensor | None = None, groups: int = 1) -> float:
    """Number of units whose incoming weights (row of ``weight`` = ``[units, ...]``, with the
    bias appended) equal another unit's of the same group (:func:`duplicate_groups`): such
    units receive identical gradients forever. ``groups``: a grouped convolution's, whose
    units read disjoint input channels per group, so equal rows in different groups (every
    channel of a depthwise convolution drawn the same 3×3 filter, or delta-orthogonal's
    ±1 centre tap) are different units, not copies.

    The absolute floor is measured against ``reference = 1/sqrt(fan_in)`` (the LeCun std,
    the size at which a layer keeps its input's scale), so ``atol = c · eps ·
    max(1, sqrt(fan_in) · max|W|)``: rows that differ by less than float rounding of
    weights of that size are the same. This matters for rows that hold nothing but rounding
    noise — a zero-initialized layer behind a BatchNorm keeps zero weights while its bias,
    whose gradient the normalization cancels, collects ~1e-6 of noise that differs from CPU
    to CPU: every such row is a duplicate of every other, on any CPU."""
    if weight is None or weight.dim() < 1 or weight.numel() == 0:  # no unit (width 0)
        return math.nan
    rows = weight.detach().reshape(weight.shape[0], -1)
    if bias is not None and bias.numel() == rows.shape[0]:
        rows = torch.cat([rows, bias.detach().reshape(-1, 1).to(rows.dtype)], dim=1)
    fan_in = max(1, weight[0].numel()) if weight.dim() > 1 else 1
    if groups < 1 or rows.shape[0] % groups:
        groups = 1  # not a grouping of these rows: compare them all
    blocks = rows.unflatten(0, (groups, -1))
    return float(sum(duplicate_groups(b, terms=fan_in, reference=fan_in**-0.5)[0] for b in blocks))


def _sampled_units(x: Tensor, unit_dim: int) -> Tensor:
    """``unit_matrix(x, unit_dim).T`` as a contiguous floating ``[units, observations]``
    matrix, on at most :data:`DUPLICATE_MAX_OBSERVATIONS` evenly spaced observations that
    are gathered straight from ``x`` (the whole map is never copied)."""
    units = x.reshape(1, -1) if x.dim() < 2 else x.movedim(unit_dim, 0)
    lead = units.shape[1:]
    n = math.prod(lead)
    if n > DUPLICATE_MAX_OBSERVATIONS:  # big conv maps: an evenly spaced subset
        keep = torch.linspace(0, n - 1, DUPLICATE_MAX_OBSERVATIONS, device=x.device).long()
        picked = units[(slice(None), *torch.unravel_index(keep, lead))]
    else:
        picked = units.reshape(units.shape[0], n)
    return _as_float(picked).contiguous()


def _compared(cols: Tensor, varying: Tensor, atol: float) -> Tensor:
    """``varying`` and: at least :data:`DUPLICATE_MIN_DISTINCT` (``k``) observations of the
    unit lie farther than ``atol`` from its median.

    With ``a`` a row sorted, at most ``k - 1`` far observations put ``a[k-1]`` and
    ``a[n-k]`` within ``atol`` of the median, so ``a[n-k] - a[k-1] <= 2 · atol``: a unit
    whose ``k``-th largest and ``k``-th smallest are farther apart passes for sure (two
    top-``k`` passes). The median itself is computed only for the remaining varying units.
    """
    k = DUPLICATE_MIN_DISTINCT
    if cols.shape[1] >= k:
        high = cols.topk(k, dim=1).values[:, -1]
        low = cols.topk(k, dim=1, largest=False).values[:, -1]
        unsure = (varying & ~(high - low > _SURE_MARGIN * atol)).nonzero().squeeze(1)
    else:
        unsure = varying.nonzero().squeeze(1)
    if not len(unsure):
        return varying
    rows = cols[unsure]
    median = rows.median(dim=1, keepdim=True).values  # a ReLU's 0, even when alive once
    enough = ((rows - median).abs() > atol).sum(dim=1) >= k
    varying = varying.clone()
    varying[unsure[~enough]] = False
    return varying


def activation_duplicates(
    post: Tensor | None, unit_dim: int = 1, fan_in: int | None = None
) -> float:
    """Number of units whose activations over the batch equal another unit's.

    Units constant over the batch up to rounding (dead ReLUs, fully saturated units) are
    left out: they are counted by ``dead_frac``/``saturated_frac`` and carry no information
    to compare; so are units with fewer than :data:`DUPLICATE_MIN_DISTINCT` observations away
    from their median by more than the floor (alive on one or two samples). Two units are the
    same when both their values and their centred values (value − the unit's mean) pass the
    test of :func:`duplicate_groups`, the centred ones
    relative to their own spread — so nearly constant (saturated) units are told apart by
    their fluctuations wherever those exceed rounding. The absolute floor is
    :func:`duplicate_tolerance` with ``terms`` = ``fan_in``, the length of the dot products
    that produced the values (default: the number of units). At most
    :data:`DUPLICATE_MAX_OBSERVATIONS` observations (evenly spaced) are compared.
    """
    if post is None or post.numel() == 0:
        return math.nan
    cols, size = _finite_rows(_sampled_units(post.detach(), unit_dim))
    if cols.shape[1] < 2 or cols.shape[0] < 2:
        return 0.0
    terms = cols.shape[0] if fan_in is None else fan_in
    atol = _floor(float(size.max()), terms, cols.dtype)
    centred = cols - cols.mean(dim=1, keepdim=True)
    spread = centred.abs().amax(dim=1)
    varying = _compared(cols, spread > DUPLICATE_RTOL * size + atol, atol)
    count = int(varying.sum())
    if count < 2:
        return 0.0
    if count < len(varying):
        cols, centred, size, spread = (t[varying] for t in (cols, centred, size, spread))
    close = _close_neighbours([cols, centred], [size, spread], DUPLICATE_RTOL, atol)
    return float(_count_groups(close)[0])
