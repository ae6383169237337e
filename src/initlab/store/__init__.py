"""Results stores: where sweeps keep their runs (SQLite by default) and how to read them.

>>> from initlab.store import open_store
>>> store = open_store("results/depth-vs-init")      # a directory or a .db file
>>> store.runs(), store.epochs(), store.layer_stats()  # pandas DataFrames
>>> store.results(study="depth-vs-init").summary()     # a ResultSet, grouped per the spec

See :mod:`initlab.store.schema` for the tables, :mod:`initlab.store.sqlite` for the
durability guarantees, :mod:`initlab.store.leases` for several processes sharing a store and
:mod:`initlab.store.repair` for salvaging a damaged one.
"""

from __future__ import annotations

import os
from pathlib import Path

from initlab.errors import InitlabError
from initlab.run_status import FINISHED
from initlab.store.damage import DB_NAME, StoreDamagedError
from initlab.store.export import export
from initlab.store.location import StoreLocationError
from initlab.store.paths import store_path, study_dir
from initlab.store.schema import SCHEMA_VERSION
from initlab.store.sqlite import Store


def open_store(path: str | Path, *, create: bool = False) -> Store:
    """Open the results store at ``path`` — a directory holding ``initlab.db``, or the
    ``.db`` file itself; ``":memory:"`` for a throw-away one. With ``create=False`` (the
    default) a missing store is an error; sweeps open theirs with ``create=True``."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InitlabError(
            f"open_store takes a directory or .db file (str or Path), got {type(path).__name__}"
        )
    throwaway = path is None or path == ":memory:"  # nothing to find: made, as documented
    return Store(path, create=create or throwaway)


__all__ = [
    "DB_NAME",
    "FINISHED",
    "SCHEMA_VERSION",
    "Store",
    "StoreDamagedError",
    "StoreLocationError",
    "export",
    "open_store",
    "store_path",
    "study_dir",
]
