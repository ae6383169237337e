"""What :func:`initlab.initialize` did, as a record: one row per initialized layer.

Each row: ``layer, type, shape, scheme, fan_in, fan_out, expected_std, std, bias`` — the
scheme's standard deviation for the layer's fans and the one measured on the weight. A
residual rule applied afterwards (:mod:`initlab.residual`) multiplies some weights by a
factor ``c`` (0 where it zeroes them): their rows then say so in a ``residual`` column
(``"× 0.5 (depth_scaled)"``), ``expected_std`` becomes ``c ×`` the scheme's and ``std`` is
measured again, so the record describes the weights as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

if TYPE_CHECKING:  # only annotated here; a runtime import closes a cycle via tied_layers
    from initlab.residual import ResidualResult

RESIDUAL_WEIGHTS = ("weight", "in_proj_weight", "q_proj_weight")
"""The parameter a row's ``std`` is measured on (a multi-head attention's: its q/k/v)."""


@dataclass
class InitRecord:
    """What :func:`initialize` did: one row per initialized layer, plus the skipped modules."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    residual: str = "none"
    """The residual rule applied after the per-layer schemes (see :mod:`initlab.residual`)."""
    residual_result: ResidualResult | None = None
    """The branches the residual rule found and what it did to each parameter."""

    def to_frame(self) -> pd.DataFrame:
        """``layer, type, shape, scheme, fan_in, fan_out, expected_std, std, bias`` per layer
        (and ``residual`` when a rule changed weights)."""
        return pd.DataFrame([{k: v for k, v in r.items() if k != "parameters"} for r in self.rows])

    def after_residual(self, model: nn.Module, result: ResidualResult) -> None:
        """Keep ``result`` and update the rows of the weights it scaled or zeroed (module
        docstring)."""
        self.residual_result = result
        if not result.actions:
            return
        self.residual = result.rule
        for row in self.rows:
            keys = (f"{row['layer']}.{kind}" for kind in RESIDUAL_WEIGHTS)
            key = next((k for k in keys if k in result.factors), None)
            row["residual"] = f"{result.actions[key]} ({result.rule})" if key else ""
            if key is None:
                continue
            module, _, name = key.rpartition(".")
            weight = getattr(model.get_submodule(module), name).detach()  # parametrized too
            row["std"] = float(weight.std()) if weight.numel() > 1 else 0.0
            if row.get("expected_std") is not None:
                row["expected_std"] *= result.factors[key]

    def __str__(self) -> str:
        text = self.to_frame().to_string(index=False) if self.rows else "(no layers initialized)"
        if self.skipped:
            lines = [f"  {s['layer']} ({s['type']}): {s['reason']}" for s in self.skipped]
            text += "\nleft as they were:\n" + "\n".join(lines)
        return text

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)


def layer_row(
    name: str, module: nn.Module, scheme: str, fans: Any, expected_std: float | None, bias: str
) -> dict[str, Any]:
    """One weight layer's row of :attr:`InitRecord.rows`: its scheme, fans (``fan_in``,
    ``fan_out``), the std its law gives (``None``: none, e.g. kept) and the std drawn."""
    weight = module.weight
    return {
        "layer": name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, weight.shape)),
        "scheme": scheme,
        "fan_in": fans.fan_in,
        "fan_out": fans.fan_out,
        "expected_std": expected_std,
        "std": float(weight.detach().std()) if weight.numel() > 1 else 0.0,
        "bias": bias,
    }


def set_bias(
    module: nn.Module, bias_init: Any, generator: torch.Generator | None, fans: Any
) -> str:
    """Draw ``module``'s bias with ``bias_init`` (``None``: keep it) and return what a record
    row says of it: ``"none"`` (no bias), the scheme, or ``"kept"``."""
    bias = getattr(module, "bias", None)
    if bias is None:
        return "none"
    if bias_init is None:
        return "kept"
    bias_init(bias, generator, fans=fans)
    return repr(bias_init)
