"""Where a run trains and at what precision: ``--device`` and ``--precision``.

``parse_device(spec)`` is the one reading of a device name that the commands and the library
share: ``auto | cpu | cuda | cuda:N | mps`` (case and spaces ignored); anything else is one
line listing them, with the closest name (``device must be auto, cpu, cuda, cuda:N or mps,
got 'gpu'; did you mean 'cuda'?``). ``resolve_device(spec)`` turns it into a
:class:`torch.device` (``auto``: CUDA if available, else MPS if available, else the CPU) and
refuses, in one line, a device this machine does not have. ``check_precision`` does the same
for ``bf16``: allowed on the CPU and on CUDA devices that support it. ``bf16`` means
:func:`torch.autocast` around the forward pass and the loss; parameters, gradients and
optimizer state stay float32.
"""

from __future__ import annotations

import contextlib
import re

import torch

from initlab.config import PRECISIONS
from initlab.errors import InitlabError, UnknownNameError, option
from initlab.ranges import check_device


def parse_device(spec: str | torch.device) -> str:
    """``spec`` as initlab spells a device: :func:`initlab.ranges.check_device`, the one
    reading that spec files, :class:`~initlab.config.RunConfig` and the commands share."""
    return check_device(str(spec) if isinstance(spec, torch.device) else spec)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _no_cuda_reason() -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} built without CUDA"
    return "no GPU visible"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The :class:`torch.device` for ``spec``; :class:`InitlabError` (one line) when unknown
    or unavailable on this machine."""
    text = parse_device(spec)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise InitlabError(
                f"{option('--device mps')}: MPS (Apple GPU) is not available on this machine; "
                f"use {option('--device cpu')}"
            )
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    assert match is not None  # parse_device let only cuda and cuda:N through here
    if not torch.cuda.is_available():
        raise InitlabError(
            f"{option(f'--device {text}')}: CUDA is not available on this machine "
            f"({_no_cuda_reason()}); use {option('--device cpu')}"
        )
    index = int(match.group(1)) if match.group(1) is not None else None
    if index is not None and index >= torch.cuda.device_count():
        raise InitlabError(
            f"{option(f'--device {text}')}: this machine has {torch.cuda.device_count()} CUDA "
            f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1}); use one of those or "
            f"{option('--device cpu')}"
        )
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`InitlabError` (one line) unless ``precision`` runs on ``device``."""
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if precision == "fp32":
        return
    if device.type == "cpu":
        return
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return
    raise InitlabError(
        f"{option('--precision bf16')} is not supported on {device} (bf16 runs on the CPU "
        f"and on CUDA GPUs that support it); use {option('--precision fp32')}"
    )


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast(device.type, bfloat16)`` for ``bf16``; a no-op for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_name(device: torch.device) -> str:
    """``cpu``, ``mps`` or ``cuda:0 (NVIDIA H200)``: where a run trained, as stored."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
