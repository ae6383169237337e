"""Per-layer statistics, as pure functions of tensors (no hooks, no modules, no state).

Every function takes plain tensors and returns Python floats, so any engine — the hook-based
probe (:mod:`initlab.probe.hooks`), a batched trainer that computes activations as outputs,
a user's own loop — gets the same numbers under the same names. The entry point is
:func:`layer_metrics`; :data:`METRICS` lists the names it returns, in a stable order.

Shapes: activations are ``[B, features]`` or ``[B, C, *spatial]``. A *unit* is a feature
(``unit_dim=1``) or a channel of a convolution (its value at every position of every sample
counts as one observation of that unit). Use ``unit_dim=-1`` for ``[B, T, features]``.

Statistics are over every element (population std, ``correction=0``). A tensor holding a
non-finite value (an overflow) has mean NaN and std ``inf``: explosions read as infinitely
large, never as a finite number computed from the values that happened to survive.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

import initlab.activations as activations

METRICS: tuple[str, ...] = (
    "pre_mean",
    "pre_std",
    "pre_msq",
    "post_mean",
    "post_std",
    "saturated_frac",
    "dead_frac",
    "nonfinite_frac",
    "weight_std",
    "bias_mean",
    "bias_std",
    "weight_grad_norm",
    "pre_grad_std",
    "post_grad_std",
    "weight_duplicates",
    "act_duplicates",
)
"""The metric names :func:`layer_metrics` returns (the ``metric`` column of tidy rows).

