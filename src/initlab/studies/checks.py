"""Small helpers the studies share to check their expectations on runs and layer rows."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from initlab.ranking.stats import mean_ci


@dataclass(frozen=True)
class GroupAccuracy:
    """Test accuracy of a group of runs over seeds."""

    mean: float
    std: float
    n: int

    @property
    def se(self) -> float:
        """Standard error of the mean (0 with one run)."""
        return self.std / math.sqrt(self.n) if self.n > 1 and self.std == self.std else 0.0

    def __str__(self) -> str:
        spread = f" ± {self.std:.4f}" if self.n > 1 else ""
        return f"{self.mean:.4f}{spread} (n={self.n})"


def group_accuracy(
    runs: pd.DataFrame, column: str, value: object, metric: str = "test_accuracy"
) -> GroupAccuracy | None:
    """Mean ± std of ``metric`` over the runs whose ``column`` equals ``value``."""
    values = runs.loc[runs[column] == value, metric].dropna()
    if values.empty:
        return None
    mean, std, _ = mean_ci(values.tolist())
    return GroupAccuracy(mean, std, len(values))


def final_layer_metric(
    layer_stats: pd.DataFrame, run_ids: Iterable[str], metric: str
) -> pd.DataFrame:
    """``run_id, layer, value`` of ``metric`` at each run's last tracked step."""
    rows = layer_stats[
        layer_stats["run_id"].isin(list(run_ids)) & (layer_stats["metric"] == metric)
    ]
    if rows.empty:
        return rows[["run_id", "layer", "value"]]
    last = rows.groupby("run_id")["step"].transform("max")
    return rows.loc[rows["step"] == last, ["run_id", "layer", "value"]]


def depth_of(hidden: object) -> int:
    """The number of hidden layers of a run's ``hidden`` column (``"256-256"`` → 2)."""
    if isinstance(hidden, (tuple, list)):
        return len(hidden)
    return len([w for w in str(hidden).split("-") if w.strip()])


def chance_filled(values: pd.Series, chance: float) -> pd.Series:
    """Accuracies with the non-finite ones (a diverged run's NaN) counted as ``chance``:
    a run whose loss became NaN learned nothing usable."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return numbers.where(numbers.map(math.isfinite), chance)


def first_epoch_below(curve: pd.Series, threshold: float) -> float:
    """The first epoch (index of ``curve``) whose value is below ``threshold``; NaN if never."""
    hit = curve[curve < threshold]
    return float(hit.index[0]) if len(hit) else math.nan


def hidden_layer_rows(layer_stats: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of ``metric`` for the hidden layers of initlab MLPs (``blocks.<i>.linear``),
    with their 0-based ``index``; the output layer is left out."""
    rows = layer_stats[
        (layer_stats["metric"] == metric) & layer_stats["layer"].str.startswith("blocks.")
    ].copy()
    rows["index"] = rows["layer"].str.split(".").str[1].astype(int)
    return rows
