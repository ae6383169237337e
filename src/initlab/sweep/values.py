"""Checking and normalising one setting's value, before anything runs.

Every value a spec (or ``initlab compare``) gives for a :class:`~initlab.config.RunConfig`
field goes through :func:`check_setting`: it checks the type, looks names up in their
registries (initializers, activations, datasets, optimizers, models) and checks numbers, so
that a typo fails up front with one line naming the setting and the closest valid value.
Names are normalised where that cannot change a run's numbers (``FashionMNIST`` →
``fashion-mnist``, ``ReLU`` → ``relu``), so spellings do not split a run's identity.
"""

from __future__ import annotations

import math
import typing
from dataclasses import fields
from typing import Any

from initlab import activations, data, initializers
from initlab.config import OPTIMIZERS, RunConfig
from initlab.errors import InitlabError, UnknownNameError
from initlab.models import ARCHITECTURES

SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig))
"""Every setting a spec may name: the fields of :class:`RunConfig`."""

BIAS_WORDS = ("zeros", "keep", "torch_default")
_HINTS = typing.get_type_hints(RunConfig)


def check_setting(key: str, value: Any) -> Any:
    """``value`` checked and normalised for setting ``key``; :class:`InitlabError` if bad.

    The message names the value but not where it came from; callers add that context.
    """
    if key not in _HINTS:
        raise UnknownNameError("setting", key, SETTINGS)
    checker = _CHECKERS.get(key)
    if checker is not None:
        return checker(value)
    return _check_type(key, value)


def _check_type(key: str, value: Any) -> Any:
    """Check ``value`` against the field's annotation, then the config's number rules."""
    hint = _HINTS[key]
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if value is None:
        if optional:
            return None
        raise InitlabError(f"{key} cannot be empty (null)")
    if base is bool:
        if not isinstance(value, bool):
            raise InitlabError(f"{key} must be true or false, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InitlabError(f"{key} must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InitlabError(f"{key} must be a number, got {value!r}")
        value = float(value)
    elif base is str and not isinstance(value, str):
        raise InitlabError(f"{key} must be a string, got {value!r}")
    RunConfig(**{key: value})  # the config's own number checks (epochs >= 1, lr > 0...)
    return value


def _init_spec(key: str) -> typing.Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and key == "output_init":
            return None
        if not isinstance(value, str):
            raise InitlabError(f"{key} must be an initializer spec string, got {value!r}")
        initializers.parse(value)
        return value

    return check


def _activation(value: Any) -> str:
    if not isinstance(value, str):
        raise InitlabError(f"activation must be a name, got {value!r}")
    return activations.get(value).name


def _dataset(value: Any) -> str:
    if not isinstance(value, str):
        raise InitlabError(f"dataset must be a name, got {value!r}")
    return data.canonical_name(value)


def _choice(kind: str, choices: tuple[str, ...]) -> typing.Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise UnknownNameError(kind, str(value), choices)
        return value

    return check


def _bias(value: Any) -> str | float:
    if isinstance(value, bool):
        raise InitlabError(f"bias must be {', '.join(BIAS_WORDS)}, a number or a spec")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InitlabError(f"bias must be finite, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise InitlabError(f"bias must be {', '.join(BIAS_WORDS)}, a number or a spec")
    if value not in BIAS_WORDS:
        initializers.parse(value)
    return value


def parse_hidden(value: Any) -> tuple[int, ...]:
    """Hidden widths from a list (``[300, 100]``) or text (``"300,100"``, ``"300-100"``)."""
    if isinstance(value, str):
        text = value.replace("-", ",").strip()
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if text.lower() in ("", "none"):
            parts = []
        try:
            value = [int(p) for p in parts]
        except ValueError:
            message = f"hidden widths must be integers like [300, 100]; got {value!r}"
            raise InitlabError(message) from None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in value
    ):
        raise InitlabError(f"hidden must be a list of widths like [300, 100], got {value!r}")
    if any(w <= 0 for w in value):
        raise InitlabError(f"hidden widths must be positive, got {list(value)}")
    return tuple(value)


def _track(value: Any) -> str | int:
    if value in ("epoch", "off") or (
        isinstance(value, int) and not isinstance(value, bool) and value > 0
    ):
        return value
    raise InitlabError(f"track must be 'epoch', 'off' or a positive step count, got {value!r}")


def _extra(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InitlabError(f"extra must be a table of key = value, got {value!r}")
    return dict(value)


_CHECKERS: dict[str, typing.Callable[[Any], Any]] = {
    "init": _init_spec("init"),
    "output_init": _init_spec("output_init"),
    "activation": _activation,
    "dataset": _dataset,
    "optimizer": _choice("optimizer", OPTIMIZERS),
    "model": _choice("model", ARCHITECTURES),
    "bias": _bias,
    "hidden": parse_hidden,
    "track": _track,
    "extra": _extra,
}
