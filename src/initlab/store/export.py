"""Exporting a results store's tables to CSV or Parquet files."""

from __future__ import annotations

from pathlib import Path

from initlab.errors import InitlabError, UnknownNameError
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
        raise InitlabError(f"--out must be a directory for the exported tables, got file {out}")
    check_writable(out / "runs.csv", "the exported tables")
    frames = {
        "runs": store.runs(study),
        "epochs": store.epochs(study),
        "layer_stats": store.layer_stats(study),
        "studies": store.studies(),
    }
    paths = []
    for name, frame in frames.items():
        path = out / f"{name}.{fmt}"
        try:
            if fmt == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
        except OSError as exc:  # the disk filled up while writing
            raise location_error(path, exc, "the exported tables") from None
        paths.append(path)
    return paths
