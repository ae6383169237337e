"""The task of the user's data — inferred from the targets or given — and the checks and
dtype conversions that turn raw arrays into a valid :class:`~initlab.data.Dataset`.

Inference (``task="auto"``), over the training and test targets together:

1. integer targets (an integer dtype, or a float dtype whose every value is integral) of
   shape ``[N]`` → ``classification``, with ``num_classes = max label + 1`` unless declared;
2. integer targets ``[N, T]`` with integer-dtype inputs of the same shape ``[N, T]`` →
   ``sequence`` (token ids; vocabulary = max id + 1 over inputs and targets unless declared);
3. float targets not all whole numbers (in train or test) → ``regression``, ``[N]`` or
   ``[N, k]``;
4. otherwise (whole-number targets of another shape, one-hot rows included: the error says
   to pass class indices) there is no rule: pass the task.

Rule 1 also claims real-valued targets that happen to be whole numbers (ages, counts):
pass ``task="regression"`` (``--task regression``) for those. Conversions: inputs of a
signed integer dtype become int64 (token ids for an ``nn.Embedding``, e.g. a sequence
classifier; features given as integers must be converted to a float dtype first), all other
inputs float32 (``uint8`` pixels and ``bool`` features included; integer pixels are *not*
rescaled: loading notes training inputs far from unit scale, :mod:`initlab.data.scale`);
targets int64 (classification, sequence) or float32 (regression). The same rules take the
one batch of ``initlab.diagnose`` (:func:`~initlab.data.values.cast_inputs`, :func:`batch_targets`).

Sequence targets may hold :data:`IGNORE_INDEX` (-100, ``F.cross_entropy``'s default
``ignore_index``) for padding: those positions count for nothing in the loss and the token
accuracy (:mod:`initlab.train.tasks`). Inputs and class labels may not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from initlab.data.scale import note_input_scale, note_split_scales, note_target_scale
from initlab.data.values import checked_inputs, finite
from initlab.errors import InitlabError, option
from initlab.notes import note

IGNORE_INDEX = -100
"""A sequence target that is padding (the module docstring)."""
AUTO_RULE = (
    "integer [N] targets -> classification, non-integral float targets -> regression, "
    "integer [N, T] targets with integer [N, T] inputs -> sequence"
)


@dataclass(frozen=True)
class Raw:
    """Arrays as the user handed them over (tensors, any dtype), plus what they declared."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...] | None = None
    num_classes: int | None = None

    def pairs(self) -> tuple[tuple[str, Tensor, Tensor], ...]:
        """``(split, x, y)`` for the train and test splits."""
        return (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test))


@dataclass(frozen=True)
class Prepared:
    """Converted, checked train and test tensors and the output size of ``task``."""

    task: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    classes: tuple[str, ...]


def is_integral(t: Tensor) -> bool:
    """``True`` for integer/bool dtypes and for float tensors whose every value is a whole
    (finite) number."""
    if not t.dtype.is_floating_point:
        return True
    return bool(torch.isfinite(t).all()) and bool((t == t.round()).all())


def infer_task(raw: Raw) -> str:
    """The task of ``raw`` by the rule in this module's docstring; :class:`InitlabError`
    when no rule applies."""
    pairs = raw.pairs()
    integral = all(is_integral(y) for _, _, y in pairs)
    if integral and all(y.dim() == 1 for _, _, y in pairs):
        return "classification"
    if integral and all(
        y.dim() == 2 and not x.dtype.is_floating_point and x.shape == y.shape for _, x, y in pairs
    ):
        return "sequence"
    if not integral:
        return "regression"
    if all(is_one_hot(y) for _, _, y in pairs):
        raise one_hot_error(raw.y_train, option("--task regression"))
    column = raw.y_train.dim() == 2 and raw.y_train.shape[1] == 1
    fix = f"pass {option('--task', 'task=')}"
    fix = f"class labels [N]: pass y[:, 0]; or {fix}" if column else fix
    raise InitlabError(
        f"cannot infer the task from whole-number targets of shape {_shape(raw.y_train)} "
        f"and inputs of shape {_shape(raw.x_train)} ({AUTO_RULE}): {fix}"
    )


