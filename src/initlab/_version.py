"""initlab's version (kept apart so that modules need not import the package root for it)."""

__version__ = "0.1.0"
