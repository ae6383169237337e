"""Gains and mean-field signal-propagation theory (pure math on floats and numpy arrays).

* :mod:`~initlab.theory.gaussian` — Gaussian expectations of non-smooth activations;
* :mod:`~initlab.theory.gains` — :func:`gain` (PyTorch / numeric / auto), :func:`gain_table`;
* :mod:`~initlab.theory.meanfield` — length map, ``q*``, ``chi1``, edge of chaos (and whether
  chi1 crosses 1 there or jumps across it: :func:`edge_of_chaos`), finite-depth variances;
* :mod:`~initlab.theory.correlation` — correlation map, ``chi_c``, ``c*``;
* :mod:`~initlab.theory.scales` — depth scales ``xi_q``, ``xi_c``, ``xi_grad``, the gradients'
  factor over depth, phases, the trainable depth, :func:`analyze`;
* :mod:`~initlab.theory.phase` — phase-diagram grids and plots.

See ``docs/theory.md`` for the formulas.
"""

from initlab.theory.correlation import chi_c, correlation_map, fixed_point_c
from initlab.theory.gains import (
    critical_gain,
    gain,
    gain_table,
    numeric_gain,
    prescribed_gain,
    pytorch_gain,
)
from initlab.theory.gaussian import gaussian_expectation, gaussian_expectation_2d
from initlab.theory.meanfield import (
    Edge,
    chi1,
    critical_sigma_w2,
    edge_of_chaos,
    fixed_point_q,
    length_map,
    predicted_variances,
    second_moment,
)
from initlab.theory.phase import phase_grid, plot_phase_diagram
from initlab.theory.scales import (
    analyze,
    gradient_factor,
    gradient_scale,
    length_map_slope,
    max_trainable_depth,
    phase,
    xi_c,
    xi_grad,
    xi_q,
)

__all__ = [
    "Edge",
    "analyze",
    "chi1",
    "chi_c",
    "correlation_map",
    "critical_gain",
    "critical_sigma_w2",
    "edge_of_chaos",
    "fixed_point_c",
    "fixed_point_q",
    "gain",
    "gain_table",
    "gaussian_expectation",
    "gaussian_expectation_2d",
    "gradient_factor",
    "gradient_scale",
    "length_map",
    "length_map_slope",
    "max_trainable_depth",
    "numeric_gain",
    "phase",
    "phase_grid",
    "plot_phase_diagram",
    "predicted_variances",
    "prescribed_gain",
    "pytorch_gain",
    "second_moment",
    "xi_c",
    "xi_grad",
    "xi_q",
]
