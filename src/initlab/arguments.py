"""What the per-model functions (``initialize``, ``plan``, ``recommend``, ``diagnose``)
accept, checked once: a built ``nn.Module`` (not its class or factory) and a batch of inputs
as a tensor or array that the model can run on; and ``compare``'s own arguments. Each
wrong argument is one :class:`~initlab.errors.InitlabError` line saying what to pass,
raised before any work."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab.errors import InitlabError


def check_module(model: object, caller: str) -> nn.Module:
    """``model`` if it is an ``nn.Module``; else one line: a class is to be instantiated, a
    factory to be called."""
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise InitlabError(
            f"{caller} needs a model, not the class {model.__name__}: pass {model.__name__}(...)"
        )
    if callable(model):
        name = getattr(model, "__name__", "the factory")
        raise InitlabError(f"{caller} needs a built model, got {name}: call it first")
    raise InitlabError(f"{caller} needs an nn.Module, got {type(model).__name__}")


def as_inputs(model: nn.Module, inputs: Any) -> Tensor:
    """``inputs`` (a tensor or array) as a tensor on the device of the model's first
    parameter (a model moved to ``cuda`` takes a numpy batch as it is), converted by the
    data loader's rule (:func:`initlab.data.tasks.cast_inputs`): signed integers are token
    ids (int64); floats, ``uint8`` pixels and ``bool`` features become the dtype of the
    model's first floating-point parameter, values unchanged (a model without one keeps a
    float batch's dtype and makes the others float32)."""
    from initlab.data.tasks import cast_inputs

    if inputs is None:
        return inputs
    try:
        x = inputs if isinstance(inputs, Tensor) else torch.as_tensor(inputs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InitlabError(
            f"inputs must be a tensor or an array, got {type(inputs).__name__} ({exc})"
        ) from None
    device = next((p.device for p in model.parameters()), x.device)
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = weight.dtype if weight is not None else torch.float32
    if weight is None and x.is_floating_point():
        dtype = x.dtype
    return cast_inputs("inputs", x, dtype).to(device)


def check_runs(model: nn.Module, inputs: Tensor | None, caller: str) -> None:
    """One line unless ``model`` runs on ``inputs`` (a batch: eval mode, no gradient; the
    RNG, the modes and the buffers left as they were: :func:`initlab.preserve.preserved`),
    as compare says it (:func:`initlab.train.preflight.run_watched`: token ids past the
    embedding, the module that failed)."""
    from initlab.preserve import preserved

    if inputs is None:
        raise InitlabError(f"{caller} needs a batch of inputs the model takes, got None")
    check_batch(inputs, caller)
    from initlab.train.preflight import run_watched

    try:
        with torch.no_grad(), preserved(model, "eval"):
            run_watched(model, inputs)
    except InitlabError as exc:  # token ids past the embedding; the module that failed
        raise InitlabError(f"{caller}: {exc}") from None


def check_batch(inputs: Tensor, caller: str) -> None:
    """One line for a batch no statistic can be read from: no examples, or NaN/inf among
    floating-point inputs (every statistic downstream would be NaN and read as an
    explosion)."""
    if inputs.dim() == 0 or len(inputs) == 0:
        raise InitlabError(
            f"{caller}: the batch of inputs has no examples (shape {list(inputs.shape)}); "
            "pass at least one, the first dimension counting them"
        )
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        bad = int((~torch.isfinite(inputs)).sum())
        raise InitlabError(f"{caller}: the inputs contain {bad} NaN/inf values; clean them first")


def check_compare_arguments(
    inits: object, model_args: object, out: object, progress: object
) -> None:
    """``compare``'s arguments that Python would only reject deep inside (``'int' object is
    not iterable``), each one line before any work: ``inits`` names (a string or a list of
    strings; ``None``: the defaults), ``model_args`` a mapping, ``out`` a path, ``progress``
    a callable."""
    names = [inits] if isinstance(inits, str) else [] if inits is None else inits
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InitlabError(
            f"inits takes init names, e.g. ['default', 'he_normal'] or 'default,he_normal'; "
            f"got {inits!r}"
        )
    if model_args is not None and not isinstance(model_args, Mapping):
        raise InitlabError(
            f"model_args takes a dict of the factory's keyword arguments, e.g. "
            f"{{'width': 64}}; got {model_args!r}"
        )
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise InitlabError(f"out takes a directory (str or Path), got {type(out).__name__}")
    if progress is not None and not callable(progress):
        raise InitlabError(
            f"progress takes a function called as progress(config, record, result), got "
            f"{type(progress).__name__}"
        )
