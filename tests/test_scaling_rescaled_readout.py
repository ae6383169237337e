"""A readout whose output the forward rescales (mup's ``MuReadout``: ``head(x) * base/width``)
is judged by the logits, not by its raw output (docs/scaling.md §3): its raw update grows as
width^1 with Adam at lr η, which the 1/width multiplier makes right."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from initlab.scaling import coord_check
from initlab.scaling.coords import COLUMNS
from initlab.scaling.evidence import readout_scale


class MuHead(nn.Module):
    """An MLP whose logits are ``head(h) * base / width`` when ``scaled``."""

    def __init__(self, width: int = 32, scaled: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU())
        self.head = nn.Linear(width, 10)
        self.mult = 32 / width if scaled else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)) * self.mult


KW = dict(widths=(32, 64, 128, 256), param="default", optimizer="adam", lr=1e-2, steps=1)


def head_update(result):
    return next(v for v in result.verdicts if v.module == "head" and v.metric == "update")


def test_a_rescaled_readout_is_not_told_to_scale_its_learning_rate():
    result = coord_check(MuHead, seeds=3, batch_size=32, **KW)
    update = head_update(result)
    assert update.slope > 0.5  # the raw update does grow, as it should under MuReadout
    assert not update.flagged and "rescaled before the logits" in update.explained
    assert "head" not in result.flagged_modules()
    assert update not in result.inconclusive()
    (note,) = [n for n in result.notes if "rescales `head`'s output" in n]
    assert "×0.125 at width 256" in note  # 32 / 256


def test_without_the_multiplier_the_readout_is_judged_on_its_own():
    result = coord_check(lambda width: MuHead(width, scaled=False), seeds=3, batch_size=32, **KW)
    update = head_update(result)
    assert update.flagged and not update.explained  # width^1 under Adam at lr η: too large
    assert "1/width" in update.sentence


def test_the_scale_is_read_only_where_the_readout_and_the_logits_differ():
    rows = [
        ("sp", w, 2, s, 0, m, "std", v)
        for w in (32, 64)
        for s in (0, 1)
        for m, v in (("head", 1.0), ("(logits)", 32 / w))
    ]
    coords = pd.DataFrame(rows, columns=COLUMNS)
    assert readout_scale(coords, "head").tolist() == [1.0, 0.5]
    same = coords.assign(value=1.0)
    assert readout_scale(same, "head") is None and readout_scale(coords, None) is None
