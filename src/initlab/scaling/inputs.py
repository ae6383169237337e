"""The coordinate check's arguments as the user gives them, checked before any work.

Every mistake is one line (:class:`~initlab.errors.InitlabError`) saying what is wrong and
what to give instead: widths and depths are integers (a bool is not a width, 64.5 is not
one), counts are whole numbers (``steps=1.7`` is not silently 1), a learning rate is a
positive number, and ``model_args`` does not set what the check sets itself (the width, and
the depth with ``depths``). ``--model`` is resolved to a factory here too
(:func:`resolve_factory`: a built-in name, a spec or a callable).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from initlab.errors import InitlabError, option
from initlab.ranges import FLOAT32_LIMIT
from initlab.speclist import split_list
from initlab.usercode.inprocess import given_as, refuse_built
from initlab.usercode.specs import load_callable

BUILTIN = {
    "mlp": "initlab.models.scalable:mlp",
    "cnn": "initlab.models.scalable:cnn",
    "gpt": "initlab.models.gpt:gpt",
}
DEFAULT_DATA = {"gpt": "initlab.scaling.tokens:zipf_copies"}
"""The data a built-in model is checked on when none is given (otherwise ``digits``): the GPT
on text-like (Zipf) token frequencies, see docs/scaling.md §6."""
BUILT_IN = ("mlp", "cnn", "gpt")
"""Model names whose default data is theirs; a user's factory without data gets digits."""


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (an int, or a float like ``64.0``; a
    numeric string from the command line), ``None`` otherwise (a bool, 64.5, text)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def parse_sizes(option: str, sizes: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"64,128,256"`` or ``[64, 128, 256]`` → ``(64, 128, 256)``; ``None`` → ``()``. One
    line for anything else (``option`` names the argument): text that is no list, an item that
    is a bool (``True`` is not a width of 1) or not a whole number (64.5)."""
    if sizes is None:
        return ()
    try:
        items = split_list(sizes) if isinstance(sizes, str) else list(sizes)
    except (TypeError, InitlabError):
        items = None
    if items is None:
        raise InitlabError(f"{option} takes integers like 64,128,256; got {sizes!r}")
    for item in items:
        if _whole(item) is None:
            raise InitlabError(
                f"{option} takes integers like 64,128,256; got {sizes!r} "
                f"({item!r} is not an integer)"
            )
    return tuple(_whole(i) for i in items)  # type: ignore[misc]


def whole_number(name: str, value: Any) -> int:
    """``value`` as an int when it is a whole number (``5``, ``5.0``); one line otherwise
    (``steps=1.7``, ``True``, ``"5"``). Its range is checked where it is used
    (:class:`~initlab.scaling.coords.CoordSettings`)."""
    found = _whole(value) if not isinstance(value, str) else None
    if found is None:
        raise InitlabError(f"{name} must be a whole number, got {value!r}")
    return found


def learning_rate(value: Any) -> float:
    """``value`` as a float when it is a positive finite number; one line otherwise (text, a
    bool, 0, a negative number, NaN)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0 < value <= FLOAT32_LIMIT):
        raise InitlabError(
            f"{option('--lr')} must be a positive number (at most {FLOAT32_LIMIT:g}), got "
            f"{value!r} (e.g. "
            f"{option('--lr 1e-2')})"
        )
    return float(value)


def check_model_args(
    model_args: Mapping[str, Any], width_arg: str, depth_arg: str, depths: bool
) -> None:
    """One line when ``model_args`` sets the width (``width`` or the factory's own name for it,
    ``width_arg``), or the depth while ``depths`` are checked: the check sets those itself at
    every model it builds, so the user's value would be silently overridden."""
    owned = {"width": "--widths", width_arg: "--widths"}
    if depths:
        owned |= {"depth": "--depths", depth_arg: "--depths"}
    for key, flag in owned.items():
        if key in model_args:
            given = option(f"--model-arg {key}={model_args[key]}", f"model_args['{key}']")
            raise InitlabError(
                f"{given}: the check sets '{key}' itself from {option(flag)}; remove it"
            )


def resolve_factory(model: str | Callable) -> Callable:
    """A factory from ``mlp``/``gpt`` (the built-in width-parametrized ones), a
    ``module:function`` / ``file.py:function`` spec or a callable (not a built model)."""
    refuse_built(model, why="the check builds it at every width", example="lambda width: ...")
    if callable(model):
        return model
    if not isinstance(model, str):  # None: 'argument of type NoneType is not iterable'
        raise InitlabError(
            f"model takes mlp, gpt, module:function or a factory taking width=, got {model!r}"
        )
    if model in BUILTIN:
        return load_callable(BUILTIN[model], "--model")
    if ":" not in model:
        raise InitlabError(
            f"{given_as('--model', str(model))}: scaling needs a factory with a 'width' "
            "keyword: mlp, cnn, gpt, module:function or file.py:function"
        )
    return load_callable(model, "--model")


def fit_builtin(model: object, settings: Any, dataset: Any) -> Any:
    """``settings`` with the built-in ``mlp``/``cnn`` sized for ``dataset`` (its input
    shape and number of classes) where ``model_args`` does not say otherwise: their
    defaults fit ``digits``, and any other data failed on a matrix product."""
    if model not in ("mlp", "cnn"):
        return settings
    shape = tuple(int(n) for n in dataset.x_train.shape[1:])
    fitted = {"num_classes": int(dataset.num_classes)}
    if model == "mlp":
        fitted["input_size"] = int(math.prod(shape))
    else:
        fitted["input_shape"] = shape
    return replace(settings, kwargs={**fitted, **settings.kwargs})
