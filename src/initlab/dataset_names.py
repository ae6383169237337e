"""The built-in datasets' names and their other spellings, without torch.

A run's key spells its dataset canonically (``fmnist`` is ``fashion-mnist``), and reading a
store computes keys to find runs of an edited user file: the names live here, apart from
:mod:`initlab.data.registry` (whose package imports torch), so that reading results never
imports the training stack.
"""

from __future__ import annotations

import re

BUILT_IN = ("fashion-mnist", "mnist", "digits", "mnist1d", "synthetic")
"""The canonical names of the built-in datasets (:func:`initlab.data.names`)."""
ALIASES = {"fmnist": "fashion-mnist", "sklearndigits": "digits", "teacher": "synthetic"}
"""Extra spellings (after :func:`name_key`) → canonical name."""


def name_key(name: object) -> str:
    """``name`` lowercased without spaces, dashes and underscores (``Fashion_MNIST`` →
    ``fashionmnist``): how two spellings of one dataset compare."""
    return re.sub(r"[\s_\-]+", "", str(name).lower())


def built_in_name(name: object) -> str | None:
    """The canonical name of the built-in dataset ``name`` spells, else ``None``."""
    key = name_key(name)
    found = {name_key(n): n for n in BUILT_IN}.get(key)
    return found or ALIASES.get(key)
