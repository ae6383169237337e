"""Which modules carry width but have no coordinate rows, so that no verdict covers them.

The coordinate check measures the outputs of Linear/Conv/Embedding layers, of multi-head
attention's maps (the probe's tracer) and the hidden states of ``nn.RNN``/``nn.LSTM``/``nn.GRU``
(:mod:`initlab.scaling.recurrent`). A module that applies width-sized matrices of its own some
other way (a hand-written recurrent cell, an ``einsum`` with a bare ``nn.Parameter``), or a
recurrent module fed a ``PackedSequence``, is rescaled by the parametrization but never
measured: "nothing moves with width" would then be said of a model whose width-carrying part
nobody looked at. :func:`unmeasured_modules` finds them by comparing parameter shapes at two
widths (as :mod:`initlab.scaling.shapes` does) against the modules in the coordinate table;
:func:`unmeasured_note` names them, and the check's outcome is then ``"unmeasured"``, never
``"flat"`` (:attr:`initlab.scaling.check.ScalingResult.outcome`).

Only a width-dependent parameter of two or more dimensions none of size 1 counts: a matrix
the module applies. A normalization's gain, a bias, a ``cls`` token ``[1, 1, w]`` or a
position embedding ``[1, T, w]`` is added or multiplied elementwise, and the next measured
layer reads its effect. Of the model's own parameters (the root module's), beside measured
layers, only a matrix with two width-sized dimensions counts (a hand-written RNN's
recurrent ``U [w, w]``): a position table ``[T, w]`` there is added to the stream the next
layer reads; with nothing else measured (an MLP of bare parameters), every one counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from torch import nn

from initlab.errors import some_names
from initlab.scaling.coords import LOGITS, CoordSettings
from initlab.scaling.shapes import Factory, shapes_of

MEASURED = (
    "the check reads the outputs of Linear/Conv/Embedding/attention layers and the hidden "
    "states of nn.RNN/LSTM/GRU (not a PackedSequence)"
)
"""What the coordinate check measures, as :func:`unmeasured_note` says it."""


def unmeasured_modules(
    factory: Factory, settings: CoordSettings, coords: pd.DataFrame
) -> list[dict[str, Any]]:
    """The modules with width-dependent matrices (module docs) that have no rows in
    ``coords``, in model order: ``{module, type, parameters}`` (``module`` ``"(model)"`` for
    the root). Shapes at the smallest and the largest width, at the first depth (on ``meta``
    when the factory allows it: nothing is initialized)."""
    kwargs = dict(settings.kwargs) | ({"depth": settings.depths[0]} if settings.depths else {})
    small = shapes_of(factory, settings.widths[0], kwargs)
    large = shapes_of(factory, settings.widths[-1], kwargs)
    measured = {str(m).split("[")[0] for m in coords["module"].unique()} - {LOGITS}
    found: dict[str, dict[str, Any]] = {}
    for name, (shape, module, pname, _) in large.items():
        owner = name[: -len(pname) - 1] if name != pname else ""
        if shape == small[name][0] or len(shape) < 2 or 1 in shape:
            continue
        grown = sum(a != b for a, b in zip(shape, small[name][0], strict=False))
        if not owner and grown < 2 and measured:  # the root's [T, w] table, added to a stream
            continue
        if _is_measured(owner, module, measured):
            continue
        entry = found.setdefault(
            owner, {"module": owner or "(model)", "type": type(module).__name__, "parameters": []}
        )
        entry["parameters"].append(name)
    return list(found.values())


def _is_measured(owner: str, module: nn.Module, measured: set[str]) -> bool:
    """Whether module ``owner`` has coordinate rows of its own (a multi-head attention: of
    its projections, ``attn.q_proj``, which the tracer names under it). The root's own
    matrices (``""``: a hand-written RNN's ``W`` and ``U`` beside ``emb`` and ``head``) and
    a cell's bare ones beside a measured ``Linear`` are not measured by the rows of others."""
    if not owner:
        return False  # the root's rows are the logits: its own matrices are not measured
    parts = isinstance(module, nn.MultiheadAttention)
    return owner in measured or (parts and any(m.startswith(f"{owner}.") for m in measured))


def unmeasured_note(missing: list[Mapping[str, Any]], coords: pd.DataFrame) -> list[str]:
    """One note naming the :func:`unmeasured_modules` and what the verdicts do cover
    (``[]`` when none is missing)."""
    if not missing:
        return []
    names = [f"`{m['module']}` ({m['type']})" for m in missing]
    verb = "changes with width but is" if len(names) == 1 else "change with width but are"
    covered = [
        "the model logits" if m == LOGITS else f"`{m}`" for m in dict.fromkeys(coords["module"])
    ]
    return [
        f"{some_names(names, 5)} {verb} not measured: {MEASURED}; its verdicts cover "
        f"{some_names(covered, 6)} only, so what {'it does' if len(names) == 1 else 'they do'} "
        'with width is unknown and the check does not say "nothing moves with width" '
        '(outcome "unmeasured"; verdicts.json "unmeasured")'
    ]
