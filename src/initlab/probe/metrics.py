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

from initlab import activations

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
"""Two rows are "identical" when their projections differ by at most this × their norm."""
DUPLICATE_MAX_OBSERVATIONS = 8192
"""``act_duplicates`` compares units on at most this many observations (evenly spaced rows of
the ``[observations, units]`` matrix: conv maps of big batches would otherwise be copied 3×)."""
_PROJECTIONS = 4
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


def mean_square(x: Tensor | None) -> float:
    """``mean(x²) = std² + mean²`` over all elements (``inf`` if any value is non-finite)."""
    mean, std = mean_std(x)
    return mean_square_of(mean, std)


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
def _directions(dim: int) -> Tensor:
    """``[dim, 4]`` standard-normal directions from a fixed-seed generator."""
    gen = torch.Generator().manual_seed(_PROJECTION_SEED)
    return torch.randn(dim, _PROJECTIONS, generator=gen)


def duplicate_groups(rows: Tensor, rtol: float = DUPLICATE_RTOL) -> tuple[int, int]:
    """``(units, groups)``: how many rows equal another row, and in how many groups.

    O(n·d + n log n), not O(n²): every row is projected on 4 fixed Gaussian directions
    (a seeded generator; the global RNG is not touched), rows are sorted by the first
    projection, and two neighbours are the same when all 4 projections agree within
    ``rtol`` × the larger of their projection norms. Identical rows always match; distinct
    rows collide with probability ~0. Rows with non-finite values are never counted.
    ``rows``: ``[n, d]``.
    """
    n = rows.shape[0]
    if n < 2:
        return 0, 0
    m = rows.detach().reshape(n, -1).float()
    proj = m @ _directions(m.shape[1]).to(m.device)
    proj = proj[torch.isfinite(proj).all(dim=1)]
    if proj.shape[0] < 2:
        return 0, 0
    ordered = proj[torch.argsort(proj[:, 0])]
    norms = ordered.norm(dim=1)
    tol = rtol * torch.maximum(norms[1:], norms[:-1])
    close = ((ordered[1:] - ordered[:-1]).abs() <= tol[:, None]).all(dim=1)
    dup = torch.zeros(len(ordered), dtype=torch.bool, device=ordered.device)
    dup[1:] |= close
    dup[:-1] |= close
    starts = close.clone()
    starts[1:] &= ~close[:-1]
    return int(dup.sum()), int(starts.sum())


def weight_duplicates(weight: Tensor | None, bias: Tensor | None = None) -> float:
    """Number of units whose incoming weights (row of ``weight`` = ``[units, ...]``, with the
    bias appended) equal another unit's: such units receive identical gradients forever."""
    if weight is None or weight.dim() < 1:
        return math.nan
    rows = weight.detach().reshape(weight.shape[0], -1)
    if bias is not None and bias.numel() == rows.shape[0]:
        rows = torch.cat([rows, bias.detach().reshape(-1, 1)], dim=1)
    return float(duplicate_groups(rows)[0])


def activation_duplicates(post: Tensor | None, unit_dim: int = 1) -> float:
    """Number of units whose activations over the batch equal another unit's.

    Units constant over the batch (dead ReLUs, fully saturated units) are left out: they are
    counted by ``dead_frac``/``saturated_frac`` and carry no information to compare. Each
    unit's values are compared together with their centred version rescaled to the same
    norm, so nearly constant (saturated) units are told apart by their fluctuations. At most
    :data:`DUPLICATE_MAX_OBSERVATIONS` observations (evenly spaced) are compared.
    """
    if post is None or post.numel() == 0:
        return math.nan
    obs = unit_matrix(post.detach(), unit_dim)
    if obs.shape[0] > DUPLICATE_MAX_OBSERVATIONS:  # big conv maps: an evenly spaced subset
        keep = torch.linspace(0, obs.shape[0] - 1, DUPLICATE_MAX_OBSERVATIONS, device=obs.device)
        obs = obs[keep.long()]
    cols = obs.T.float()
    if cols.shape[1] < 2:
        return 0.0
    centred = cols - cols.mean(dim=1, keepdim=True)
    size, spread = cols.norm(dim=1), centred.norm(dim=1)
    varying = spread > DUPLICATE_RTOL * size
    scaled = centred[varying] * (size[varying] / spread[varying])[:, None]
    return float(duplicate_groups(torch.cat([cols[varying], scaled], dim=1))[0])


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
        "act_duplicates": activation_duplicates(post, unit_dim),
    }


def frobenius_norm(x: Tensor | None) -> float:
    """``sqrt(sum(x²))``; ``inf`` if a value is non-finite, NaN for ``None``."""
    if x is None:
        return math.nan
    value = float(torch.linalg.vector_norm(x.detach().float()))
    if not math.isfinite(value):
        value = float(torch.linalg.vector_norm(x.detach().double()))
    return value if math.isfinite(value) else math.inf
