"""Settings a run would silently ignore, refused in one line before anything runs.

Each setting's own value is checked by :func:`initlab.sweep.values.check_setting`; these
checks judge settings together: the architecture settings a model does not use
(``hidden`` on a user's factory, ``model_args`` on a built-in model) and ``momentum``
beside an optimizer that has none. :func:`initlab.compare`, a sweep's preflight and dry
run, ``initlab.trials`` and the command line's options all say them in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

from initlab.config import RunConfig, unused_settings, used_settings
from initlab.errors import InitlabError
from initlab.models import model_arg_option
from initlab.usercode.inprocess import shown_spec
from initlab.usercode.specs import is_user_spec


def check_architecture_settings(config: RunConfig) -> None:
    """Raise :class:`InitlabError` (one line) for settings the model would silently ignore:
    ``model_args`` on a built-in model, ``hidden``/``activation``/``batch_norm``/``dropout``/
    ``residual`` changed from their defaults on a user factory (it builds its own layers),
    ``hidden``/``dropout``/``residual`` on the ``cnn``."""
    user = is_user_spec(config.model)
    if config.model_args and not user:
        takes = ", ".join(used_settings(config.model))
        raise InitlabError(
            f"model_args {config.model_args} are for a model factory (module:function); "
            f"the built-in '{config.model}' takes {takes}"
        )
    ignored = unused_settings(config.model)
    default = RunConfig()
    changed = [n for n in ignored if getattr(config, n) != getattr(default, n)]
    if changed:
        given = ", ".join(f"{n}={shown_value(getattr(config, n))}" for n in changed)
        fix = f"pass your factory's own settings as {model_arg_option()}"
        raise InitlabError(unused_line(given, config.model, len(changed), fix))


def check_momentum_used(given: str, optimizers: Sequence[object]) -> None:
    """``momentum`` given where no run's optimizer is ``momentum`` (SGD with momentum): plain
    ``sgd`` has none and Adam's moments have their own betas, so it would be ignored (and,
    being a setting, still split the runs' keys) → one line."""
    if "momentum" in optimizers:
        return
    used = ", ".join(dict.fromkeys(map(str, optimizers)))
    raise InitlabError(
        f"{given}: the optimizer {used} does not use it (momentum is optimizer 'momentum', "
        "SGD with momentum; adam/adamw have their own betas); set optimizer to 'momentum'"
    )


def unused_line(given: str, model: str, count: int, fix: str) -> str:
    """``hidden=100: the model build does not use it (only the built-in mlp does); FIX``
    (``fix`` for a user's factory; a built-in model is told to leave them out)."""
    them = "it" if count == 1 else "them"
    fix = fix if is_user_spec(model) else f"leave {them} out"
    return (
        f"{given}: the model {shown_spec(model)} does not use {them} (only the built-in mlp "
        f"does); {fix}"
    )


def shown_value(value: object) -> str:
    """A setting's value as a command line gives it (widths ``300,100``)."""
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
