"""``initlab.plan``: what an init and a residual rule do to every parameter of a model.

Applies ``init`` (any :func:`initlab.initialize` scheme) and the residual rule to a *copy* of
the model and reports, per parameter, its role in the residual structure, the rule applied,
and ``rms = sqrt(mean(w²))`` and ``std`` (unbiased, ``None`` for a scalar) before → after.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab.arguments import check_module
from initlab.computed_weights import copy_failure
from initlab.embedding_init import TABLE_ROW
from initlab.errors import InitlabError, closest_name
from initlab.norm_layers import is_norm
from initlab.renamed import INIT_KEYWORDS, renamed_keywords
from initlab.residual.names import canonical_rule
from initlab.residual.rules import ResidualResult
from initlab.residual.structure import LAYERS, Structure, find_structure

ADDED = ("skipinit_gate", "fixup_scale", "fixup_bias", "fixup_bias_in")


def _stats(t: Tensor) -> tuple[float, float | None]:
    t = t.detach().double()
    rms = float(t.pow(2).mean().sqrt())
    return rms, float(t.std()) if t.numel() > 1 else None


def _rounded(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(f"{x:.6g}")


def parameter_role(structure: Structure, module_name: str, module: nn.Module, pname: str) -> str:
    """The parameter's role: its module's place in the residual structure, else its kind."""
    role = structure.role_of(module_name)
    if pname in ADDED:
        return f"{role} · {pname}" if role else pname
    if role:
        return role
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "recurrent"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if is_norm(module):
        return "norm"
    return "layer" if isinstance(module, LAYERS) else "other"


def residual_rule(scheme: Any, residual: str | None) -> str:
    """The rule :func:`initlab.initialize` applies after the schemes: ``residual`` (its
    ``residual_init``) when given, else the ``residual_rule`` a :class:`~initlab.doctor.Plan`
    carries (so ``initialize(model, plan)`` does what :func:`plan` showed), else ``none``. A
    ``residual`` that names another rule than the plan's (an alias is its rule) → one line."""
    planned = getattr(scheme, "residual_rule", "none") if isinstance(scheme, Mapping) else "none"
    if residual is None:
        return planned
    if planned != "none" and canonical_rule(residual) != canonical_rule(planned):
        raise InitlabError(
            f"the plan applies the residual rule '{planned}' and residual_init='{residual}' "
            f"names another: leave residual_init out, or make the plan with "
            f"residual_init='{residual}'"
        )
    return residual


PLAN_KEYWORDS = ("residual_init", "generator")
"""plan's own keywords; the rest go to :func:`initlab.initialize`."""


def _check_options(options: Mapping[str, Any], initialize: Any) -> None:
    """One line for a keyword neither :func:`plan` nor :func:`initlab.initialize` takes
    (a TypeError named initialize)."""
    valid = list(
        dict.fromkeys([*PLAN_KEYWORDS, *list(inspect.signature(initialize).parameters)[2:]])
    )
    for key in options:
        if key not in valid:
            hint = closest_name(key, valid)
            extra = f"; did you mean '{hint}'?" if hint else ""
            raise InitlabError(
                f"plan() takes no keyword '{key}'{extra} (it takes {', '.join(valid)})"
            )


