"""The valid range of every number and name in a :class:`~initlab.config.RunConfig`.

One table, :data:`RANGES`, says what each numeric setting may be; :func:`check_number`
enforces it with a one-line :class:`InitlabError` that names the field, the value and the
range (``limit_train must be an integer >= 1 (or unset: all examples), got -5``). Integers
are ``int`` but never ``bool`` (TOML ``epochs = true`` is refused); real numbers must be
finite (NaN and ±inf are refused everywhere). :func:`check_device` checks the *syntax* of a
device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); whether it exists is checked when
the run starts. :func:`check_model_args` keeps ``model_args`` to what a TOML file can say
(strings, numbers, booleans and lists of them), which is also what a run key can hash.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from initlab.errors import InitlabError, closest_name

MAX_INT = 2**63 - 1
"""The largest integer SQLite (the results store) and ``torch.manual_seed`` both accept."""
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_SYNTAX = "auto, cpu, cuda, cuda:N or mps"
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
MEANT = {"gpu": "cuda", "nvidia": "cuda", "metal": "mps", "apple": "mps"}
"""Device names of other tools and their initlab spelling (``gpu`` is not a near miss of
``cpu``)."""


@dataclass(frozen=True)
class Range:
    """``low <= value`` (``<`` when ``low_open``) and ``value <= high`` (``<`` when
    ``high_open``); ``integer`` for counts; ``unset`` describes what ``None`` means
    (``None`` is refused when ``unset`` is empty)."""

    integer: bool
    low: float
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    unset: str = ""

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return above
        return above and (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``an integer >= 1``, ``a finite number in [0, 1)``, ``a finite number > 0``."""
        kind = "an integer" if self.integer else "a finite number"
        if self.high is None:
            text = f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        return text + (f" (or unset: {self.unset})" if self.unset else "")


def _num(value: float) -> str:
    """``1``, ``0.5``, ``9223372036854775807`` (an int as it is), ``1e+38`` (a large float)."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}" if abs(value) >= 1e16 else str(value)


FLOAT32_LIMIT = 1e38
"""The largest magnitude a float setting may have: float32, which training computes in,
ends near 3.4e38 (1e308 passed every check and failed each run's first step)."""

RANGES: dict[str, Range] = {
    "epochs": Range(True, 1),
    "batch_size": Range(True, 1),
    "seed": Range(True, 0, high=MAX_INT),
    "val_size": Range(True, 0, unset="the dataset's default"),
    "limit_train": Range(True, 1, unset="all examples"),
    "lr": Range(False, 0, low_open=True, high=FLOAT32_LIMIT),
    "momentum": Range(False, 0, high=1, high_open=True),
    "weight_decay": Range(False, 0, high=FLOAT32_LIMIT, unset="the optimizer's default"),
    "dropout": Range(False, 0, high=1, high_open=True),
    "warmup_steps": Range(True, 0, high=MAX_INT),
    "clip_norm": Range(False, 0, low_open=True, high=FLOAT32_LIMIT, unset="no clipping"),
}
"""Every numeric setting's range. ``val_size = 0`` is meaningful (no validation set)."""


def check_number(name: str, value: Any) -> Any:
    """``value`` if it lies in ``RANGES[name]``, else :class:`InitlabError` (one line)."""
    rule = RANGES[name]
    if value is None and rule.unset:
        return None
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    is_real = is_int or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    ok = is_int if rule.integer else is_real and math.isfinite(value)
    if not ok or not rule.contains(value):
        raise InitlabError(f"{name} must be {rule.describe()}, got {value!r}")
    if is_int and value > MAX_INT:  # the store keeps counts as SQLite integers
        raise InitlabError(f"{name} must be at most 2^63 - 1, got {value}")
    return value


def check_device(value: Any) -> str:
    """``value`` as initlab spells a device (``" CUDA:1"`` → ``"cuda:1"``; syntax only: whether
    this machine has it is checked when the run starts). Anything else is one
    :class:`InitlabError` line, ``device must be auto, cpu, cuda, cuda:N or mps, got 'gpu';
    did you mean 'cuda'?``, the hint from :data:`MEANT` or the closest name, if any."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text is not None and DEVICE_PATTERN.fullmatch(text):
        return text
    guess = f"; did you mean '{hint}'?" if text and (hint := _device_hint(text)) else ""
    raise InitlabError(f"device must be {DEVICE_SYNTAX}, got {value!r}{guess}")


def _device_hint(text: str) -> str | None:
    """The device ``text`` likely means: another tool's name for it (:data:`MEANT`), its
    index kept (``gpu:1``, ``cuda1`` → ``cuda:1``), else the closest name."""
    match = re.fullmatch(r"([a-z]+):?(\d*)", text)
    if match:
        stem = MEANT.get(match.group(1), match.group(1))
        if stem == "cuda":
            return f"cuda:{match.group(2)}" if match.group(2) else "cuda"
        if stem in DEVICES:
            return stem
    return closest_name(text, DEVICES)


def check_hidden(widths: Any) -> None:
    """Hidden widths: each an integer >= 1."""
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, numbers.Integral)]
    if bad or any(w < 1 for w in widths):
        raise InitlabError(f"hidden widths must be integers >= 1, got {list(widths)!r}")


def check_model_args(value: Any) -> dict[str, Any]:
    """``model_args``: a table whose keys are Python identifiers and whose values are
    strings, booleans, finite numbers or (nested) lists of them — what TOML can express."""
    if not isinstance(value, Mapping):
        raise InitlabError(f"model_args must be a table of keyword arguments, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InitlabError(f"model_args keys must be argument names, got {key!r}")
        if not is_plain_value(item):
            raise InitlabError(
                f"model_args.{key} must be a string, number, boolean or a list of them "
                f"(finite numbers only), got {item!r}"
            )
    return dict(value)


def is_plain_value(value: Any) -> bool:
    """``True`` for a string, bool, int, finite float, or a list/tuple of such values."""
    if isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(is_plain_value(v) for v in value)
    return False