def is_one_hot(y: Tensor) -> bool:
    """``[N, k]`` rows of 0s with a single 1 each (``k > 1``)."""
    if y.dim() != 2 or y.shape[1] < 2 or not len(y) or y.dtype.is_complex:
        return False
    y = y.to(torch.float64)
    return bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())


def one_hot_error(y: Tensor, alternative: str, what: str = "the targets") -> InitlabError:
    """The one line refusing one-hot targets ``y``: class indices are what classification
    takes; ``alternative`` names the way to fit them as numbers instead."""
    return InitlabError(
        f"{what} {_shape(y)} are one-hot rows: pass class indices (y.argmax(1)) for "
        f"classification, or {alternative} to fit them as numbers"
    )


def prepare(raw: Raw, task: str = "auto") -> Prepared:
    """Check ``raw`` for ``task`` (inferred when ``"auto"``) and convert its dtypes.

    Raises :class:`InitlabError` (one line) for empty splits, x/y length mismatches,
    inputs of different shapes in train and test, NaN/inf in float inputs or regression
    targets (or float64 values beyond float32's range), non-integer or negative labels /
    token ids, and labels at or above the declared number of classes. Notes float training
    inputs far from unit scale (:func:`~initlab.data.scale.note_input_scale`), train and
    test inputs of different scales (:func:`~initlab.data.scale.note_split_scales`) and
    regression targets far from unit scale (:func:`~initlab.data.scale.note_target_scale`):
    this runs once per load of user data, never for the built-in datasets.
    """
    for split, x, y in raw.pairs():  # first: a length mismatch also defeats task inference
        _check_lengths(split, x, y)
    inferred = task == "auto"
    task = infer_task(raw) if inferred else task
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise InitlabError(
            f"train and test examples differ in shape: x_train {_shape(raw.x_train)}, "
            f"x_test {_shape(raw.x_test)}"
        )
    hint = f" (task inferred by the rule {AUTO_RULE}; pass {option('--task', 'task=')} to override)"
    hint = hint if inferred else ""
    if task == "regression":
        prepared = _regression(raw)
    elif task == "sequence":
        prepared = _sequence(raw, hint)
    else:
        prepared = _classification(raw, hint)
        if inferred and raw.y_train.dtype.is_floating_point:
            note(
                f"the float targets are all whole numbers: read as class labels "
                f"({prepared.num_classes} classes, accuracy); pass {option('--task regression')} "
                "if they are quantities such as counts"
            )
    note_input_scale(prepared.x_train, raw.x_train)
    note_split_scales(prepared.x_train, prepared.x_test)
    if task == "regression":
        note_target_scale(prepared.y_train)
    return prepared


def batch_targets(
    y: Tensor,
    outputs: int | tuple[int, ...],
    inputs: Tensor | None = None,
    *,
    what: str = "targets",
) -> Tensor:
    """One batch's targets ``y`` for a model with ``outputs`` output units, or outputs of
    that shape on the batch (``[B, T, V]``: a sequence model's logits), and its ``inputs``,
    by the rules :func:`prepare` applies to a dataset (``initlab.diagnose`` takes its
    targets so; the default loss follows their dtype, :func:`initlab.train.tasks.batch_task`):

    * one-hot rows ``[B, k]``: :func:`one_hot_error` (unless they are integer token ids
      ``[B, T]`` for integer inputs of the same shape: a sequence batch); one-hot token rows
      ``[B, T, V]`` likewise (pass the token ids ``[B, T]``);
    * an integer or bool dtype: int64 class labels (``[B]``) or token ids (``[B, T]``, where
      :data:`IGNORE_INDEX` is padding), checked non-negative;
    * floats that are all whole numbers, ``[B]`` for ``outputs > 1`` or ``[B, T]`` for
      outputs ``[B, T, V > 1]``: int64 class labels or token ids likewise, as the loader
      reads them (for one output they are a regression target);
    * other floats: regression targets in their own dtype, checked finite.
    """
    check_target_form(y, inputs, what)
    shape = (len(y), outputs) if isinstance(outputs, int) else tuple(outputs)
    tokens = len(shape) == 3 and tuple(y.shape) == shape[:2]
    units = shape[-1] if len(shape) > 1 else 1  # outputs [B]: one value per example
    whole = (y.dim() == 1 or tokens) and units > 1 and is_integral(y)
    if not y.dtype.is_floating_point or whole:
        kind = "token ids" if y.dim() > 1 else "class labels"
        return _ids(what, y, kind, None, "", padding=y.dim() > 1)
    return finite(what, y)


