"""The :class:`Dataset` container and the pure split helpers every source uses.

Splits are explicit: a source hands over a *pool* of training examples and a test set, and
says how the validation set is taken from the pool — the first ``val_size`` examples (the
official-order split of MNIST-like data) or a seeded, class-stratified sample. Randomness
always comes from ``numpy.random.default_rng(seed)``, never from global state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from initlab.data.tasks import IGNORE_INDEX
from initlab.errors import InitlabError
from initlab.task_names import TASKS

_SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A dataset split into train / validation / test tensors, for one of three tasks.

    - ``classification``: ``x_*`` float32 ``[N, *input_shape]`` (or int64 token ids, for a
      sequence classifier), ``y_*`` int64 ``[N]`` class indices in ``[0, num_classes)``;
      ``classes`` names the ``num_classes`` classes.
    - ``regression``: ``x_*`` float32 ``[N, *input_shape]`` (or int64 ids), ``y_*`` float32
      ``[N]`` or ``[N, k]``; ``num_classes`` is the number of outputs (``k``; 1 for ``[N]``
      targets), ``classes`` is ``()``.
    - ``sequence``: ``x_*`` int64 token ids ``[N, T]`` (``input_shape == (T,)``), ``y_*`` int64
      ``[N, T]`` target ids; ``num_classes`` is the vocabulary size ``V`` (every id, input or
      target, in ``[0, V)``); a model maps ``[B, T]`` ids to ``[B, T, V]`` logits.

    ``num_classes`` is always the model's output size. The tensors may be shared with
    initlab's in-process cache and with other :class:`Dataset` objects (they are often views
    of one decoded array): treat them as read-only and ``.clone()`` before modifying one in
    place. A malformed dataset raises :class:`InitlabError` where it is built.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]
    """One name per class (classification), ``()`` when unnamed: other tasks, and
    classifications of more than :data:`initlab.data.tasks.MAX_NAMED_CLASSES` classes."""
    source: str
    task: str = "classification"

    def __post_init__(self) -> None:
        """Check task, dtypes, shapes and target ranges, so a malformed dataset fails where
        it is built."""
        if self.task not in TASKS:
            raise InitlabError(f"{self.name}: unknown task '{self.task}' (valid: {TASKS})")
        named = bool(self.classes)  # () for more classes than are worth naming
        if self.task == "classification" and named and len(self.classes) != self.num_classes:
            raise InitlabError(
                f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes"
            )
        if self.task != "classification" and self.classes:
            raise InitlabError(f"{self.name}: class names given for a {self.task} task")
        for split in _SPLITS:
            check_split(self, split)

    @property
    def input_size(self) -> int:
        """Number of input features per example (product of ``input_shape``)."""
        return math.prod(self.input_shape)

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.y_train.shape[0])

    @property
    def num_val(self) -> int:
        """Number of validation examples."""
        return int(self.y_val.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.y_test.shape[0])

    def split(self, which: str) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if which not in _SPLITS:
            raise InitlabError(f"unknown split '{which}' (valid: train, val, test)")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def as_features(self) -> Dataset:
        """This dataset with integer inputs as float32 features (itself if they are floats
        or token ids of a sequence task): for models that take no ids (initlab's MLP, CNN)."""
        if self.x_train.is_floating_point() or self.task == "sequence":
            return self
        floats = {f"x_{s}": getattr(self, f"x_{s}").to(torch.float32) for s in _SPLITS}
        return dataclasses.replace(self, **floats)

    def summary(self) -> str:
        """One line: name, split sizes, input shape, classes and source."""
        shape = "x".join(str(d) for d in self.input_shape)
        outputs = {
            "classification": f"{self.num_classes} classes",
            "regression": f"{self.num_classes} regression target"
            + ("s" if self.num_classes != 1 else ""),
            "sequence": f"token sequences, vocabulary {self.num_classes}",
        }[self.task]
        return (
            f"{self.name}: {self.num_train} train / {self.num_val} val / {self.num_test} test, "
            f"input {shape}, {outputs} (source: {self.source})"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.summary()})"


_FEATURES = (torch.float32, torch.int64)
"""Inputs of classification and regression: features, or token ids (a sequence classifier)."""
_DTYPES = {
    "classification": (_FEATURES, torch.int64),
    "regression": (_FEATURES, torch.float32),
    "sequence": ((torch.int64,), torch.int64),
}


