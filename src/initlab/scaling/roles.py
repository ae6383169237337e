"""Which layer is which across depths: the matching behind the depth fits.

A depth fit compares one layer's metric at several depths, so it must compare the *same*
layer. A name does not say so: in an ``nn.Sequential`` MLP, module ``5`` is the readout at
depth 2 and a hidden layer at depths 4 and 8. Each traced layer therefore gets a **role**
at each depth: the kind of its weight (``input``, ``hidden``, ``output``, … as
:mod:`initlab.scaling.shapes` assigns them) and the weight's shape at one width. Then:

- the model's readout (its output layer, :func:`initlab.layer_order.known_output_layer`;
  the last ``output``-kind layer when that is unknown) is matched across depths whatever its
  name, under the label :data:`READOUT`;
- any other layer is matched by name, and only when it has the same role at every depth;
  a name whose role or shape changes (``5``: the readout at depth 2, hidden at depth 4; a
  ResNet's ``layers.2.conv1``: the downsampling block at depth 2, a plain one at depth 4)
  gets no depth fit, and neither does a name missing at some depth (``blocks.7``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from initlab.scaling.coords import CoordSettings
from initlab.scaling.parametrize import parametrized
from initlab.scaling.shapes import Factory, ParamShape

READOUT = "(readout)"
"""The module label of the readout's depth fits (whatever its name at each depth)."""
LOGITS = "(logits)"

Role = tuple[str, tuple[int, ...]]
"""A layer's weight kind and shape at one width."""


@dataclass(frozen=True)
class LayerRoles:
    """The model at one depth: each layer's :data:`Role` (by module name) and the name of
    its readout (``None``: none found)."""

    layers: Mapping[str, Role]
    readout: str | None


def layer_roles(shapes: Mapping[str, ParamShape], readout: str | None) -> LayerRoles:
    """The roles of the modules owning a ``weight`` in ``shapes``; ``readout``: the output
    layer's module name, or ``None`` to take the last module whose weight is ``output``."""
    layers = {
        name.rpartition(".")[0]: (s.kind, s.shape)
        for name, s in shapes.items()
        if name.rpartition(".")[2] == "weight"
    }
    if readout is None:
        outputs = [m for m, (kind, _) in layers.items() if kind == "output"]
        readout = outputs[-1] if outputs else None
    return LayerRoles(layers, readout)


def depth_label(module: str, roles: LayerRoles) -> str:
    """The label ``module`` is matched by across depths: :data:`READOUT` for the readout,
    else its name."""
    return READOUT if module == roles.readout else module


def changed_roles(roles: Mapping[int, LayerRoles]) -> dict[str, list[tuple[int, str]]]:
    """Names present at every depth whose role (readout or not, kind, shape) is not the same
    at every depth: name → ``[(depth, kind), ...]``."""
    common = set.intersection(*(set(r.layers) for r in roles.values()))
    out = {}
    for name in sorted(common):
        seen = {(name == r.readout, r.layers[name]) for r in roles.values()}
        if len(seen) > 1:
            out[name] = [(d, r.layers[name][0]) for d, r in roles.items()]
    return out


def matched_rows(coords: pd.DataFrame, roles: Mapping[int, LayerRoles]) -> pd.DataFrame:
    """``coords`` with ``module`` relabelled by :func:`depth_label` at each depth, without
    the rows of names whose role changes between depths (:func:`changed_roles`). A depth
    missing from ``roles`` keeps its names."""
    refused = set(changed_roles(roles))
    labels = [
        module if depth not in roles else depth_label(module, roles[depth])
        for depth, module in zip(coords["depth"], coords["module"], strict=True)
    ]
    out = coords.assign(module=labels)
    return out[~out["module"].str.split("[").str[0].isin(refused)]  # lin[2] with lin


def roles_note(roles: Mapping[int, LayerRoles]) -> str:
    """The line saying how the depth fits matched layers: the readout's names and the names
    refused for a change of role."""
    names = ", ".join(f"`{r.readout}` at depth {d}" for d, r in roles.items() if r.readout)
    text = "depth fits match layers by name only where their kind and shape agree at every depth"
    if names:
        text += f"; the readout ({names}) is fitted as `{READOUT}`"
    changed = changed_roles(roles)
    if changed:
        first, where = next(iter(changed.items()))
        kinds = ", ".join(
            f"{'readout' if first == roles[d].readout else k} at depth {d}" for d, k in where
        )
        text += (
            f"; {len(changed)} name(s) change role or shape with depth and get no depth fit "
            f"(`{first}`: {kinds})"
        )
    return text


def depth_roles(factory: Factory, settings: CoordSettings) -> dict[int, LayerRoles]:
    """Per depth of ``--depths``, every layer's role and the readout
    (:mod:`initlab.scaling.roles`), from the model at the smallest width; ``{}`` without
    depths."""
    roles = {}
    for depth in settings.depths:
        built = parametrized(
            factory,
            settings.param,
            width=settings.widths[0],
            base_width=settings.base,
            optimizer=settings.optimizer,
            lr=settings.lr,
            kwargs=dict(settings.kwargs) | {"depth": depth},
            seed=settings.seeds[0],
        )
        roles[depth] = layer_roles(built.shapes, built.readout)
    return roles
