"""Checking and normalising one setting's value, before anything runs.

Every value a spec (or ``initlab compare``) gives for a :class:`~initlab.config.RunConfig`
field goes through :func:`check_setting`: it checks the type, looks names up in their
registries (initializers, activations, datasets, optimizers, models, tasks, precisions) and
checks numbers against their ranges (:mod:`initlab.ranges`), so that a typo fails up front
with one line naming the setting, the value and the valid range or closest valid name.
Names are normalised where that cannot change a run's numbers (``FashionMNIST`` →
``fashion-mnist``, ``ReLU`` → ``relu``), so spellings do not split a run's identity.
User model and data specs (``module:function``, ``file.py:function``, ``file.npz``) are
checked for syntax only: nothing is imported until the sweep starts. One keyword argument of
a user model is a setting of its own, ``model_args.<name>``
(:func:`initlab.setting_names.is_setting`).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

import initlab.activations as activations
import initlab.data as data
import initlab.initializers as initializers
from initlab.apply import BIAS_POLICIES
from initlab.config import (
    AS_BUILT,
    OPTIMIZERS,
    PRECISIONS,
    SAME,
    SCHEDULES,
    TASKS,
    RunConfig,
    output_scheme,
    plain,
)
from initlab.errors import InitlabError, UnknownNameError, a_or_an, shown
from initlab.models import ARCHITECTURES
from initlab.ranges import (
    FLOAT32_LIMIT,
    MAX_INT,
    RANGES,
    check_device,
    check_hidden,
    check_model_args,
    check_number,
)
from initlab.residual.names import ACCEPTED as RESIDUAL_ACCEPTED
from initlab.setting_names import MODEL_ARG, SETTINGS
from initlab.usercode.specs import is_data_file, is_user_spec, split_spec

ALIASES = {"data": "dataset"}
"""Other names a spec may use for a setting (issue #12 calls the data ``data``)."""
SPEC_MODEL = "a name (mlp, cnn), 'module:function' or 'file.py:function'"
SPEC_DATA = "a dataset name, 'module:function', 'file.py:function' or a file (.npz, .pt)"
_HINTS = typing.get_type_hints(RunConfig)


def check_setting(key: str, value: Any) -> Any:
    """``value`` checked and normalised for setting ``key``; :class:`InitlabError` if bad.

    The message names the setting, the value and the valid range, but not where it came
    from; callers add that context. Numpy scalars count as Python's (:func:`plain`: an
    ``int64`` is an int, a ``torch.device`` its string), and come back as Python's. A
    number that may be unset (``clip_norm``, ``limit_train``, ``weight_decay``, ...) takes
    ``"none"`` for ``None``, which TOML cannot write.
    """
    value = plain(value)
    if key.startswith(MODEL_ARG) and key != MODEL_ARG:
        name = key[len(MODEL_ARG) :]
        return _model_args({name: value})[name]
    if key not in _HINTS:
        raise UnknownNameError("setting", key, SETTINGS)
    checker = _CHECKERS.get(key)
    if checker is not None:
        return checker(value)
    if key in RANGES:
        unsettable = bool(RANGES[key].unset) and isinstance(value, str)
        if unsettable and value.strip().lower() == "none":
            return None  # TOML has no null: "none" unsets (clip_norm = ["none", 1.0])
        try:
            value = check_number(key, value)
        except InitlabError as exc:
            if not unsettable:
                raise
            raise InitlabError(f'{exc} ("none" unsets it in a spec)') from None

        return value if RANGES[key].integer or value is None else float(value)
    return _check_type(key, value)


def check_keyword_settings(settings: Mapping[str, Any]) -> None:
    """Settings given as Python keywords (``compare``'s, ``trials``'): a spec's
    ``model_args.<name>`` key → one line saying to pass ``model_args={name: value}`` (it
    reached ``RunConfig`` as an unknown field, a TypeError)."""
    for key in settings:
        if isinstance(key, str) and key.startswith(MODEL_ARG):
            name = key[len(MODEL_ARG) :]
            raise InitlabError(
                f"{key}= is how a spec names a factory argument; from Python pass "
                f"model_args={{{name!r}: ...}}"
            )


def _check_type(key: str, value: Any) -> Any:
    """Check ``value`` against the field's annotation (booleans are booleans)."""
    hint = _HINTS[key]
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if value is None:
        if optional:
            return None
        raise InitlabError(f"{key} cannot be empty (null)")
    if base is bool and not isinstance(value, bool):
        raise InitlabError(f"{key} must be true or false, got {shown(value)}")
    if base is str and not isinstance(value, str):
        raise InitlabError(f"{key} must be a string, got {shown(value)}")
    RunConfig(**{key: value})  # the config's own checks for anything not covered above
    return value


def _init_spec(key: str) -> typing.Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if key == "output_init":
            value = output_scheme(value)  # "same": the hidden layers' scheme, stored as None
        if value is None and key == "output_init":
            return None
        if not isinstance(value, str):
            raise InitlabError(f"{key} must be an initializer spec string, got {shown(value)}")
        try:
            init = initializers.parse(value)
        except UnknownNameError as exc:  # "smae": suggest "same" too, a valid output_init
            more = [SAME] if key == "output_init" else []
            raise UnknownNameError(exc.kind, exc.name, [*exc.choices, *more]) from None
        if key == "embedding_init" and getattr(init.sampler, "data_dependent", False):
            raise InitlabError(
                f"embedding_init '{value}' rescales layer outputs on data and cannot set an "
                "embedding table; give a distribution, e.g. normal(std=0.02) or lecun_normal"
            )
        return AS_BUILT if init.name == AS_BUILT else _named_as_registered(value, init.name)

    return check


def _named_as_registered(spec: str, name: str) -> str:
    """``spec`` with its scheme named as the registry names it (``HE-Normal(gain=2)`` →
    ``he_normal(gain=2)``), its arguments as given: spellings do not split a run's
    identity, and ``he_normal,HE_NORMAL`` is the same init named twice."""
    head, paren, rest = spec.strip().partition("(")
    return spec if head == name else name + paren + rest


def _activation(value: Any) -> str:
    if not isinstance(value, str):
        raise InitlabError(f"activation must be a name, got {shown(value)}")
    return activations.get(value).name


def _dataset(value: Any) -> str:
    """A built-in dataset (normalised name) or a user data spec (``module:function``,
    ``file.py:function``, ``file.npz``/``.pt``; read when the sweep starts)."""
    if callable(value):
        raise InitlabError(_not_in_a_spec(value, "data", SPEC_DATA))
    if not isinstance(value, str):
        raise InitlabError(
            f"a spec's data is {SPEC_DATA}, not {_kind(value)}: save arrays with "
            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...) and give the "
            "path, or pass them to initlab.compare(data=...) or initlab.sweep.run(spec, data=...)"
        )
    if is_user_spec(value):
        if not is_data_file(value):
            split_spec(value, "--data")
        return value
    return data.canonical_name(value)


