"""Dataset names, aliases and dispatch: :func:`load`, :func:`names`, :func:`info`,
:func:`availability`.

Names are case-, space-, ``-``- and ``_``-insensitive (``fashion_mnist``, ``FashionMNIST`` and
``fashion-mnist`` are the same dataset); unknown names raise :class:`UnknownNameError`.
User data specs (``module:function``, ``file.py:function``, ``file.npz``, ``file.pt``; see
:mod:`initlab.data.user`) go to the user-data loader and are kept verbatim as names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from initlab.config import TASKS
from initlab.data import digits, mnist, mnist1d, synthetic, user
from initlab.data.dataset import Dataset, check_count
from initlab.dataset_names import built_in_name
from initlab.errors import InitlabError, UnknownNameError, option
from initlab.usercode.inprocess import given_as
from initlab.usercode.specs import is_data_file, is_user_spec, source_fingerprint

OWN_DATA = "data= a function, arrays, 'module:function' or a file.npz"
"""The user's own data, as a Python call gives it."""


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


def canonical_name(name: str) -> str:
    """The canonical spelling of a dataset name (a user data spec is its own);
    :class:`UnknownNameError` if there is none."""
    if is_user_spec(name):
        return name
    if (found := built_in_name(name)) is not None:
        return found
    if "." in str(name) or "/" in str(name):  # a file of a kind --data does not read
        raise InitlabError(
            f"{given_as('--data', str(name))}: not a dataset name nor a file "
            f"{option('--data', 'data=')} reads (.npz, .pt or .pth with x_train, y_train, x_test, "
            "y_test; or module:function returning them)"
        )
    raise UnknownNameError("dataset", str(name), names())


def names() -> list[str]:
    """Canonical names of the available datasets."""
    return list(_ENTRIES)


def info(name: str) -> dict:
    """Description, default split sizes, input shape, classes, split rule, URL and citation.

    For a user data spec the data is loaded (once per process) to describe it."""
    if is_user_spec(name):
        return _user_info(name)
    return _ENTRIES[canonical_name(name)].info()


def availability(name: str, data_dir: str | Path | None = None) -> str:
    """Where ``name`` would come from, e.g. ``"local: /usr/share/datasets/fashion-mnist"``,
    ``"will download (11 MB) into ..."``, ``"generated offline"`` or ``"bundled with
    scikit-learn"``; for user data ``"your file: ..."`` or ``"your code: ..."``. Never
    downloads anything (nor runs user code)."""
    if is_user_spec(name):
        kind = "your file" if is_data_file(name) else "your code (imported and run)"
        return f"{kind}: {name}" + (" (missing)" if source_fingerprint(name) == "missing" else "")
    return _ENTRIES[canonical_name(name)].availability(data_dir)


def load(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    limit_train: int | None = None,
    task: str = "auto",
) -> Dataset:
    """Load dataset ``name`` with an explicit train / validation / test split.

    Args:
        name: one of :func:`names` (any case; ``-``/``_`` optional), or a user data spec:
            ``module:function``, ``path/file.py:function`` (**imports and runs that code**),
            ``file.npz``, ``file.pt`` / ``.pth`` (see :mod:`initlab.data.user`).
        data_dir: a directory holding the dataset's files (directly or in ``<name>/``),
            searched before ``$INITLAB_DATA``, the cache and ``/usr/share/datasets``.
        val_size: number of validation examples (default per dataset, see :func:`info`).
        seed: seeds the split where there is no official one (and the synthetic task).
        download: allow downloading MNIST / Fashion-MNIST into the cache if not found.
        limit_train: keep only ``limit_train`` training examples (all if fewer): the first
            ones where the split follows the files' order (MNIST, Fashion-MNIST, synthetic),
            a seeded class-stratified sample where it is drawn (digits, MNIST-1D, user data:
            :func:`~initlab.data.dataset.after_validation`).
        task: ``"classification"``, ``"regression"``, ``"sequence"`` or ``"auto"``: for user
            data, integer targets ``[N]`` → classification, non-integral float targets → regression,
            integer targets ``[N, T]`` with integer inputs ``[N, T]`` → sequence (details in
            :mod:`initlab.data.tasks`). The built-in datasets are classification tasks.

    The returned tensors may be shared with an in-process cache: do not modify them in place.
    """
    if val_size is not None:
        val_size = check_count("val_size", val_size)
    seed = check_count("seed", seed)
    if limit_train is not None:
        limit_train = check_count("limit_train", limit_train, minimum=1)
    if not isinstance(download, bool):
        raise InitlabError(f"download must be True or False, got {download!r}")
    if is_user_spec(name):
        return user.load(name, val_size=val_size, seed=seed, limit_train=limit_train, task=task)
    entry = _ENTRIES[canonical_name(name)]
    check_task(entry.name, task)
    return entry.load(
        data_dir=data_dir, val_size=val_size, seed=seed, download=download, limit_train=limit_train
    )


def check_task(name: str, task: str) -> None:
    """``task`` for the built-in dataset ``name``: a classification task (``auto`` reads it
    so); another is one line saying it needs the user's own data."""
    if task not in TASKS:
        raise UnknownNameError("task", str(task), TASKS)
    if task not in ("auto", "classification"):
        raise InitlabError(
            f"dataset '{_ENTRIES[canonical_name(name)].name}' is a classification task; "
            f"{option(f'--task {task}')} needs your own data "
            f"({option('--data module:function or file.npz', OWN_DATA)})"
        )


def _user_info(spec: str) -> dict:
    """:func:`info` of user data: what loading it with the default settings gives."""
    data = user.load(spec)
    return {
        "name": spec,
        "title": "your data",
        "description": f"{data.task} data from {spec}",
        "num_train": data.num_train,
        "num_val": data.num_val,
        "num_test": data.num_test,
        "input_shape": data.input_shape,
        "num_classes": data.num_classes,
        "classes": data.classes,
        "task": data.task,
        "split": (
            "your train and test sets; validation = a seeded sample of "
            f"{user.DEFAULT_VAL_FRACTION:.0%} of the training set (val_size)"
        ),
        "scaling": "none (as given)",
        "url": None,
        "citation": None,
    }
