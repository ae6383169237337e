"""The user's values as checked tensors, before any task is known: what
:func:`as_tensor` accepts (tensors, numpy arrays, nested numbers; anything else is one line
saying how to convert it), the one input rule of initlab (:func:`cast_inputs`: signed
integers are token ids, every other real dtype becomes float32), and finiteness
(:func:`finite`: NaN/inf, and float64 values beyond float32's range, are one line each).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from initlab.data.loaders import LOADER_FIX, is_loader
from initlab.errors import InitlabError, first_line

LABELS_HINT = (
    "map the labels to integers 0..K-1 (classes, y = numpy.unique(y, return_inverse=True))"
)
"""What to do with labels that are strings (or other objects)."""


def as_tensor(value: Any, what: str, where: str, *, labels: bool | None = None) -> Tensor:
    """``value`` (tensor, numpy array or nested numbers) as a CPU tensor of its own dtype.

    Anything else is one line; for targets of strings or other objects (``labels``, by
    default ``what`` starting with ``y``) it says how to turn names into class indices
    (:data:`LABELS_HINT`)."""
    if isinstance(value, Tensor):
        if unusual := _unusual(value):
            raise InitlabError(f"{where}: {what} is a {unusual[0]} tensor; save a dense one "
                               f"({unusual[1]})")  # fmt: skip
        return value.detach().cpu()
    if is_loader(value):
        raise InitlabError(f"{where}: {what} is a DataLoader; {LOADER_FIX}")
    fix = "give a tensor or numpy array"
    try:
        array = np.asarray(value)
        if array.dtype == object or array.dtype.kind in "USV":
            labels = what.startswith("y") if labels is None else labels
            fix = LABELS_HINT if labels else fix
            if array.dtype == object and _numbers(array):  # a mixed pandas frame's column
                fix = f"it holds numbers: give {what}.astype('float32') (or int class ids)"
            raise TypeError(f"{array.dtype} elements")
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # pandas' copy-on-write arrays: torch warns, shares
            array = array.copy()
        return torch.from_numpy(array)
    except (TypeError, ValueError) as exc:
        raise InitlabError(
            f"{where}: {what} is a {type(value).__name__} that is not a numeric array "
            f"({first_line(exc)}); {fix}"
        ) from None


def _unusual(value: Tensor) -> tuple[str, str] | None:
    """What makes ``value`` no dense array of numbers, and how to save it as one."""
    if value.is_nested or value.is_meta:
        return (
            ("nested", "torch.stack(x.unbind())")
            if value.is_nested
            else ("meta", "a meta tensor holds no values")
        )
    if value.is_quantized:
        return f"quantized ({value.dtype})", "x.dequantize()"
    return None if value.layout == torch.strided else (f"sparse ({value.layout})", "x.to_dense()")


def _numbers(array: np.ndarray) -> bool:
    """Whether every element of an object ``array`` is a real number (not a string)."""
    try:
        return all(isinstance(v, (int, float, np.number)) for v in array.flat)
    except TypeError:
        return False


def checked_inputs(what: str, x: Tensor) -> Tensor:
    """``x`` by :func:`cast_inputs`, float ones checked finite."""
    cast = cast_inputs(what, x)
    return cast if cast.dtype == torch.int64 else finite(what, cast, x)


def cast_inputs(what: str, x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``x`` by the one input rule of initlab (the loader's, and the batches that
    ``diagnose``, ``recommend`` and ``initialize(data=...)`` take): a signed integer dtype
    becomes int64 (token ids for an ``nn.Embedding``); every other real dtype (floats,
    ``uint8`` pixels, ``bool`` features) becomes ``dtype``, values unchanged (integer pixels
    are *not* rescaled); complex inputs are one line of :class:`InitlabError`."""
    if x.dtype.is_complex:
        raise InitlabError(f"{what} is complex; inputs must be real numbers")
    if is_signed_integer(x):
        return x.to(torch.int64)
    return x.to(dtype)


def is_signed_integer(x: Tensor) -> bool:
    """``int8`` to ``int64`` (``uint8`` and ``bool`` are not: pixels and binary features)."""
    return not x.dtype.is_floating_point and x.dtype.is_signed


FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest float32 (3.4e38): larger float64 inputs or targets overflow to inf."""


def finite(what: str, t: Tensor, source: Tensor | None = None) -> Tensor:
    """``t`` unchanged, or :class:`InitlabError` counting its NaN/inf values — or, first,
    the finite values of ``source`` (``t`` before its cast to float32) that overflowed."""
    bad = ~torch.isfinite(t)
    count = int(bad.sum())
    if count and source is not None and source.dtype.is_floating_point:
        over = bad & torch.isfinite(source)
        if bool(over.any()):
            n, example = int(over.sum()), float(source[over].flatten()[0])
            raise InitlabError(
                f"{what} has {n} value{'s' if n > 1 else ''} beyond float32's range "
                f"(±{FLOAT32_MAX:.2g}, e.g. {example:g}): initlab trains in float32, where "
                f"{'they overflow' if n > 1 else 'it overflows'} to inf; rescale or remove "
                f"{'them' if n > 1 else 'it'}"
            )
    if count:
        rows = int(bad.reshape(t.shape[0], -1).any(1).sum())
        raise InitlabError(
            f"{what} has {count} NaN/inf value(s) (in {rows} of {t.shape[0]} examples): "
            "remove or impute them"
        )
    return t
