"""Depth fits compare the same layer at every depth (docs/scaling.md §4): the readout whatever
its name, and no name whose role changes (an nn.Sequential's ``5`` is the readout at depth 2
and a hidden layer at depth 4)."""

from __future__ import annotations

import pandas as pd
from torch import nn

from initlab.scaling import coord_check
from initlab.scaling.roles import READOUT, LayerRoles, changed_roles, matched_rows


def sequential_mlp(width: int = 16, depth: int = 2) -> nn.Module:
    layers = [nn.Flatten(), nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def test_an_mlp_at_depths_2_and_4_fits_its_readout_and_never_layer_5_across_depths():
    result = coord_check(
        sequential_mlp, widths=(16, 32), depths=(2, 4), seeds=2, steps=1, batch_size=16
    )
    depth_fits = [v for v in result.verdicts if v.axis != "width"]
    modules = {v.module for v in depth_fits}
    # `5` is the readout at depth 2 and a hidden layer at depth 4: never compared
    assert "5" not in modules and "9" not in modules
    assert {"1", "3", READOUT, "(logits)"} <= modules
    readout = {(v.metric, v.step) for v in depth_fits if v.module == READOUT}
    assert {("l1", 0), ("std", 0), ("update", 1)} <= readout
    # the width fits keep the names they have at each depth
    assert {v.module for v in result.verdicts if v.axis == "width" and v.at == 4} >= {"5", "9"}
    (line,) = [n for n in result.notes if n.startswith("depth fits")]
    assert "`5` at depth 2, `9` at depth 4" in line
    assert "`5`: readout at depth 2, hidden at depth 4" in line


def roles(readout: str, **layers: tuple[str, tuple[int, ...]]) -> LayerRoles:
    return LayerRoles(layers, readout)


def test_a_name_whose_kind_or_shape_changes_with_depth_gets_no_depth_fit():
    # a ResNet's layers.2.conv1: the downsampling block at depth 2, a plain one at depth 4
    by_depth = {
        2: roles("fc", stem=("input", (8, 1)), down=("hidden", (16, 8)), fc=("output", (10, 16))),
        4: roles("fc", stem=("input", (8, 1)), down=("hidden", (8, 8)), fc=("output", (10, 16))),
    }
    assert changed_roles(by_depth) == {"down": [(2, "hidden"), (4, "hidden")]}
    coords = pd.DataFrame(
        [(w, d, m, 1.0) for w in (8, 16) for d in (2, 4) for m in ("stem", "down", "fc")],
        columns=["width", "depth", "module", "value"],
    )
    kept = matched_rows(coords, by_depth)
    assert set(kept["module"]) == {"stem", READOUT}
    again = pd.concat([coords, coords.assign(module=coords["module"] + "[2]")])  # shared calls
    assert set(matched_rows(again, by_depth)["module"]) == {"stem", "stem[2]", READOUT, "fc[2]"}