``pre_*``: the pre-activation z (what enters the activation); ``pre_msq`` = mean(z²), the
quantity mean-field theory calls q. ``post_*``: the activation phi(z). ``saturated_frac``:
fraction of activation values beyond the activation's saturation threshold
(:attr:`initlab.activations.Activation.saturation`: |tanh| > 0.99, sigmoid outside
(0.01, 0.99), |softsign| > 0.9; NaN for activations that cannot saturate). ``dead_frac``:
fraction of units whose activation is exactly 0 for every sample (and every position).
``nonfinite_frac``: fraction of non-finite values in z and phi(z). ``weight_std``,
``bias_mean``, ``bias_std``: the layer's parameters. ``weight_grad_norm``: Frobenius norm
of dL/dW. ``pre_grad_std``, ``post_grad_std``: std of the back-propagated gradients dL/dz
and dL/dphi(z). ``weight_duplicates``: number of units whose incoming weights (and bias)
equal another unit's; ``act_duplicates``: number of non-constant units whose activations
over the batch equal another unit's (see :func:`duplicate_groups`).
"""

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


def unit_matrix(x: Tensor, unit_dim: int = 1) -> Tensor:
    """``x`` as a matrix ``[observations, units]``: units along ``unit_dim``, the rest rows.

    ``[B, F]`` stays as it is; ``[B, C, H, W]`` becomes ``[B·H·W, C]``; ``[B]`` is ``[B, 1]``.
    """
    if x.dim() < 2:
        return x.reshape(-1, 1)
    moved = x.movedim(unit_dim, -1)
    return moved.reshape(-1, moved.shape[-1])


def _std_mean(x: Tensor) -> tuple[float, float]:
    std, mean = torch.std_mean(x, correction=0)
    return float(mean), float(std)


def mean_std(x: Tensor | None) -> tuple[float, float]:
    """``(mean, population std)`` of all elements; ``(nan, inf)`` if any is non-finite,
    ``(nan, nan)`` for ``None`` or an empty tensor. Float32 first, float64 if that overflows."""
    if x is None or x.numel() == 0:
        return math.nan, math.nan
    x = x.detach()
    mean, std = _std_mean(x.float())
    if not (math.isfinite(mean) and math.isfinite(std)):
        mean, std = _std_mean(x.double())
    if not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan, math.inf
    return mean, std


def mean_square_of(mean: float, std: float) -> float:
    """``std² + mean²`` (population moments), ``inf`` for an infinite std."""
    if math.isinf(std):
        return math.inf
    return std * std + mean * mean


def saturated_fraction(post: Tensor | None, activation: str | None) -> float:
    """Fraction of activation values that are saturated under ``activation``'s rule.

    NaN when there is no activation, it is unknown, or it cannot saturate (ReLU, ...).
    """
    if post is None or activation is None or post.numel() == 0:
        return math.nan
    try:
        rule = activations.get(activation).saturation
    except ValueError:
        return math.nan
    if rule is None:
        return math.nan
    return float(rule(post.detach()).double().mean())


def dead_fraction(post: Tensor | None, unit_dim: int = 1) -> float:
    """Fraction of units whose value is exactly 0 for every observation.

    A unit of ``[B, F]`` is a column; of ``[B, C, *spatial]`` a channel, dead when it is 0 at
    every position of every sample.
    """
    if post is None or post.numel() == 0:
        return math.nan
    m = unit_matrix(post.detach(), unit_dim)
    return float((m == 0).all(dim=0).double().mean())


def nonfinite_fraction(*tensors: Tensor | None) -> float:
    """Fraction of non-finite (inf/NaN) values among all elements of ``tensors``."""
    present = [t.detach() for t in tensors if t is not None and t.numel() > 0]
    if not present:
        return math.nan
    if all(math.isfinite(float(t.sum(dtype=torch.float64))) for t in present):
        return 0.0  # one cheap reduction instead of an elementwise test
    bad = sum(int((~torch.isfinite(t)).sum()) for t in present)
    return bad / sum(t.numel() for t in present)


@functools.lru_cache(maxsize=64)
def _direction(dim: int) -> Tensor:
    """A ``[dim]`` standard-normal direction from a fixed-seed generator."""
    gen = torch.Generator().manual_seed(_PROJECTION_SEED)
    return torch.randn(dim, generator=gen)


def _as_float(x: Tensor) -> Tensor:
    """``x`` in its own floating dtype (float32 for integer or boolean tensors)."""
    return x if x.is_floating_point() else x.float()


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
    eps = torch.finfo(_as_float(values).dtype).eps
    scale = max(float(finite.abs().max()), reference)
    return DUPLICATE_ATOL_FACTOR * eps * math.sqrt(max(1, n)) * scale


def _close_neighbours(blocks: list[Tensor], sizes: list[Tensor], rtol: float, atol: float):
    """Sort rows by their projection on a fixed direction; ``close[i]``: rows ``i`` and
    ``i + 1`` of that order pass ``max|a - b| <= rtol · max(size_a, size_b) + atol`` in
    every block (``sizes``: each block's per-row size, e.g. its largest ``|value|``)."""
    joined = torch.cat(blocks, dim=1)
    order = torch.argsort(joined @ _direction(joined.shape[1]).to(joined))
    close = torch.ones(len(order) - 1, dtype=torch.bool, device=joined.device)
    for block, size in zip(blocks, sizes, strict=True):
        rows, size = block[order], size[order]
        diff = (rows[1:] - rows[:-1]).abs().amax(dim=1)
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
    m = _as_float(rows.detach().reshape(n, -1)) if n else rows
    m = m[torch.isfinite(m).all(dim=1)] if n else m
    if m.shape[0] < 2:
        return 0, 0
    tol = duplicate_tolerance(m, terms, reference) if atol is None else atol
    return _count_groups(_close_neighbours([m], [m.abs().amax(dim=1)], rtol, tol))


def weight_duplicates(weight: Tensor | None, bias: Tensor | None = None) -> float:
    """Number of units whose incoming weights (row of ``weight`` = ``[units, ...]``, with the
    bias appended) equal another unit's (:func:`duplicate_groups`): such units receive
    identical gradients forever.

    The absolute floor is measured against ``reference = 1/sqrt(fan_in)`` (the LeCun std,
    the size at which a layer keeps its input's scale), so ``atol = c · eps ·
    max(1, sqrt(fan_in) · max|W|)``: rows that differ by less than float rounding of
    weights of that size are the same. This matters for rows that hold nothing but rounding
    noise — a zero-initialized layer behind a BatchNorm keeps zero weights while its bias,
    whose gradient the normalization cancels, collects ~1e-6 of noise that differs from CPU
    to CPU: every such row is a duplicate of every other, on any CPU."""
    if weight is None or weight.dim() < 1:
        return math.nan
    rows = weight.detach().reshape(weight.shape[0], -1)
    if bias is not None and bias.numel() == rows.shape[0]:
        rows = torch.cat([rows, bias.detach().reshape(-1, 1).to(rows.dtype)], dim=1)
    fan_in = max(1, weight[0].numel()) if weight.dim() > 1 else 1
    return float(duplicate_groups(rows, terms=fan_in, reference=fan_in**-0.5)[0])


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
    obs = unit_matrix(post.detach(), unit_dim)
    if obs.shape[0] > DUPLICATE_MAX_OBSERVATIONS:  # big conv maps: an evenly spaced subset
        keep = torch.linspace(0, obs.shape[0] - 1, DUPLICATE_MAX_OBSERVATIONS, device=obs.device)
        obs = obs[keep.long()]
    cols = _as_float(obs.T)
    cols = cols[torch.isfinite(cols).all(dim=1)]
    if cols.shape[1] < 2 or cols.shape[0] < 2:
        return 0.0
    atol = duplicate_tolerance(cols, cols.shape[0] if fan_in is None else fan_in)
    centred = cols - cols.mean(dim=1, keepdim=True)
    size, spread = cols.abs().amax(dim=1), centred.abs().amax(dim=1)
    varying = spread > DUPLICATE_RTOL * size + atol
    median = cols.median(dim=1, keepdim=True).values  # a ReLU's 0, even when alive once
    varying &= ((cols - median).abs() > atol).sum(dim=1) >= DUPLICATE_MIN_DISTINCT
    if int(varying.sum()) < 2:
        return 0.0
    blocks = [cols[varying], centred[varying]]
    close = _close_neighbours(blocks, [size[varying], spread[varying]], DUPLICATE_RTOL, atol)
    return float(_count_groups(close)[0])


def layer_metrics(
    pre: Tensor | None,
    post: Tensor | None = None,
    activation: str | None = None,
    weight: Tensor | None = None,
    weight_grad: Tensor | None = None,
    post_grad: Tensor | None = None,
    *,
    pre_grad: Tensor | None = None,
    bias: Tensor | None = None,
    unit_dim: int = 1,
) -> dict[str, float]:
    """Every statistic of :data:`METRICS` for one layer, over one batch.

    ``pre``: the pre-activation z ``[B, features]`` or ``[B, C, *spatial]``; ``post``: the
    activation phi(z) (``None`` for an output layer); ``activation``: its registry name (for
    the saturation rule); ``weight``: ``[units, ...]``, one row per output unit (transpose a
    ConvTranspose weight first) and ``bias``; ``weight_grad``: dL/dW; ``pre_grad``,
    ``post_grad``: dL/dz and dL/dphi(z). Missing inputs give NaN for the metrics needing them.
    """
    pre_mean, pre_std = mean_std(pre)
    post_mean, post_std = mean_std(post)
    bias_mean, bias_std = mean_std(bias)
    finite = not (math.isinf(pre_std) or math.isinf(post_std))
    return {
        "pre_mean": pre_mean,
        "pre_std": pre_std,
        "pre_msq": mean_square_of(pre_mean, pre_std),
        "post_mean": post_mean,
        "post_std": post_std,
        "saturated_frac": saturated_fraction(post, activation),
        "dead_frac": dead_fraction(post, unit_dim),
        "nonfinite_frac": 0.0 if finite and pre is not None else nonfinite_fraction(pre, post),
        "weight_std": mean_std(weight)[1],
        "bias_mean": bias_mean,
        "bias_std": bias_std,
        "weight_grad_norm": frobenius_norm(weight_grad),
        "pre_grad_std": mean_std(pre_grad)[1],
        "post_grad_std": mean_std(post_grad)[1],
        "weight_duplicates": weight_duplicates(weight, bias),
        "act_duplicates": activation_duplicates(post, unit_dim, _fan_in(weight)),
    }


def _fan_in(weight: Tensor | None) -> int | None:
    """The length of one row of ``[units, ...]`` weights: the fan-in of the layer."""
    return None if weight is None or weight.dim() < 1 or not weight.shape[0] else weight[0].numel()


def frobenius_norm(x: Tensor | None) -> float:
    """``sqrt(sum(x²))``; ``inf`` if a value is non-finite, NaN for ``None``."""
    if x is None:
        return math.nan
    value = float(torch.linalg.vector_norm(x.detach().float()))
    if not math.isfinite(value):
        value = float(torch.linalg.vector_norm(x.detach().double()))
    return value if math.isfinite(value) else math.inf
