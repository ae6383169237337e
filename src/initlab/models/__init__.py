"""Model builders: MLPs (plain, batch-norm, residual) and a small CNN."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from initlab.errors import InitlabError, UnknownNameError, closest_name, option
from initlab.models.cnn import SmallCNN
from initlab.models.mlp import MLP

ARCHITECTURES = ("mlp", "cnn")


def model_arg_option() -> str:
    """How the user gives a factory's keyword: ``--model-arg NAME=VALUE (model_args in a
    spec)`` on the command line, ``model_args={NAME: VALUE}`` from Python."""
    return option("--model-arg NAME=VALUE (model_args in a spec)", "model_args={NAME: VALUE}")


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
    from initlab.usercode import given_as, load_callable

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
            f"{given_as('--model', spec)}: the factory cannot be called with model_args {args}: "
            f"{_binding_problem(signature, args) or exc} (pass each as {model_arg_option()})"
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


def build_user_model(spec: str, model_args: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory named by ``spec`` (``module:function``, ``file.py:function``) with
    ``**model_args``; :class:`InitlabError` (one line) when it cannot be loaded, needs
    arguments it was not given, raises, or returns something that is not an ``nn.Module``.

    **This imports and runs the user's code.** The caller controls the RNG (see
    :func:`initlab.train.run.build_initialized_model`).
    """
    from initlab.usercode import a_or_an, given_as

    factory, args = check_factory_args(spec, model_args)
    try:
        with warnings.catch_warnings():  # a width of 0: the shape check says it in one line
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            built = factory(**args)
    except (Exception, SystemExit) as exc:  # sys.exit() in the factory: initlab went on
        from initlab.usercode import factory_raised

        raised = factory_raised(exc, args)
        raise InitlabError(f"{given_as('--model', spec)}: the factory raised {raised}") from None
    if not isinstance(built, nn.Module):
        raise InitlabError(
            f"{given_as('--model', spec)} returned {a_or_an(type(built).__name__)}, not a "
            "torch.nn.Module"
        )
    return built
