"""What the per-model functions (``initialize``, ``plan``, ``recommend``, ``diagnose``)
accept, checked once: a built ``nn.Module`` (not its class or factory) and a batch of inputs
as a tensor or array that the model can run on; and ``compare``'s own arguments. Each
wrong argument is one :class:`~initlab.errors.InitlabError` line saying what to pass,
raised before any work."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab.errors import SHOWN_CHARS, InitlabError, cut, option, shown


def check_module(model: object, caller: str) -> nn.Module:
    """``model`` if it is an ``nn.Module`` with storage; else one line: a class is to be
    instantiated, a factory to be called, a model on the ``meta`` device materialized."""
    if isinstance(model, nn.Module):
        meta = next((n for n, p in model.named_parameters() if p.is_meta), None)
        if meta is not None:
            raise InitlabError(
                f"{caller}: the model's parameters are on the meta device ({meta}: no storage); "
                + (
                    "call model.to_empty(device='cpu') first, then initialize it"
                    if caller == "initialize"
                    else "call model.to_empty(device='cpu') and initlab.initialize it first"
                )
            )
        return model
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise InitlabError(
            f"{caller} needs a model, not the class {model.__name__}: pass {model.__name__}(...)"
        )
    if callable(model):
        name = getattr(model, "__name__", "the factory")
        raise InitlabError(f"{caller} needs a built model, got {name}: call it first")
    raise InitlabError(f"{caller} needs an nn.Module, got {type(model).__name__}")


def as_inputs(model: nn.Module, inputs: Any, targets: Tensor | None = None) -> Tensor:
    """``inputs`` (a tensor or array) as a tensor on the device of the model's first
    parameter (a model moved to ``cuda`` takes a numpy batch as it is), converted by the
    data loader's rule (:func:`initlab.data.values.cast_inputs`): signed integers are token
    ids (int64); floats, ``uint8`` pixels and ``bool`` features become the dtype of the
    model's first floating-point parameter, values unchanged (a model without one keeps a
    float batch's dtype and makes the others float32). With ``targets`` (``diagnose``'s):
    ``uint8``/``bool`` inputs ``[B, T]`` with integer targets of the same shape are token
    ids (int64), as the loader reads such a sequence (:func:`initlab.data.tasks.infer_task`)
    and compare trains on it."""
    from initlab.data.values import cast_inputs

    if inputs is None:
        return inputs
    x = input_tensor(inputs)
    if targets is not None and _unsigned_sequence(x, targets):
        x = x.to(torch.int64)
    device = next((p.device for p in model.parameters()), x.device)
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = weight.dtype if weight is not None else torch.float32
    if weight is None and x.is_floating_point():
        dtype = x.dtype
    return cast_inputs("inputs", x, dtype).to(device)


def input_tensor(inputs: Any) -> Tensor:
    """``inputs`` as a tensor, its dtype and device as given (a tensor is itself); anything
    that is no tensor or array is one line."""
    try:
        return inputs if isinstance(inputs, Tensor) else torch.as_tensor(inputs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InitlabError(
            f"inputs must be a tensor or an array, got {type(inputs).__name__} ({exc})"
        ) from None


def _unsigned_sequence(x: Tensor, targets: Tensor) -> bool:
    """Whether ``x`` is ``uint8``/``bool`` ``[B, T]`` with integer targets of its shape: a
    sequence batch, whose inputs the loader reads as token ids."""
    integer = not (targets.is_floating_point() or targets.dtype.is_complex)
    return _unsigned(x) and x.dim() == 2 and integer and x.shape == targets.shape


def _unsigned(x: Tensor) -> bool:
    """``uint8`` or ``bool``: what the loader reads as features (pixels, binary features)."""
    return x.dtype in (torch.uint8, torch.bool)


def embedding_of_inputs(model: nn.Module, x: Tensor) -> str | None:
    """The name of the ``nn.Embedding`` of ``model`` that takes ``x`` itself, found by a
    forward (eval mode, no gradient, the model left as it was) stopped as that embedding is
    called; ``None`` if none does or the model fails first (:func:`check_runs` says how)."""
    from initlab.preserve import preserved

    names = {
        m: n
        for n, m in model.named_modules()
        if isinstance(m, nn.Embedding) and not isinstance(m, torch.jit.ScriptModule)
    }  # a ScriptModule takes no hooks (as in run_watched)
    if not names:
        return None
    found: list[str] = []

    def stop(module: nn.Module, args: tuple) -> None:
        if args and args[0] is x:
            found.append(names[module])
            raise _Found

    hooks = [module.register_forward_pre_hook(stop) for module in names]
    try:
        with torch.no_grad(), preserved(model, "eval"):
            model(x)
    except Exception:  # _Found, or a failure that check_runs reports
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else None


class _Found(Exception):
    """Raised by :func:`embedding_of_inputs`'s hook to stop the forward."""


