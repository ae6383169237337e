"""Plots and reports.

:func:`build_report` writes a self-contained ``report.html`` and a ``report.md`` (with its
PNGs) from a :class:`~initlab.results.ResultSet`; :func:`plot_curves` draws learning curves.
See ``docs/report.md`` for what each section shows.
"""

from initlab.curves import curves_figure, plot_curves
from initlab.report.build import ReportPaths, assemble_report, build_report

__all__ = ["ReportPaths", "assemble_report", "build_report", "curves_figure", "plot_curves"]
