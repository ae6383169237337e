"""The residual rules' names (no torch import: the config and the CLI check names early)."""

from __future__ import annotations

from initlab.errors import UnknownNameError

RESIDUAL_RULES = ("none", "zero_last_layer", "zero_last_norm", "skipinit", "fixup", "depth_scaled")
ALIASES = {"zero": "zero_last_layer"}
ACCEPTED = (*RESIDUAL_RULES, *ALIASES)
"""Every name ``residual_init`` accepts (rules and aliases)."""
ADDS_PARAMETERS = ("skipinit", "fixup")
"""Rules that add parameters to the model (so the model's parameter set depends on them)."""


def canonical_rule(rule: str) -> str:
    """The rule's own name (``zero`` → ``zero_last_layer``); unknown names raise."""
    if rule not in ACCEPTED:
        raise UnknownNameError("residual rule", rule, ACCEPTED)
    return ALIASES.get(rule, rule)


ZERO_RULES = ("zero_last_layer", "zero_last_norm")
"""The rules that zero the end of each branch (a branch a ReLU ends keeps it:
:mod:`initlab.residual.rules`)."""