def _model(value: Any) -> str:
    """A built-in architecture or a user factory (``module:function``,
    ``file.py:function``); the factory is imported only when the sweep starts."""
    if isinstance(value, str) and is_user_spec(value) and not is_data_file(value):
        split_spec(value, "--model")
        return value
    if callable(value):
        raise InitlabError(_not_in_a_spec(value, "model", SPEC_MODEL))
    if value not in ARCHITECTURES:
        raise UnknownNameError("model", str(value), (*ARCHITECTURES, "module:function"))
    return value


def _kind(value: Any) -> str:
    """``a tuple of 4 ndarray``, ``a Tensor``: what a Python value is, without its repr."""
    if isinstance(value, (tuple, list)) and value:
        kinds = sorted({type(v).__name__ for v in value})
        return f"a {type(value).__name__} of {len(value)} {'/'.join(kinds)}"
    return a_or_an(type(value).__name__)


def _not_in_a_spec(value: Any, key: str, takes: str) -> str:
    """A spec's ``key`` given a Python object (a function, a class): what it takes instead,
    and that :func:`initlab.compare` takes the object itself (no object repr)."""
    name = getattr(value, "__name__", None) or type(value).__name__
    return (
        f"a spec's {key} is {takes}, not a Python object ({name}); a callable works with "
        f"initlab.compare({key}={name}) or initlab.sweep.run(spec, {key}={name})"
    )


def _choice(kind: str, choices: tuple[str, ...]) -> typing.Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise UnknownNameError(kind, str(value), choices)
        return value

    return check


def _bias(value: Any) -> str | float:
    if isinstance(value, bool):
        raise InitlabError(f"bias must be {', '.join(BIAS_POLICIES)}, a number or a spec")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > FLOAT32_LIMIT:
            raise InitlabError(
                f"bias must be a finite number within ±{FLOAT32_LIMIT:g} (float32), got {value}"
            )
        return float(value)
    if not isinstance(value, str):
        raise InitlabError(f"bias must be {', '.join(BIAS_POLICIES)}, a number or a spec")
    if value not in BIAS_POLICIES:
        from initlab.apply import resolve_bias

        resolve_bias(value)  # "unknown bias 'foo'", naming the policies, not the registry
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
            message = f"hidden widths must be integers like [300, 100]; got {shown(value)}"
            raise InitlabError(message) from None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in value
    ):
        raise InitlabError(f"hidden must be a list of widths like [300, 100], got {shown(value)}")
    check_hidden(value)
    return tuple(value)


def _track(value: Any) -> str | int:
    if value in ("epoch", "off") or (
        isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT
    ):
        return value
    raise InitlabError(
        f"track must be 'epoch', 'off' or a step count in [1, 2^63 - 1], got {shown(value)}"
    )


def _model_args(value: Any) -> dict[str, Any]:
    """A table of keyword arguments; lists become lists (TOML/YAML/JSON agree)."""
    return {k: _plain(v) for k, v in check_model_args(value).items()}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _extra(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InitlabError(f"extra must be a table of key = value, got {shown(value)}")
    return dict(value)


_CHECKERS: dict[str, typing.Callable[[Any], Any]] = {
    "init": _init_spec("init"),
    "output_init": _init_spec("output_init"),
    "embedding_init": _init_spec("embedding_init"),
    "activation": _activation,
    "dataset": _dataset,
    "optimizer": _choice("optimizer", OPTIMIZERS),
    "lr_schedule": _choice("lr_schedule", SCHEDULES),
    "model": _model,
    "model_args": _model_args,
    "residual_init": _choice("residual rule", RESIDUAL_ACCEPTED),
    "task": _choice("task", TASKS),
    "precision": _choice("precision", PRECISIONS),
    "device": check_device,
    "bias": _bias,
    "hidden": parse_hidden,
    "track": _track,
    "extra": _extra,
}
