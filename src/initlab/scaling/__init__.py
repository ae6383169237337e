"""Width and depth scaling: base shapes, SP / NTK / muP, coordinate checks with verdicts.

* :mod:`~initlab.scaling.shapes` — which parameter dimensions grow with ``width`` (as
  ``mup``'s base shapes), and each parameter's kind (input, hidden, output, vector, fixed);
* :mod:`~initlab.scaling.parametrize` — SP, NTK and muP (and ``default``, the model as
  built) for any factory: :func:`parametrize` returns ``(model, param_groups)``;
* :mod:`~initlab.scaling.rescale` — how a parametrization rescales the factory's init, noted;
* :mod:`~initlab.scaling.coords` — the coordinate table over widths, seeds and steps;
* :mod:`~initlab.scaling.fits` — one slope's CI from each width's seed noise, Holm over many;
* :mod:`~initlab.scaling.verdicts` — slopes against log(width) with CIs, flagged in words;
* :mod:`~initlab.scaling.roles` — which layer is which across depths, for the depth fits;
* :mod:`~initlab.scaling.plots` — the coordinate-check figure;
* :mod:`~initlab.scaling.check` — all of it: :func:`coord_check`.

See docs/scaling.md.
"""

from initlab.scaling.check import ScalingResult, coord_check
from initlab.scaling.parametrize import PARAMETRIZATIONS, parametrize, parametrized
from initlab.scaling.shapes import KINDS, infer_shapes

__all__ = [
    "KINDS",
    "PARAMETRIZATIONS",
    "ScalingResult",
    "coord_check",
    "infer_shapes",
    "parametrize",
    "parametrized",
]