def check_split(data: Dataset, split: str) -> None:
    """:class:`InitlabError` unless split ``split`` of ``data`` has the dtypes, shapes and
    target range of ``data.task`` (see :class:`Dataset`)."""
    x, y = data.split(split)
    where = f"{data.name}/{split}"
    want_x, want_y = _DTYPES[data.task]
    if x.dtype not in want_x or y.dtype != want_y:
        xs = " or ".join(str(d) for d in want_x)
        raise InitlabError(
            f"{where}: dtypes {x.dtype}, {y.dtype}; {data.task} needs x {xs}, y {want_y}"
        )
    n = x.shape[0]
    if data.task == "regression":
        y_ok = tuple(y.shape) == (n, data.num_classes) or (
            data.num_classes == 1 and tuple(y.shape) == (n,)
        )
    elif data.task == "sequence":
        y_ok = tuple(y.shape) == tuple(x.shape) and x.dim() == 2
    else:
        y_ok = y.shape == (n,)
    if tuple(x.shape[1:]) != data.input_shape or not y_ok:
        raise InitlabError(
            f"{where}: shapes x {tuple(x.shape)}, y {tuple(y.shape)} do not fit a "
            f"{data.task} task with input {data.input_shape} and {data.num_classes} outputs"
        )
    if data.task != "regression":
        real = y[y != IGNORE_INDEX] if data.task == "sequence" else y  # padding allowed
        for t in (real, x) if data.task == "sequence" else (y,):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= data.num_classes):
                raise InitlabError(
                    f"{where}: ids from {int(t.min())} to {int(t.max())} are outside "
                    f"[0, {data.num_classes})"
                )


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``; :class:`InitlabError` for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InitlabError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InitlabError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_val_size(val_size: int, pool: int, name: str) -> int:
    """Validate a validation-set size against a pool of ``pool`` training examples."""
    val_size = check_count("val_size", val_size)
    if val_size >= pool:
        raise InitlabError(
            f"val_size={val_size} leaves no training data: {name} has {pool} training "
            f"examples to split (use 0 <= val_size < {pool})"
        )
    return val_size


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(labels))`` whose every prefix is class-balanced.

    Each class is shuffled, its members get evenly spaced keys in [0, 1) with a random
    offset, and all examples are sorted by key: any prefix of length m then holds about
    m * n_c / n examples of class c (within one).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    shuffled = labels[perm]
    keys = np.empty(len(labels), dtype=np.float64)
    for cls in np.unique(shuffled):
        members = np.flatnonzero(shuffled == cls)
        keys[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return perm[np.argsort(keys, kind="stable")]


def take(x: Tensor, y: Tensor, index: np.ndarray) -> tuple[Tensor, Tensor]:
    """Rows ``index`` (sorted, so the original order is kept) of ``x`` and ``y``."""
    idx = torch.from_numpy(np.sort(np.asarray(index, dtype=np.int64)))
    return x.index_select(0, idx), y.index_select(0, idx)


def after_validation(order: np.ndarray, start: int, limit: int | None) -> np.ndarray:
    """The training part of a seeded ``order`` of the pool (:func:`stratified_order`): what
    follows its first ``start`` (the validation set), cut to ``limit`` when given. Cutting the
    permutation, not the pool's own order, keeps a limited training set a seeded,
    class-balanced sample, whatever order the file had (a file sorted by label kept only
    its first class)."""
    return order[start:] if limit is None else order[start : start + limit]


def sample_rows(y: Tensor, n: int, task: str, seed: int = 0) -> Tensor:
    """``n`` row indices of ``y`` (all when ``n`` is not smaller), in order: a seeded sample,
    class-balanced for classification (:func:`stratified_order`), so that a subset of a file
    sorted by label still holds every class."""
    count = int(y.shape[0])
    if n >= count:
        return torch.arange(count)
    strata = y.numpy() if task == "classification" and y.dim() == 1 else np.zeros(count)
    return torch.from_numpy(np.sort(stratified_order(strata, seed)[:n]))


def first_look(data: Dataset, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` training examples that data-dependent inits (LSUV) and the per-layer
    tracking probe see, on the data's device: the first ``n`` of a built-in dataset (in
    random or interleaved order: every class among them), a seeded sample of the user's data,
    class-balanced for classification (:func:`sample_rows`). The first rows of a file sorted
    by label are one class: LSUV scaled every layer to that class alone."""
    from initlab.usercode.specs import is_user_spec

    if not is_user_spec(data.name):
        return data.x_train[:n], data.y_train[:n]
    rows = sample_rows(data.y_train.cpu(), n, data.task).to(data.y_train.device)
    return data.x_train[rows], data.y_train[rows]


def head(x: Tensor, y: Tensor, n: int | None) -> tuple[Tensor, Tensor]:
    """The first ``n`` rows (all when ``n`` is None or larger than the data); views."""
    return (x, y) if n is None else (x[:n], y[:n])


def assemble(
    name: str,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    classes: tuple[str, ...],
    source: str,
    limit_train: int | None = None,
    task: str = "classification",
    num_classes: int | None = None,
) -> Dataset:
    """Build a :class:`Dataset`, keeping only the first ``limit_train`` training examples.

    ``num_classes`` defaults to ``len(classes)`` (classification's rule)."""
    x_train, y_train = head(*train, limit_train)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=val[0],
        y_val=val[1],
        x_test=test[0],
        y_test=test[1],
        num_classes=len(classes) if num_classes is None else int(num_classes),
        input_shape=tuple(int(d) for d in test[0].shape[1:]),
        classes=tuple(classes),
        source=source,
        task=task,
    )
