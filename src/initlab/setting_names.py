"""The settings a spec, a command or a grouping may name: the fields of
:class:`~initlab.config.RunConfig`, and ``model_args.<name>`` for one keyword argument of a
user's model.

Names only, without torch: :mod:`initlab.sweep.values` checks a setting's *value* against
the registries (inits, activations, models, datasets), which import torch, while
``initlab results --group-by`` only needs to know that a name is a setting.
"""

from __future__ import annotations

from dataclasses import fields

from initlab.config import RunConfig

SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig))
"""Every setting a spec may name: the fields of :class:`RunConfig`."""
MODEL_ARG = "model_args."
"""Prefix of one keyword argument of a user model, swept like a setting (``model_args.width``)."""


def is_setting(key: object) -> bool:
    """``True`` for a :class:`RunConfig` field or ``model_args.<argument name>``."""
    if not isinstance(key, str):
        return False
    return key in SETTINGS or (key.startswith(MODEL_ARG) and key[len(MODEL_ARG) :].isidentifier())
