"""Weights that several layers hold (``decoder.weight = encoder.weight``): drawn once, by
the first of them in module order whose scheme is not a constant (:func:`drawing_order`;
:func:`tied_row` records the others), and rescaled by a data pass at the first holder only
(:func:`first_holders`). Embedding tables tied to a
readout follow their own rule (:mod:`initlab.embedding_init`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from initlab.config import AS_BUILT
from initlab.init_record import set_bias
from initlab.initializers import Initializer, fans_of_module
from initlab.initializers.basic import Constant
from initlab.notes import note

Layers = list[tuple[str, nn.Module]]


def drawing_order(layers: Layers, plan: dict[str, Initializer | None]) -> Layers:
    """``layers`` with each weight several of them hold drawn by the first holder whose
    scheme is not a constant, moved up to where the first holder was (the others keep their
    places): a readout registered before the encoder it is tied to, with ``output_init``
    ``zeros``, otherwise zeroed the encoder. The first holder draws where every scheme is a
    constant, or none is; a holder kept as built (``default``) never draws."""
    holders: dict[int, list[str]] = {}
    for name, module in layers:
        weight = getattr(module, "weight", None)
        init = plan.get(name)
        if weight is not None and init is not None and init.name != AS_BUILT:
            holders.setdefault(id(weight), []).append(name)
    drawer = {}
    for key, names in holders.items():
        varied = [n for n in names if not isinstance(plan[n].sampler, Constant)]
        drawer[key] = (varied or names)[0]
    by_name = dict(layers)
    ordered: Layers = []
    placed: set[str] = set()
    for name, module in layers:
        first = drawer.get(id(getattr(module, "weight", None)))
        for n in (first, name):
            if n is not None and n not in placed:
                ordered.append((n, by_name[n]))
                placed.add(n)
    return ordered


def first_holders(layers: Layers) -> Layers:
    """``layers`` without those whose weight an earlier one holds (tied): a data pass that
    rescaled the shared tensor at each would leave only the last one's variance right."""
    seen: set[int] = set()
    kept = []
    for name, module in layers:
        weight = getattr(module, "weight", None)
        if weight is None or id(weight) not in seen:
            kept.append((name, module))
        if weight is not None:
            seen.add(id(weight))
    return kept


def tied_row(
    name: str,
    module: nn.Module,
    init: Initializer,
    first: str,
    drawn: dict[str, Any],
    bias_init: Initializer | None,
    generator: torch.Generator | None,
    as_built: bool = False,
) -> dict[str, Any]:
    """The record of layer ``name``, whose weight is ``first``'s, drawn already (``drawn``:
    that layer's row): its own bias is set (unless ``as_built``: the layer's scheme keeps it
    as built), the weight is left as ``first`` drew it, and a note says so when this
    layer's scheme differs (an ``output_init`` of ``zeros`` on a readout tied to a hidden
    layer filled the hidden layer with zeros, unsaid)."""
    if repr(init) != drawn["scheme"] and not as_built:
        note(
            f"initialize: {name}.weight is {first}.weight (tied): drawn once, by {first}'s "
            f"{drawn['scheme']} with its fans; {name}'s {init!r} was not applied"
        )
    own = None if as_built else bias_init
    return {
        **drawn,
        "layer": name,
        "type": type(module).__name__,
        "scheme": f"tied to {first}",
        "bias": set_bias(module, own, generator, fans_of_module(module)),
    }