def check_runs(
    model: nn.Module, inputs: Tensor | None, caller: str, given: object = None
) -> object:
    """What ``model`` returns for ``inputs`` (a batch: eval mode, no gradient; the RNG, the
    modes and the buffers left as they were: :func:`initlab.preserve.preserved`), or one line
    as compare says it (:func:`initlab.train.preflight.run_watched`: token ids past the
    embedding, the module that failed). ``given``: the inputs as the user passed them, for
    the line on ``uint8``/``bool`` ones that an embedding takes (:func:`unsigned_ids_error`)."""
    from initlab.preserve import preserved

    if inputs is None:
        raise InitlabError(f"{caller} needs a batch of inputs the model takes, got None")
    check_batch(inputs, caller)
    from initlab.train.preflight import run_watched

    try:
        with torch.no_grad(), preserved(model, "eval"):
            return run_watched(model, inputs)
    except InitlabError as exc:  # token ids past the embedding; the module that failed
        error = unsigned_ids_error(model, inputs, given, caller) or f"{caller}: {exc}"
    raise InitlabError(error)


def unsigned_ids_error(model: nn.Module, x: Tensor, given: object, caller: str) -> str | None:
    """The line for ``uint8``/``bool`` inputs ``given`` that an embedding of ``model`` takes
    as token ids (read as features, they are float as ``x``): it names the dtype the user
    passed, not the float it became; ``None`` for other inputs and other failures."""
    raw = None if given is None else input_tensor(given)
    if raw is None or not _unsigned(raw) or not x.is_floating_point():
        return None
    name = embedding_of_inputs(model, x)
    if name is None:
        return None
    dtype = str(raw.dtype).removeprefix("torch.")
    return (
        f"{caller}: the model's first layer {name} (Embedding) takes the inputs as token ids, "
        f"but they are {dtype}: initlab reads {dtype} inputs as features, as compare does "
        "(unless integer targets [B, T] of the inputs' shape make them a sequence); give "
        "token ids as int64 (e.g. x.astype('int64') or x.long())"
    )


def check_learnable(output: object, targets: Tensor, caller: str) -> None:
    """One line for integer targets of a model with a single output under the default
    loss: they are class labels, and cross-entropy over one class is 0 with every gradient
    0 (a diagnosis read it healthy), or refused for labels above 0 (counts), with no hint."""
    if isinstance(output, Tensor) and output.dim() == 0:  # .sum() in the forward: no batch
        raise InitlabError(
            f"{caller}: the model returned a scalar; return one output per example "
            f"([B, ...] for inputs of batch size {len(targets)}), not a reduction of them"
        )
    if targets.is_floating_point() or targets.dtype.is_complex:
        return
    if not isinstance(output, Tensor) or not (output.dim() == 1 or output.shape[-1] == 1):
        return
    dtype = str(targets.dtype).removeprefix("torch.")
    fix = option(
        "pass --task regression for targets that are quantities (counts), or give the "
        "model one output per class",
        "pass float targets for regression (e.g. y.float()) or a loss= of your own "
        "(e.g. loss=torch.nn.functional.mse_loss), or give the model one output per class",
    )
    raise InitlabError(
        f"{caller}: the model has 1 output and the targets are integers ({dtype}), read as "
        "class labels: a 1-output model with cross-entropy has nothing to learn (loss 0, "
        f"every gradient 0); {fix}"
    )


def check_token_targets(output: object, targets: Tensor, caller: str) -> None:
    """One line, before the targets' values are read, for targets ``[B]`` or ``[B, T']``
    that outputs ``[B, T, V]`` (per-position logits) cannot take under the default loss:
    token ids (integers, or floats that are all whole numbers) must be ``[B, T]`` (flat
    ones are named with the reshape that fixes them; outputs ``[B, V, T]`` have the
    vocabulary axis where the positions belong), other floats are regression targets,
    which need as many outputs as values."""
    from initlab.data.tasks import IGNORE_INDEX, is_integral, is_one_hot

    if not isinstance(output, Tensor) or output.dim() != 3 or targets.dim() > 2:
        return
    got, want = list(targets.shape), list(output.shape[:2])
    if not is_integral(targets):  # a regression target: one output per value fits it
        if targets.numel() == output.numel() or not bool(targets.isfinite().all()):
            return  # NaN/inf: batch_targets counts them
        raise InitlabError(
            f"{caller}: targets {got} are floats, not all whole numbers (regression), and do "
            f"not match outputs {list(output.shape)}: for logits [N, T, V] pass the token ids "
            f"{want} (integers, -100 for padding); for regression, one output per target"
        )
    if got == want or is_one_hot(targets):  # one-hot rows: batch_targets says how
        return
    ids = targets[targets != IGNORE_INDEX]
    fits = not ids.numel() or int(ids.max()) < output.shape[1]
    if got == [want[0], output.shape[2]] and fits:
        raise InitlabError(
            f"{caller}: outputs {list(output.shape)} end in the targets' length "
            f"{output.shape[2]} (targets {got}): logits must be [N, T, V], the vocabulary "
            "last; move it there in the model's forward (e.g. logits.transpose(1, 2))"
        )
    fix = f"pass y.reshape({want[0]}, {want[1]})" if targets.numel() == want[0] * want[1] else ""
    if got == want[:1]:
        fix = "for one class per sequence, make the model output [N, K] (e.g. pool over T)"
    raise InitlabError(
        f"{caller}: targets {got} do not fit outputs {list(output.shape)}: logits [N, T, V] "
        f"take token ids [N, T], here {want} (-100 for padding)" + (f"; {fix}" if fix else "")
    )


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
        raise InitlabError(f"{caller}: the inputs contain {bad} NaN/inf value(s); clean them first")


