"""Exporting a results store's tables to CSV or Parquet files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from initlab.atomic_files import failed_file, write_files
from initlab.errors import InitlabError, UnknownNameError, option
from initlab.store.location import check_writable, location_error
from initlab.store.sqlite import Store

FORMATS = ("csv", "parquet")
TABLES = ("runs", "epochs", "layer_stats", "studies")


def export(store: Store, fmt: str, out_dir: str | Path, study: str | None = None) -> list[Path]:
    """Write ``runs``, ``epochs``, ``layer_stats`` (with ``study``: that study's runs only)
    and ``studies`` as ``out_dir/<table>.<fmt>``; returns the paths written.

    Parquet needs pyarrow (``pip install 'initlab[parquet]'``).
    """
    if fmt not in FORMATS:
        raise UnknownNameError("export format", fmt, FORMATS)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InitlabError(
                "parquet export needs pyarrow: pip install 'initlab[parquet]'"
            ) from None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InitlabError(
            f"{option('--out', 'out_dir')} must be a directory for the exported tables, got "
            f"file {out}"
        )
    check_writable(out / "runs.csv", "the exported tables")
    _refuse_compare_tables(out, fmt)
    frames = {
        "runs": store.runs(study),
        "epochs": store.epochs(study),
        "layer_stats": store.layer_stats(study),
        "studies": store.studies(),
    }
    writers = {f"{name}.{fmt}": _table_writer(frame, fmt) for name, frame in frames.items()}
    try:
        return write_files(out, writers)
    except OSError as exc:  # the disk filled up while writing: no table left half-written
        raise location_error(failed_file(exc) or out, exc, "the exported tables") from None


def _refuse_compare_tables(out: Path, fmt: str) -> None:
    """One line when ``out`` holds the tables ``compare``/``sweep`` wrote (``summary.csv``
    beside an ``epochs.csv`` or ``layer_stats.csv``): the export's tables of those names
    have other columns (one row per run and epoch, no ``init`` or ``seed``), and replacing
    them silently changed what a script or ``initlab report DIR`` read there."""
    if fmt != "csv" or not (out / "summary.csv").is_file():
        return
    taken = [n for n in ("epochs.csv", "layer_stats.csv") if (out / n).is_file()]
    if taken:
        raise InitlabError(
            f"{out} holds the tables compare wrote ({', '.join(taken)}, summary.csv), which "
            f"the export's {' and '.join(taken)} (other columns) would replace: export into "
            f"another directory (e.g. {option('--out', 'out_dir')} {out / 'export'})"
        )


def _table_writer(frame: pd.DataFrame, fmt: str):
    """A writer of ``frame`` as ``fmt`` for :func:`~initlab.atomic_files.write_files`."""
    if fmt == "csv":
        return lambda path: frame.to_csv(path, index=False)
    return lambda path: frame.to_parquet(path, index=False)