def check_target_form(y: Tensor, inputs: Tensor | None = None, what: str = "targets") -> None:
    """The checks of :func:`batch_targets` that need no model output (``initlab.diagnose``
    makes them before it runs the model): complex targets, one-hot rows ``[B, k]`` (unless
    integer token ids ``[B, T]`` of integer inputs of their shape) and ``[B, T, V]``."""
    if y.dtype.is_complex:
        raise InitlabError(f"{what} are complex; targets must be real numbers")
    sequence = (
        inputs is not None
        and not (y.dtype.is_floating_point or inputs.dtype.is_floating_point)
        and inputs.shape == y.shape
    )
    if not sequence and is_one_hot(y):
        raise one_hot_error(y, "pass a loss= that takes them", what)
    if y.dim() == 3 and is_one_hot(y.reshape(-1, y.shape[-1])):
        raise InitlabError(
            f"{what} {_shape(y)} are one-hot token rows: pass the token ids [N, T] = "
            f"{_shape(y[..., 0])} (y.argmax(-1)), or a loss= that takes them to fit them as numbers"
        )


def _check_lengths(split: str, x: Tensor, y: Tensor) -> None:
    if x.dim() == 0 or y.dim() == 0:
        raise InitlabError(f"x_{split} and y_{split} must have a leading example dimension")
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise InitlabError(
            f"the {split} split is empty (x_{split} {_shape(x)}, y_{split} "
            f"{_shape(y)}): give at least one example"
        )
    if x.shape[0] != y.shape[0]:
        raise InitlabError(
            f"x_{split} has {x.shape[0]} examples but y_{split} has {y.shape[0]}: "
            "inputs and targets must pair up"
        )
    if x.dim() == 1:
        raise InitlabError(
            f"x_{split} has shape {_shape(x)}: inputs need a feature dimension, "
            "e.g. [N, 1] for one feature (x[:, None])"
        )


MAX_NAMED_CLASSES = 100_000
"""Above this many classes (from the largest label), classes get no names ``"0"``, ``"1"``,
...: a stray label of 10**9 would otherwise build 10**9 strings before the model check
names it."""


def _classification(raw: Raw, hint: str) -> Prepared:
    for split, _, y in raw.pairs():
        if y.dim() != 1:
            column = " (one column: pass y[:, 0])" if y.dim() == 2 and y.shape[1] == 1 else ""
            raise InitlabError(
                f"classification needs targets [N] of class indices; y_{split} has shape "
                f"{_shape(y)}{column}"
            )
    declared = _declared(raw)
    ys = [_ids(f"y_{s}", y, "class labels", declared, hint) for s, _, y in raw.pairs()]
    num_classes = declared or max(int(y.max()) for y in ys) + 1
    named = num_classes <= MAX_NAMED_CLASSES  # one label of 10**9 made 10**9 names
    classes = raw.classes or (tuple(str(k) for k in range(num_classes)) if named else ())
    x_train, x_test = (checked_inputs(f"x_{s}", x) for s, x, _ in raw.pairs())
    return Prepared("classification", x_train, ys[0], x_test, ys[1], num_classes, classes)


