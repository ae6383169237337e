"""Dataset names, aliases and dispatch: :func:`load`, :func:`names`, :func:`info`,
:func:`availability`.

Names are case-, space-, ``-``- and ``_``-insensitive (``fashion_mnist``, ``FashionMNIST`` and
``fashion-mnist`` are the same dataset); unknown names raise :class:`UnknownNameError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from initlab.data import digits, mnist, mnist1d, synthetic
from initlab.data.dataset import Dataset, check_count
from initlab.errors import InitlabError, UnknownNameError


@dataclass(frozen=True)
class Entry:
    """How to load one dataset, describe it and say where it would come from."""

    name: str
    load: Callable[..., Dataset]
    info: Callable[[], dict]
    availability: Callable[[str | Path | None], str]


def _idx_entry(name: str) -> Entry:
    """An entry for an IDX source, looked up in :data:`mnist.SOURCES` at call time."""
    return Entry(
        name,
        lambda **kw: mnist.load(mnist.SOURCES[name], **kw),
        lambda: mnist.info(mnist.SOURCES[name]),
        lambda data_dir=None: mnist.availability(mnist.SOURCES[name], data_dir),
    )


_ENTRIES: dict[str, Entry] = {
    "fashion-mnist": _idx_entry("fashion-mnist"),
    "mnist": _idx_entry("mnist"),
    "digits": Entry("digits", digits.load, digits.info, digits.availability),
    "mnist1d": Entry("mnist1d", mnist1d.load, mnist1d.info, mnist1d.availability),
    "synthetic": Entry("synthetic", synthetic.load, synthetic.info, synthetic.availability),
}
#: Extra spellings (after normalisation) -> canonical name.
_ALIASES = {"fmnist": "fashion-mnist", "sklearndigits": "digits", "teacher": "synthetic"}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).lower())


def canonical_name(name: str) -> str:
    """The canonical spelling of a dataset name; :class:`UnknownNameError` if there is none."""
    keys = {_key(n): n for n in _ENTRIES}
    key = _key(name)
    if key in keys:
        return keys[key]
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownNameError("dataset", str(name), names())


def names() -> list[str]:
    """Canonical names of the available datasets."""
    return list(_ENTRIES)


def info(name: str) -> dict:
    """Description, default split sizes, input shape, classes, split rule, URL and citation."""
    return _ENTRIES[canonical_name(name)].info()


def availability(name: str, data_dir: str | Path | None = None) -> str:
    """Where ``name`` would come from, e.g. ``"local: /usr/share/datasets/fashion-mnist"``,
    ``"will download (11 MB) into ..."``, ``"generated offline"`` or ``"bundled with
    scikit-learn"``. Never downloads anything."""
    return _ENTRIES[canonical_name(name)].availability(data_dir)


def load(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    limit_train: int | None = None,
) -> Dataset:
    """Load dataset ``name`` with an explicit train / validation / test split.

    Args:
        name: one of :func:`names` (any case; ``-``/``_`` optional).
        data_dir: a directory holding the dataset's files (directly or in ``<name>/``),
            searched before ``$INITLAB_DATA``, the cache and ``/usr/share/datasets``.
        val_size: number of validation examples (default per dataset, see :func:`info`).
        seed: seeds the split where there is no official one (and the synthetic task).
        download: allow downloading MNIST / Fashion-MNIST into the cache if not found.
        limit_train: keep only the first ``limit_train`` training examples (all if fewer).

    The returned tensors may be shared with an in-process cache: do not modify them in place.
    """
    entry = _ENTRIES[canonical_name(name)]
    if val_size is not None:
        val_size = check_count("val_size", val_size)
    seed = check_count("seed", seed)
    if limit_train is not None:
        limit_train = check_count("limit_train", limit_train, minimum=1)
    if not isinstance(download, bool):
        raise InitlabError(f"download must be True or False, got {download!r}")
    return entry.load(
        data_dir=data_dir, val_size=val_size, seed=seed, download=download, limit_train=limit_train
    )
