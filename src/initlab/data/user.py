"""The user's own data: ``--data module:function``, ``file.py:function``, ``file.npz``,
``file.pt`` / ``file.pth``.

**A function spec imports and runs that code** (see :mod:`initlab.usercode.specs`). The function
is called with no arguments and returns either ``(x_train, y_train, x_test, y_test)``
(tensors or numpy arrays), ``(train_dataset, test_dataset)`` (map-style
``torch.utils.data.Dataset`` objects whose items are ``(x, y)`` pairs; stacked into tensors
once), or a mapping with the keys of a data file. A data file holds ``x_train, y_train,
x_test, y_test`` (``.npz``: ``numpy.load(allow_pickle=False)``; ``.pt``: a dict read with
``torch.load(weights_only=True)``) and optionally ``classes`` (class names) and
``num_classes`` (the number of classes, or the vocabulary size of a sequence task).

The validation set is taken from the training pool, like the built-in datasets: the first
``val_size`` (default :data:`DEFAULT_VAL_FRACTION` of the pool) examples of a seeded
permutation (``numpy.random.default_rng(seed)``; class-stratified for classification), the
rest, in their original order, train; ``limit_train`` keeps the next that many of the
permutation instead (a seeded, class-balanced sample, whatever order the file has).
The task is inferred or given (:mod:`initlab.data.tasks`).

Loaded data is cached in-process, keyed by the spec, the current directory, the spec's
:func:`~initlab.usercode.specs.source_fingerprint` and the settings: loading the same spec twice
returns the same tensors without running the function or reading the file again.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate

from initlab.config import TASKS
from initlab.data.dataset import (
    Dataset,
    after_validation,
    assemble,
    check_count,
    check_val_size,
    stratified_order,
    take,
)
from initlab.data.loaders import LOADER_FIX, is_loader, note_random_items
from initlab.data.tasks import Prepared, Raw, prepare
from initlab.data.values import as_tensor
from initlab.errors import InitlabError, first_line, option
from initlab.global_state import preserved_globals
from initlab.notes import note
from initlab.usercode.inprocess import given_as
from initlab.usercode.specs import (
    RELATIVE,
    check_readable,
    is_data_file,
    load_callable,
    source_fingerprint,
)

KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL_KEYS = ("classes", "num_classes")
DEFAULT_VAL_FRACTION = 0.1
"""Default validation size: ``floor(0.1 * pool)`` training examples."""
STACK_BATCH = 1024
"""Items of a torch ``Dataset`` are collated this many at a time."""


def load(
    spec: str,
    *,
    val_size: int | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    task: str = "auto",
) -> Dataset:
    """The :class:`Dataset` of user data ``spec`` (named ``spec``), split and checked.

    Every problem is one line of :class:`InitlabError` prefixed with ``--data SPEC:``
    (``data='SPEC':`` from Python, :func:`initlab.usercode.inprocess.given_as`).
    """
    if task not in TASKS:
        raise InitlabError(f"unknown task '{task}' (valid: {', '.join(TASKS)})")
    key = (spec, os.getcwd(), source_fingerprint(spec))
    return _split(key, task, val_size, seed, limit_train)


def clear_cache() -> None:
    """Forget every user dataset loaded in this process."""
    _split.cache_clear()
    _prepared.cache_clear()
    _read.cache_clear()


def from_value(
    value: Any,
    *,
    name: str = "arrays",
    val_size: int | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    task: str = "auto",
) -> Dataset:
    """A :class:`Dataset` from data in memory — anything a ``--data`` function may return:
    ``(x_train, y_train, x_test, y_test)``, ``(train_dataset, test_dataset)`` or a mapping
    with those keys — checked, converted and split as :func:`load` does (not cached)."""
    if task not in TASKS:
        raise InitlabError(f"unknown task '{task}' (valid: {', '.join(TASKS)})")
    seed = check_count("seed", seed)
    with _prefixed(name):
        return split(prepare(from_returned(value, name), task), name, "in memory", val_size,
                     seed, limit_train)  # fmt: skip


def split(
    data: Prepared, name: str, source: str, val_size: int | None, seed: int, limit: int | None
) -> Dataset:
    """``data``'s :class:`Dataset`: validation = the first ``val_size`` (default
    ``floor(DEFAULT_VAL_FRACTION * pool)``) of a seeded permutation of the training pool,
    class-stratified for classification (:func:`stratified_order`); train = the rest, in
    the original order, or with ``limit`` the next ``limit`` of the permutation
    (:func:`~initlab.data.dataset.after_validation`)."""
    pool = data.y_train.shape[0]
    default = int(DEFAULT_VAL_FRACTION * pool)
    n_val = check_val_size(default if val_size is None else val_size, pool, "it")  # prefixed
    if limit is not None:
        limit = check_count("limit_train", limit, minimum=1)
    strata = data.y_train.numpy() if data.task == "classification" else np.zeros(pool)
    order = stratified_order(strata, seed)
    return assemble(
        name,
        take(data.x_train, data.y_train, after_validation(order, n_val, limit)),
        take(data.x_train, data.y_train, order[:n_val]),
        (data.x_test, data.y_test),
        classes=data.classes,
        source=source,
        task=data.task,
        num_classes=data.num_classes,
    )


@functools.lru_cache(maxsize=8)
def _split(
    key: tuple[str, str, str], task: str, val_size: int | None, seed: int, limit: int | None
) -> Dataset:
    with _prefixed(key[0]):
        data = _prepared(key, task)
        return split(data, key[0], f"user data (sha256 {key[2]})", val_size, seed, limit)


@functools.lru_cache(maxsize=4)
def _prepared(key: tuple[str, str, str], task: str) -> Prepared:
    """Check and convert ``key``'s data once per process (per task)."""
    with _prefixed(key[0]):
        return prepare(_read(key), task)


