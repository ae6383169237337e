"""Phase-diagram grids and plots."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from initlab.errors import InitlabError, UnknownNameError
from initlab.theory import chi1, phase_grid, plot_phase_diagram


def test_phase_grid_layout_and_values():
    sw = np.array([1.0, 1.5, 2.0, 3.0])
    sb = np.array([0.0, 0.05, 0.2])
    grid = phase_grid("tanh", sw, sb)
    assert grid.shape == (3, 4)  # rows sigma_b2, columns sigma_w2
    assert grid[1, 2] == pytest.approx(chi1("tanh", 2.0, 0.05), rel=1e-12)
    assert np.all(np.diff(grid, axis=1) > 0)  # tanh: chi1 grows with sigma_w2
    np.testing.assert_allclose(phase_grid("relu", sw, sb), np.tile(sw / 2, (3, 1)), rtol=1e-12)


def test_plot_writes_a_png(tmp_path):
    path = plot_phase_diagram(
        "tanh", tmp_path / "sub" / "phase.png", np.linspace(0.5, 4, 15), np.linspace(0, 0.3, 8)
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_on_given_axes_labels_it():
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    assert plot_phase_diagram("relu", ax, np.linspace(1, 3, 9), np.linspace(0, 0.2, 5)) is ax
    assert "sigma_w" in ax.get_xlabel() and "sigma_b" in ax.get_ylabel()
    assert ax.collections  # the colour mesh (and the critical contour)


def test_bad_inputs(tmp_path):
    with pytest.raises(UnknownNameError):
        plot_phase_diagram("nope", tmp_path / "x.png")
    with pytest.raises(InitlabError):
        phase_grid("tanh", np.array([-1.0, 1.0]), np.array([0.0]))
    with pytest.raises(InitlabError):
        phase_grid("tanh", np.array([]), np.array([0.0]))