def _regression(raw: Raw) -> Prepared:
    ys = []
    for split, _, y in raw.pairs():
        if y.dim() not in (1, 2):
            raise InitlabError(
                f"regression needs targets [N] or [N, k]; y_{split} has shape {_shape(y)}"
            )
        ys.append(finite(f"y_{split}", y.to(torch.float32), y))
    if ys[0].shape[1:] != ys[1].shape[1:]:
        raise InitlabError(
            f"y_train {_shape(ys[0])} and y_test {_shape(ys[1])} have different target sizes"
        )
    k = 1 if ys[0].dim() == 1 else int(ys[0].shape[1])
    x_train, x_test = (checked_inputs(f"x_{s}", x) for s, x, _ in raw.pairs())
    return Prepared("regression", x_train, ys[0], x_test, ys[1], k, ())


def _sequence(raw: Raw, hint: str) -> Prepared:
    for split, x, y in raw.pairs():
        if x.dim() != 2 or x.shape != y.shape:
            raise InitlabError(
                f"sequence needs token ids x [N, T] and targets y [N, T] of the same shape; "
                f"x_{split} is {_shape(x)}, y_{split} {_shape(y)}"
            )
    declared = _declared(raw)
    ids = [
        _ids(f"{v}_{s}", t, "token ids", declared, hint, padding=v == "y")
        for s, x, y in raw.pairs()
        for v, t in (("x", x), ("y", y))
    ]
    for name, targets in (("y_train", ids[1]), ("y_test", ids[3])):
        if targets.numel() and not bool((targets != IGNORE_INDEX).any()):
            raise InitlabError(
                f"{name} has no target tokens: every one is {IGNORE_INDEX} (padding); "
                "give the tokens to predict"
            )
    vocab = declared or max(int(t.max()) for t in ids) + 1
    return Prepared("sequence", ids[0], ids[1], ids[2], ids[3], vocab, ())


def _declared(raw: Raw) -> int | None:
    """The declared number of classes (or vocabulary size), if any; names and count agree."""
    names, count = raw.classes, raw.num_classes
    if names is not None and count is not None and len(names) != count:
        raise InitlabError(
            f"{len(raw.classes)} class names declared for num_classes={raw.num_classes}"
        )
    return raw.num_classes if raw.classes is None else len(raw.classes)


def _ids(
    what: str, t: Tensor, kind: str, declared: int | None, hint: str, padding: bool = False
) -> Tensor:
    """``t`` as int64 after checking it holds whole numbers in ``[0, declared)``, or
    :data:`IGNORE_INDEX` where ``padding`` allows it."""
    if t.dtype.is_complex:
        raise InitlabError(f"{what} is complex; {kind} must be integers")
    if t.dtype.is_floating_point:
        bad = ~torch.isfinite(t) | (t != t.round())
        if bool(bad.any()):
            example = float(t[bad].flatten()[0])
            raise InitlabError(
                f"{what} has {int(bad.sum())} non-integer {kind} (e.g. {example:g}); "
                f"{kind} are 0, 1, 2, ...{hint}"
            )
    t = t.to(torch.int64)
    below = (t < 0) & (t != IGNORE_INDEX) if padding else t < 0
    negative = int(below.sum())
    if negative:
        allowed = f" (and {IGNORE_INDEX} for padding)" if padding else ""
        raise InitlabError(
            f"{what} has {negative} negative {kind} (min {int(t[below].min())}); {kind} are "
            f"0, 1, 2, ...{allowed}{hint}"
        )
    if declared is not None and int(t.max()) >= declared:
        over = int((t >= declared).sum())
        size = "classes are" if kind == "class labels" else "token ids (the vocabulary) are"
        raise InitlabError(
            f"{what} has {over} {kind} >= {declared} (max {int(t.max())}) but only {declared} "
            f"{size} declared"
        )
    return t


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"
