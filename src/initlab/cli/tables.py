"""Printing DataFrames as Rich tables (:mod:`initlab.console`, shared with the sweep display)."""

from initlab.console import print_frame

__all__ = ["print_frame"]