PROGRESS_ARGUMENTS = ("config", "epoch_record", "result")
"""What ``compare``'s ``progress`` is called with."""


def check_compare_arguments(
    inits: object, model_args: object, out: object, progress: object
) -> None:
    """``compare``'s arguments that Python would only reject deep inside (``'int' object is
    not iterable``), each one line before any work: ``inits`` names (a string or a list of
    strings; ``None``: the defaults; :func:`check_inits`), ``model_args`` a mapping, ``out``
    a path, ``progress`` a callable taking three arguments (:func:`check_progress`)."""
    check_inits(inits)
    if model_args is not None and not isinstance(model_args, Mapping):
        raise InitlabError(
            f"model_args takes a dict of the factory's keyword arguments, e.g. "
            f"{{'width': 64}}; got {shown(model_args)}"
        )
    check_out(out)
    check_progress(progress)


def check_out(out: object, name: str = "out", optional: bool = True) -> None:
    """``out``: a directory as a ``str`` or ``Path``, not empty (``""`` is the current
    directory: the files went there, over any of the same names), or ``None`` where
    ``optional``."""
    if out is None and optional:
        return
    if not isinstance(out, (str, os.PathLike)):
        raise InitlabError(f"{name} takes a directory (str or Path), got {type(out).__name__}")
    if not str(out).strip():
        raise InitlabError(f"{name} is empty (an unset variable?): give a directory")


def check_inits(inits: object) -> None:
    """``compare``'s ``inits``: a string of names, a list or tuple of them, or ``None``; else
    one line naming what was passed: an :class:`~initlab.initializers.Initializer` (its
    ``repr`` is the spec string to pass, so the bare repr read as a valid name), a per-layer
    plan (a :class:`~initlab.doctor.Plan` or a dict, which :func:`initlab.trials` trains
    against the model as built), or anything else (its type and a short repr)."""
    from initlab.initializers import Initializer

    names = [inits] if isinstance(inits, str) else [] if inits is None else inits
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return
    items = list(names) if isinstance(names, (list, tuple)) else [names]
    wrong = next(item for item in items if not isinstance(item, str))
    if isinstance(wrong, Initializer):
        spec = repr(wrong)
        fixed = [repr(i) if isinstance(i, Initializer) else i for i in items]
        example = f", e.g. inits={fixed!r}" if len(repr(fixed)) <= SHOWN_CHARS else ""
        what = f"{spec!r}" if len(spec) <= SHOWN_CHARS else "(repr() of it)"
        raise InitlabError(
            f"inits: {cut(spec)} is an Initializer object; pass its spec string {what}{example}"
        )
    if isinstance(wrong, Mapping):
        raise InitlabError(
            f"inits takes init names, not a {type(wrong).__name__}: to train a per-layer plan "
            "against the model as built, use initlab.trials(model=..., data=...); compare "
            "takes names, e.g. ['default', 'he_normal']"
        )
    raise InitlabError(
        f"inits takes init names, e.g. ['default', 'he_normal'] or 'default,he_normal'; "
        f"got {shown(wrong)} ({type(wrong).__name__})"
    )


def check_progress(
    progress: object, name: str = "progress", arguments: tuple[str, ...] = PROGRESS_ARGUMENTS
) -> None:
    """``compare``'s ``progress``: ``None`` (or ``False``: nothing is called) or a callable
    that takes ``(config, epoch_record, result)`` positionally, as each epoch and each
    finished run call it (a one-argument lambda failed only after the first run had
    trained, and its results were lost). A callable without a readable signature (a
    builtin) is let through. ``name``, ``arguments``: another callback's (``initlab.trials``'
    ``on_epoch(config, epoch_record)``)."""
    if progress is None or progress is False:
        return
    expected = f"{name}({', '.join(arguments)})"
    if not callable(progress):
        raise InitlabError(
            f"{name} takes a function called as {expected} (or None), got {type(progress).__name__}"
        )
    try:
        signature = inspect.signature(progress)
    except (TypeError, ValueError):  # a builtin or an object without one: it may still work
        return
    try:
        signature.bind(*(None for _ in arguments))
    except TypeError:
        called = getattr(progress, "__name__", type(progress).__name__)
        raise InitlabError(
            f"{name} is called as {expected}, {len(arguments)} positional arguments, but "
            f"{cut(f'{called}{signature}')} cannot take them; define it as {expected}"
        ) from None
