"""Model builders: MLPs (plain, batch-norm, residual) and a small CNN."""

from __future__ import annotations

import inspect
import math
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError, UnknownNameError, closest_name, option
from initlab.models.cnn import SmallCNN
from initlab.models.mlp import MLP

ARCHITECTURES = ("mlp", "cnn")

_BUILT: weakref.WeakSet[nn.Module] = weakref.WeakSet()
"""Every model a user's factory returned in this process and still alive: a factory that
returns one of them again (``lambda: net``) would have every run train the same object."""


def factory_named(spec: str) -> str:
    """How a message names a user's model factory, wherever it was given (``--model``, a
    spec's ``model`` key, ``model=`` in Python): ``the model factory m.py:build``."""
    from initlab.usercode.inprocess import shown_spec

    return f"the model factory {shown_spec(spec)}"


def model_arg_option() -> str:
    """How the user gives a factory's keyword: ``--model-arg NAME=VALUE or model_args in a
    spec`` on the command line, ``model_args={NAME: VALUE}`` from Python."""
    return option("--model-arg NAME=VALUE or model_args in a spec", "model_args={NAME: VALUE}")


__all__ = [
    "ARCHITECTURES",
    "MLP",
    "SmallCNN",
    "build_model",
    "build_user_model",
    "model_arg_option",
]


def build_model(
    architecture: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    hidden: Sequence[int] = (300, 100),
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float = 0.0,
    residual: bool = False,
) -> nn.Module:
    """Build ``"mlp"`` or ``"cnn"`` for inputs of ``input_shape`` and ``num_classes`` outputs.

    The weights are PyTorch's defaults; :func:`initlab.initialize` sets the scheme under study.
    """
    if architecture == "mlp":
        return MLP(
            math.prod(input_shape),
            hidden,
            num_classes,
            activation,
            batch_norm=batch_norm,
            dropout=dropout,
            residual=residual,
        )
    if architecture == "cnn":
        return SmallCNN(input_shape, num_classes, activation, batch_norm=batch_norm)
    raise UnknownNameError("model", architecture, ARCHITECTURES)


def check_factory_args(
    spec: str, model_args: Mapping[str, Any] | None = None
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The factory named by ``spec`` and ``model_args`` as a dict, after checking that the
    factory can be called with them (its signature; nothing is built):
    :class:`InitlabError` (one line) for a missing or unexpected argument."""
    from initlab.usercode.specs import load_callable

    factory = load_callable(spec, "--model")
    args = dict(model_args or {})
    try:
        signature = inspect.signature(factory)
    except ValueError:  # no signature (a builtin): let the call decide
        return factory, args
    try:
        signature.bind(**args)
    except TypeError as exc:
        raise InitlabError(
            f"{factory_named(spec)} cannot be called with model_args {args}: "
            f"{_binding_problem(signature, args) or exc}; pass each as {model_arg_option()}"
        ) from None
    return factory, args


def _binding_problem(signature: inspect.Signature, args: Mapping[str, Any]) -> str:
    """Every required argument missing from ``args`` and every one the factory does not
    take, in one phrase ('' when neither explains the failure)."""
    params = signature.parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [
        p.name for p in params if p.kind in named and p.default is p.empty and p.name not in args
    ]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    known = [p.name for p in params if p.kind in named]
    unexpected = [] if takes_any else [a for a in args if a not in known]
    parts = []
    if missing:
        parts.append(f"it needs {', '.join(repr(m) for m in missing)}")
    positional = {p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY}
    for name in unexpected:
        if name in positional:
            parts.append(f"its '{name}' is positional-only: it cannot be given by name")
            continue
        hint = closest_name(name, known)
        guess = f"did you mean '{hint}'? " if hint else ""
        parts.append(f"it takes no '{name}' ({guess}it takes: {', '.join(known) or 'none'})")
    return "; ".join(parts)


def _check_materialized(model: nn.Module, named: str) -> None:
    """One line for parameters on the ``meta`` device (no storage: the data check blamed
    the data for what it could not run)."""
    for name, parameter in model.named_parameters():
        if parameter.is_meta:
            raise InitlabError(
                f"{named} returned a model whose parameters are on the meta device ({name}: "
                "no storage to train); build it on a real device, or call "
                "model.to_empty(device='cpu') in the factory before returning it"
            )


def check_float32(model: nn.Module, spec: str) -> None:
    """One line for floating-point parameters other than float32 in a model that is to
    train (a float64 model failed its first matmul on float32 batches, and the data was
    blamed); ``plan`` and ``diagnose`` take such a model as it is."""
    named = factory_named(spec)
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point() and parameter.dtype != torch.float32:
            dtype = str(parameter.dtype).removeprefix("torch.")
            bf16 = option("--precision bf16", "precision='bf16'")
            default = torch.get_default_dtype()
            fix = (
                f"torch.set_default_dtype({default}) is in effect (layers are built in it): "
                "set it back to torch.float32, or .float() the model"
                if default == parameter.dtype
                else "return the model without .double()/.half(), or .float() it"
            )
            raise InitlabError(
                f"{named} returned a model with {dtype} parameters ({name}); runs train "
                f"float32 parameters ({bf16} for bf16 autocast): {fix}"
            )


def build_user_model(
    spec: str, model_args: Mapping[str, Any] | None = None, *, checked: bool = True
) -> nn.Module:
    """Call the factory named by ``spec`` (``module:function``, ``file.py:function``) with
    ``**model_args``; :class:`InitlabError` (one line) when it cannot be loaded, needs
    arguments it was not given, raises, or returns something that is not an ``nn.Module``;
    with ``checked``, also when a run cannot train the model as it is (:func:`_check_parameters`)
    or the factory returned it before (:data:`_BUILT`). ``checked=False`` is for a caller
    that builds it on purpose where no run trains it (the dry run's size estimate, on the
    meta device) or returns it from a factory of its own, checked in turn (the doctor's
    ``planned_model``).

    **This imports and runs the user's code.** The caller controls the RNG (see
    :func:`initlab.train.run.build_initialized_model`).
    """
    from initlab.errors import a_or_an

    factory, args = check_factory_args(spec, model_args)
    try:
        with warnings.catch_warnings():  # a width of 0: the shape check says it in one line
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            built = factory(**args)
    except (Exception, SystemExit) as exc:  # sys.exit() in the factory: initlab went on
        from initlab.usercode.specs import factory_raised

        raised = factory_raised(exc, args)
        raise InitlabError(f"{factory_named(spec)} raised {raised}") from None
    if not isinstance(built, nn.Module):
        raise InitlabError(
            f"{factory_named(spec)} returned {a_or_an(type(built).__name__)}, not a torch.nn.Module"
        )
    if not checked:
        return built
    _check_materialized(built, factory_named(spec))
    if built in _BUILT:
        raise InitlabError(
            f"{factory_named(spec)} returned the same {type(built).__name__} object "
            "twice: training changes it, so every run would start from the last one's "
            "weights; build a new model on each call (return MyNet(...) from the factory, "
            "not a model made once outside it)"
        )
    _BUILT.add(built)
    return built