@functools.lru_cache(maxsize=4)
def _read(key: tuple[str, str, str]) -> Raw:
    """Run the function or read the file behind ``key`` once per process."""
    return read(key[0])


@contextlib.contextmanager
def _prefixed(spec: str) -> Iterator[None]:
    """Prefix every :class:`InitlabError` raised inside with ``--data SPEC:`` (as
    :func:`initlab.usercode.inprocess.given_as` names it), unless it names the data already."""
    try:
        yield
    except InitlabError as exc:
        message = str(exc)
        if not message.startswith(("--data", "data ", "data=", "data:")):
            message = f"{given_as('--data', spec)}: {message}"
        raise InitlabError(message) from None


def read(spec: str) -> Raw:
    """The arrays behind ``spec``, as tensors, unchecked."""
    if is_data_file(spec):
        return read_file(Path(spec))
    function = load_callable(spec, "--data")
    try:
        with preserved_globals(), torch.random.fork_rng(devices=[]):
            value = function()
    except (Exception, SystemExit) as exc:
        failed = f"calling it failed: {first_line(exc)}"
        raise InitlabError(f"{given_as('--data', spec)}: {failed}") from None
    return from_returned(value, spec)


def read_file(path: Path) -> Raw:
    """The arrays of a ``.npz`` / ``.pt`` / ``.pth`` file."""
    where = given_as("--data", str(path))
    check_readable(path, "--data")
    if path.is_dir():
        raise InitlabError(f"{where}: a directory, not a data file (.npz, .pt or .pth)")
    if not path.is_file():
        cwd = "" if path.is_absolute() else f" in {Path.cwd()} ({RELATIVE})"
        raise InitlabError(f"{option('--data')}: no such file '{path}'{cwd}")
    npz = path.suffix.lower() == ".npz"
    if npz and not zipfile.is_zipfile(path):  # numpy.load would talk of pickled data
        raise InitlabError(
            f"{where} is not an .npz archive (numpy.savez writes a zip file; this one is "
            "not): save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    try:
        if npz:
            with np.load(path, allow_pickle=False) as archive:
                content: Any = {name: archive[name] for name in archive.files}
        else:  # torch's own deprecation warnings of what it reads (quantized storages): not
            with warnings.catch_warnings():  # the user's to act on
                warnings.filterwarnings("ignore", category=UserWarning, module="torch")
                content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # refused: not tensors and containers, or junk
        if not zipfile.is_zipfile(path):  # torch's own advice (weights_only=False) runs code
            raise InitlabError(
                f"{where}: torch.load(weights_only=True) cannot read it (not a file "
                "torch.save wrote)"
            ) from None
        raise InitlabError(
            f"{where}: torch.load(weights_only=True) cannot read it: it holds objects "
            "other than tensors, numbers and dicts/lists (numpy arrays?); save tensors "
            "(torch.from_numpy) or use an .npz file"
        ) from None
    except Exception as exc:  # a corrupt or truncated file
        how = "numpy.load" if npz else "torch.load(weights_only=True)"
        what = "" if npz or zipfile.is_zipfile(path) else " (not a file torch.save wrote)"
        raise InitlabError(f"{where}: {how} cannot read it{what}: {first_line(exc)}") from None
    if not isinstance(content, Mapping):
        raise InitlabError(
            f"{where} holds a {type(content).__name__}; expected a dict with keys {', '.join(KEYS)}"
        )
    return from_mapping(content, where)


def from_mapping(content: Mapping, where: str) -> Raw:
    """:class:`Raw` from a mapping with :data:`KEYS` (and optional ``classes``,
    ``num_classes``)."""
    missing = [k for k in KEYS if k not in content]
    if missing:
        found = ", ".join(str(k) for k in content) or "none"
        raise InitlabError(
            f"{where} has no {', '.join(missing)} (keys found: {found}); expected {', '.join(KEYS)}"
        )
    extra = [str(k) for k in content if k not in (*KEYS, *OPTIONAL_KEYS)]
    if extra:
        held = " (a validation set is held out of the training pool: val_size)"
        val = held if any("val" in k for k in extra) else ""
        note(
            f"{where}: {', '.join(extra)} not read{val}; a data file or mapping gives "
            f"{', '.join(KEYS)} and optionally {', '.join(OPTIONAL_KEYS)}"
        )
    arrays = [as_tensor(content[k], k, where) for k in KEYS]
    classes = content.get("classes")
    count = content.get("num_classes")
    return Raw(
        *arrays,
        classes=None if classes is None else tuple(str(c) for c in np.asarray(classes).ravel()),
        num_classes=None if count is None else _count(count, where),
    )


def from_returned(value: Any, spec: str) -> Raw:
    """:class:`Raw` from what a ``--data`` function returned."""
    where = given_as("--data", spec)
    if isinstance(value, Mapping):
        return from_mapping(value, where)
    if isinstance(value, (tuple, list)) and len(value) == 4:
        return Raw(*(as_tensor(v, k, where) for k, v in zip(KEYS, value, strict=True)))
    if isinstance(value, (tuple, list)) and len(value) == 2 and not _arrays(value):
        train, test = value
        x_train, y_train = stack(train, "train", where)
        x_test, y_test = stack(test, "test", where)
        names = getattr(train, "classes", None)
        classes = tuple(names) if _is_names(names) else None
        return Raw(x_train, y_train, x_test, y_test, classes=classes)
    fix = LOADER_FIX if is_loader(value) else (
        "expected (x_train, y_train, x_test, y_test) as tensors or arrays, or two Datasets "
        "(train, test)"
    )  # fmt: skip
    raise InitlabError(f"{where} returned {_described(value)}; {fix}")


def _arrays(value: tuple | list) -> bool:
    """Whether every item of ``value`` is a tensor or an array (not a Dataset)."""
    return all(hasattr(part, "__array__") for part in value)


def _described(value: Any) -> str:
    """``2 tensors``, ``3 arrays``, ``a tuple of 3 items``, ``a dict``: what a data
    function returned, in words."""
    if not isinstance(value, (tuple, list)):
        return f"a {type(value).__name__}"
    if value and _arrays(value):
        kind = "tensor" if all(isinstance(v, Tensor) for v in value) else "array"
        return f"{len(value)} {kind}{'s' if len(value) > 1 else ''}"
    return f"a {type(value).__name__} of {len(value)} items"


def stack(dataset: Any, which: str, where: str) -> tuple[Tensor, Tensor]:
    """All ``(x, y)`` items of a map-style torch ``Dataset``, collated into two tensors; a
    ``DataLoader`` is one line saying to pass ``loader.dataset``."""
    if is_loader(dataset):
        raise InitlabError(
            f"{where}: the {which} set is a DataLoader; pass {which}_loader.dataset (initlab "
            "batches the data itself)"
        )
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise InitlabError(
            f"{where}: the {which} set is a {type(dataset).__name__}; expected a map-style "
            "torch Dataset (with __len__ and __getitem__) of (x, y) pairs"
        )
    xs, ys = [], []
    for start in range(0, len(dataset), STACK_BATCH):
        stop = min(start + STACK_BATCH, len(dataset))
        try:
            batch = default_collate([dataset[i] for i in range(start, stop)])
        except Exception as exc:
            raise InitlabError(
                f"{where}: reading the {which} Dataset failed: {first_line(exc)} (items must be "
                "(x, y) pairs of tensors, arrays or numbers)"
            ) from None
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise InitlabError(
                f"{where}: items of the {which} Dataset are not (x, y) pairs "
                f"(item 0 is a {type(dataset[0]).__name__})"
            )
        xs.append(as_tensor(batch[0], f"x_{which}", where))
        ys.append(as_tensor(batch[1], f"y_{which}", where))
    if not xs:
        raise InitlabError(f"{where}: the {which} Dataset is empty: give at least one example")
    note_random_items(dataset, xs[0][0], which)
    return torch.cat(xs), torch.cat(ys)


def _count(value: Any, where: str) -> int:
    count = np.asarray(value)
    if count.size != 1 or count.dtype.kind not in "iu" or int(count) < 1:
        raise InitlabError(f"{where}: num_classes must be a positive integer, got {value!r}")
    return int(count)


def _is_names(names: Any) -> bool:
    return isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)
