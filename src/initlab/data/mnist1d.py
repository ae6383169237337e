"""MNIST-1D (Greydanus 2020), generated offline with the ``mnist1d`` package.

The data are made by ``mnist1d.data.make_dataset`` with the package's default arguments
(5,000 sequences of length 40, its own fixed seed 42, 80/20 train/test: 4,000 / 1,000) — the
canonical dataset, identical whatever ``seed`` initlab is given. ``make_dataset`` reseeds the
*global* ``random`` and ``numpy.random`` generators; initlab saves and restores both, so
loading leaves global RNG state untouched. Generating takes a second or two, so the arrays are
cached in-process and in ``<cache>/mnist1d/mnist1d-<hash of the arguments>.npz``.

Split: the 1,000 official test sequences; validation = ``val_size`` (default 500) sequences
drawn from the 4,000 training ones by a class-stratified permutation from
``numpy.random.default_rng(seed)``; the rest (3,500) train. Input shape (1, 40), values as
generated (globally standardised to mean 0, std 1).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from initlab.atomic_files import write_file
from initlab.data import locate
from initlab.data.dataset import (
    Dataset,
    after_validation,
    assemble,
    check_val_size,
    stratified_order,
    take,
)
from initlab.errors import InitlabError
from initlab.global_state import preserved_globals

NAME = "mnist1d"
DEFAULT_VAL = 500
CLASSES = tuple(str(d) for d in range(10))
_KEYS = ("x", "y", "x_test", "y_test")


def generator_args() -> dict:
    """mnist1d's default ``make_dataset`` arguments (without the download URL)."""
    try:
        with preserved_globals():
            from mnist1d.data import get_dataset_args
    except ImportError as err:  # pragma: no cover - mnist1d is a dependency
        raise InitlabError(
            "the mnist1d dataset needs the mnist1d package: pip install mnist1d"
        ) from err
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    return args


def cache_path(args: dict) -> Path:
    """Where the generated arrays for ``args`` are cached on disk."""
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    return locate.cache_dir(NAME) / f"mnist1d-{key}.npz"


def _generate(args: dict) -> dict[str, np.ndarray]:
    """Run mnist1d's generator without leaking changes to the global RNGs."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    with preserved_globals():
        data = make_dataset(ObjectView(dict(args)))
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _read_cache(path: Path, args: dict) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if missing or unusable (then they are regenerated)."""
    try:
        with np.load(path) as npz:
            data = {k: npz[k] for k in _KEYS}
    except (OSError, KeyError, ValueError):
        return None
    n_train = int(args["num_samples"] * args["train_split"])
    length = args["final_seq_length"]
    if data["x"].shape != (n_train, length) or len(data["y"]) != n_train:
        return None
    return data


def _write_cache(path: Path, data: dict[str, np.ndarray]) -> None:
    """Save all or nothing (:func:`~initlab.atomic_files.write_file`); an unwritable cache
    is silently skipped."""
    with contextlib.suppress(OSError):
        write_file(path, lambda p: np.savez(p, **data))


@functools.lru_cache(maxsize=2)
def _arrays(args_json: str, path: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    args = json.loads(args_json)
    data = _read_cache(path, args)
    if data is None:
        data = _generate(args)
        _write_cache(path, data)
    x, y = torch.from_numpy(data["x"]).unsqueeze(1), torch.from_numpy(data["y"])
    x_test, y_test = torch.from_numpy(data["x_test"]).unsqueeze(1), torch.from_numpy(data["y_test"])
    return x, y, x_test, y_test


def arrays() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x, y, x_test, y_test`` (float32 [N, 1, 40], int64), from memory, disk or generated."""
    args = generator_args()
    return _arrays(json.dumps(args, sort_keys=True), cache_path(args))


def load(
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    limit_train: int | None = None,
) -> Dataset:
    """Load MNIST-1D; validation is a seeded stratified sample of the 4,000 training sequences."""
    del data_dir, download  # generated offline
    x_pool, y_pool, x_test, y_test = arrays()
    n_val = check_val_size(DEFAULT_VAL if val_size is None else val_size, len(y_pool), NAME)
    order = stratified_order(y_pool.numpy(), seed)
    return assemble(
        NAME,
        take(x_pool, y_pool, after_validation(order, n_val, limit_train)),
        take(x_pool, y_pool, order[:n_val]),
        (x_test, y_test),
        classes=CLASSES,
        source="generated (mnist1d package, default arguments)",
    )


def availability(data_dir: str | Path | None = None) -> str:
    """``"generated offline"``, with the cache file when it exists."""
    path = cache_path(generator_args())
    return f"generated offline (cached: {path})" if path.is_file() else "generated offline"


def info() -> dict:
    """Static facts about MNIST-1D."""
    return {
        "name": NAME,
        "title": "MNIST-1D",
        "description": "Procedurally generated 1-D signals of the 10 digits (length 40), "
        "small but hard enough to separate MLPs, CNNs and initialisations.",
        "num_train": 4000 - DEFAULT_VAL,
        "num_val": DEFAULT_VAL,
        "num_test": 1000,
        "input_shape": (1, 40),
        "num_classes": 10,
        "classes": CLASSES,
        "split": (
            "mnist1d's own 4,000/1,000 train/test (generator seed 42, independent of seed); "
            f"validation = val_size (default {DEFAULT_VAL}) training sequences chosen by a "
            "class-stratified permutation from numpy default_rng(seed)"
        ),
        "scaling": "as generated (standardised to mean 0, std 1 over the whole dataset)",
        "url": "https://github.com/greydanus/mnist1d",
        "citation": (
            "S. Greydanus, D. Kobak. Scaling Down Deep Learning with MNIST-1D. ICML 2024 "
            "(arXiv:2011.14439, 2020)."
        ),
    }