@renamed_keywords(INIT_KEYWORDS)
def plan(
    model: nn.Module,
    init: Any = "default",
    *,
    residual_init: str | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
):
    """The :class:`initlab.doctor.Plan` of ``init`` + ``residual_init`` on ``model`` (which
    is left unchanged); ``options`` go to :func:`initlab.initialize` (``bias``,
    ``output_init``, ``data``...). ``residual_init=None``: ``init``'s own rule when it is a
    plan, else ``none``. The stds are those of a draw from ``generator`` (``None``: torch's
    global generator, forked: the caller's random state is left as it was).
    The plan carries the rule it applied: ``initialize(model, plan)`` applies it too."""
    from initlab.apply import initialize
    from initlab.doctor.plan import Plan, PlanEntry
    from initlab.ties import tied_names

    model = check_module(model, "plan")
    _check_options(options, initialize)
    work = _copy(model)
    before = {n: _stats(p) for n, p in work.named_parameters()}
    structure = find_structure(work, options.get("data"))
    gpus = sorted({p.device.index or 0 for p in work.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=gpus):
        record = initialize(work, init, generator=generator, residual_init=residual_init, **options)
    outcome = record.residual_result
    if outcome is not None and outcome.rule != "none":
        structure = outcome.structure
    actions = _actions(outcome)
    label = outcome.rule if outcome is not None else record.residual
    schemes = {row["layer"]: row for row in record.rows}
    first = tied_names(work)

    def rule_of(name: str) -> str:
        mname, _, pname = name.rpartition(".")
        row = schemes.get(mname)
        if row is not None and pname == "weight" and row["scheme"].startswith(TABLE_ROW):
            table = row["scheme"].removeprefix(TABLE_ROW)  # a readout whose weight is a table's
            return f"tied to {table}.weight: {rule_of(f'{table}.weight')}"
        return _rule(row, pname, actions.get(name), label)

    rows = []
    for mname, module in work.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            name = f"{mname}.{pname}" if mname else pname
            rms_b, std_b = before.get(first.get(name, name), (None, None))
            rms_a, std_a = _stats(param)
            rule = rule_of(name)
            setter = _tied_setter(name, first, schemes) if mname not in schemes else None
            if setter is not None:  # a tied tensor: the layer that owns it set it
                rule = f"tied to {setter}: {rule_of(setter)}"
            rows.append(
                {
                    "name": name,
                    "shape": list(param.shape),
                    "role": parameter_role(structure, mname, module, pname),
                    "rule": rule,
                    "rms_before": _rounded(rms_b),
                    "rms_after": _rounded(rms_a),
                    "std_before": _rounded(std_b),
                    "std_after": _rounded(std_a),
                }
            )
    entries = [
        PlanEntry(
            r["layer"], r["type"], "", r["scheme"], "from init", structure.role_of(r["layer"])
        )
        for r in record.rows
    ]
    return Plan(entries, residual=structure, residual_rule=record.residual, parameters=rows)


def _copy(model: nn.Module) -> nn.Module:
    """The copy :func:`plan` works on; a model ``copy.deepcopy`` refuses (a hook-based
    ``weight_norm`` keeps a computed weight) → one line naming the layer and what to do."""
    try:
        return copy.deepcopy(model)
    except RuntimeError as exc:
        why = "plan works on a copy of it"
        raise InitlabError(copy_failure(model, exc, "", why)) from None


def _tied_setter(name: str, first: dict[str, str], schemes: dict[str, Any]) -> str | None:
    """Another name of the tensor ``name`` (tied) whose module an init scheme set, if any
    (not a readout whose weight is an embedding table's: the table's rule sets it)."""
    for other, same in first.items():
        row = schemes.get(other.rpartition(".")[0])
        drew = row is not None and not str(row["scheme"]).startswith(TABLE_ROW)
        if other != name and same == first.get(name) and drew:
            return other
    return None


def _actions(outcome: ResidualResult | None) -> dict[str, str]:
    """Parameter name → what the residual rule did to it
    (:attr:`~initlab.residual.rules.ResidualResult.actions`), and ``"not zeroed: <activation>
    follows"`` for those a zero rule left as they were, zeroing them would have killed their
    branch (:meth:`~initlab.residual.rules.ResidualResult.kept_parameters`)."""
    if outcome is None:
        return {}
    kept = {n: f"not zeroed: {act} follows" for n, act in outcome.kept_parameters().items()}
    return {**outcome.actions, **kept}


def _rule(row: dict[str, Any] | None, pname: str, action: str | None, rule: str) -> str:
    """``"he_normal"``, ``"he_normal, then zeroed (fixup)"``, ``"added = 0 (skipinit)"``,
    ``"he_normal, not zeroed: blocks.0.act (ReLU) follows (zero_last_layer)"``,
    ``"kept"``."""
    base = "kept"
    if row is not None and "parameters" in row:  # an RNN or attention: several matrices
        base = row["parameters"].get(pname, "kept")
    elif row is not None and pname == "weight":
        base = row["scheme"]
    elif row is not None and pname == "bias":
        base = row["bias"]
    if action is None:
        return base
    if action.startswith("added"):
        return f"{action} ({rule})"
    if action.startswith("not zeroed"):
        return f"{base}, {action} ({rule})"
    return f"{base}, then {action} ({rule})"
