"""A summary table as people read it: ``0.8412 ± 0.0031``, a flags column (``stuck 6/8``),
grouping values as the ranking labels them. Used by the terminal, ``summary.txt`` and the
HTML report alike (:meth:`initlab.results.ResultSet.summary` makes the numbers)."""

from __future__ import annotations

import pandas as pd

from initlab.ranking.scores import RESOLVED_TASK
from initlab.ranking.stats import display_value


def format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings for display: ``0.8412 ± 0.0031``, a flags column, grouping
    values as the ranking labels them (``128×30`` for 30 layers of 128); a mixed
    set's ``resolved_task`` column as ``task`` (unless a grouping column has that name)."""
    if summary.empty:
        return summary
    shown = summary.copy()
    scores = zip(summary["test_accuracy"], summary["test_accuracy_std"], strict=True)
    shown["test_accuracy"] = [_plus_minus(m, s) for m, s in scores]
    if "test_loss" in summary:
        losses = zip(summary["test_loss"], summary["test_loss_std"], strict=True)
        shown["test_loss"] = [_plus_minus(m, s) for m, s in losses]
        shown["perplexity"] = summary["perplexity"].map(lambda v: f"{v:.4g}")
    shown["final_train_loss"] = summary["final_train_loss"].map(lambda v: f"{v:.4f}")
    shown["epochs_to_90"] = summary["epochs_to_90"].map(lambda v: "never" if v != v else f"{v:g}")
    shown["flags"] = [_flags(r) for _, r in summary.iterrows()]
    done = ["test_accuracy", "test_loss", "perplexity", "final_train_loss", "flags"]
    for column in shown.columns.difference(done):
        if not pd.api.types.is_numeric_dtype(shown[column]):  # 128-128-…-128 as 128×30
            shown[column] = shown[column].map(display_value)
    if RESOLVED_TASK in shown and "task" not in shown:
        shown = shown.rename(columns={RESOLVED_TASK: "task"})
    dropped = ["test_accuracy_std", "test_loss_std", "ci95", "test_loss_ci95"]
    dropped += ["diverged", "stuck", "failed"]
    return shown.drop(columns=dropped, errors="ignore")


def _plus_minus(mean: float, std: float) -> str:
    return f"{mean:.4f}" if std != std else f"{mean:.4f} ± {std:.4f}"


def _flags(row: pd.Series) -> str:
    """``stuck 6/8``; counts as integers even where ``iterrows`` made the row float (every
    column numeric, as when grouping by a numeric model argument alone)."""
    parts = []
    for status in ("diverged", "stuck", "failed"):
        if row[status]:
            parts.append(f"{status} {int(row[status])}/{int(row['runs'])}")
    return ", ".join(parts)
