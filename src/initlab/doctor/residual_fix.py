"""The doctor's residual rule: added to its plan when the plan alone leaves the residual
stream exploding, and only when the rule measurably fixes that.

Per-layer schemes cannot stop a residual stream without norms from growing: each branch
adds a fixed share c of the stream's variance, so it grows as (1 + c)^L whatever the layers'
schemes. Whether a model's stream is renormalised (pre-norm, post-norm, a norm after the
sum, in a block or beside it) is read from the model as it runs, not from its module tree:
the plan is applied, and when the diagnosis still finds the signal exploding
(:data:`EXPLODING`) and the model has residual branches, the plan is applied again with
:data:`RULE` (each branch's last layer × 1/√L: (1 + c/L)^L ≤ e^c, GPT-2's scaling); the
rule is kept only if it removes those findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from initlab.doctor.plan import Plan
from initlab.probe import Diagnosis

RULE = "depth_scaled"
EXPLODING = ("exploding_activations", "exploding_gradients", "large_logits")
"""The findings a residual stream growing with depth causes."""
REASON = (
    "the plan alone left {found}: its {depth} residual branches add at full scale, so the "
    "stream grows as (1 + c)^L whatever the layers' schemes; with each branch's last layer "
    "× 1/√L they went away"
)


def with_residual_rule(
    plan: Plan, after: Diagnosis, apply: Callable[[Plan], tuple[nn.Module, Diagnosis]]
) -> tuple[Plan, nn.Module | None, Diagnosis]:
    """``(plan, model, diagnosis)``: ``plan`` with :data:`RULE` when the module docstring's
    test says so, with the model ``apply(plan)`` built and its diagnosis; else ``plan``
    unchanged, ``None`` and ``after``."""
    found = [f for f in EXPLODING if f in after.names]
    structure = plan.residual
    if not found or structure is None or not structure.branches:
        return plan, None, after
    ruled = dataclasses.replace(plan, residual_rule=RULE)
    model, fixed = apply(ruled)
    if any(f in fixed.names for f in EXPLODING):
        return plan, None, after
    reason = REASON.format(found=", ".join(found), depth=structure.depth)
    return dataclasses.replace(ruled, residual_reason=reason), model, fixed
