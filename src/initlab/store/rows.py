"""One finished run as the rows the store writes: its ``runs`` row, its epochs and its layer
statistics. Pure conversions, no database: a setting the run's model does not have is stored
empty (``NULL``), not as the built-in MLP's default, and a value that is not a number is
``NULL``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from initlab.config import SAME, unused_in_run
from initlab.store.schema import EPOCH_METRICS, RESULT_COLUMNS, config_columns
from initlab.store.versions import user_specs
from initlab.usercode.specs import source_fingerprint

if TYPE_CHECKING:
    from initlab.sweep.engine import Outcome


def now_iso(timestamp: float | None = None) -> str:
    """ISO-8601 UTC, to the millisecond: ``2025-01-31T12:00:00.123+00:00``."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc) if timestamp else None
    return (moment or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")


def _real(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_row(outcome: Outcome) -> dict[str, Any]:
    result, config = outcome.result, outcome.result.config
    run_id = outcome.run_id or config.key()  # the key of the file version it trained
    row: dict[str, Any] = {"run_id": run_id, "config": json.dumps(config.to_dict())}
    unused = unused_in_run(config)
    for name, _ in config_columns():
        value = getattr(config, name)
        if name in unused:  # not applied to this run: empty, not the defaults it never used
            value = None
        elif name == "output_init" and value is None:  # said, not empty: not the same as unused
            value = SAME
        elif name == "hidden":
            value = "-".join(map(str, value))
        elif name in ("extra", "model_args"):
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, bool):
            value = int(value)
        row[name] = value
    summary = result.summary_row()
    for name, _ in RESULT_COLUMNS:
        row[name] = summary.get(name)
    row.update(
        wall_seconds=outcome.finished_at - outcome.started_at,
        engine=outcome.engine,
        host=outcome.env.get("host"),
        initlab_version=outcome.env.get("initlab"),
        torch_version=outcome.env.get("torch"),
        python_version=outcome.env.get("python"),
        blas=outcome.env.get("blas"),
        started_at=now_iso(outcome.started_at),
        finished_at=now_iso(outcome.finished_at),
    )
    sources = user_sources(config.to_dict())
    row["sources"] = json.dumps(sources, sort_keys=True) if sources else None
    return row


def user_sources(fields: dict[str, Any]) -> dict[str, str]:
    """``{spec: fingerprint}`` of a run's user model and data specs (empty for built-ins):
    what :mod:`initlab.store.versions` compares to name the file that changed since."""
    return {spec: source_fingerprint(spec) for spec in user_specs(fields)}


def layer_row(run_id: str, stat: dict[str, Any]) -> tuple:
    keys = ("epoch", "step", "layer", "metric")
    return (run_id, *(stat.get(k) for k in keys), _real(stat.get("value")))


def epoch_row(run_id: str, record: dict[str, Any]) -> tuple:
    more = {k: v for k, v in record.items() if k != "epoch" and k not in EPOCH_METRICS}
    values = tuple(_real(record.get(m)) for m in EPOCH_METRICS)
    return (run_id, int(record["epoch"]), *values, json.dumps(more) if more else None)
