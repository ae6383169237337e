"""The coordinate check sees nn.MultiheadAttention's query, key and value maps: under SP
with Adam their updates grow with width (their learning rate is not scaled by 1/width), and
under muP they do not (docs/scaling.md)."""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from initlab.scaling import coord_check

VOCAB, STEPS = 16, 12


class Attending(nn.Module):
    """Token embedding, one self-attention with a residual join, a readout."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        out, _ = self.attn(h, h, h, need_weights=False)
        return self.head(h + out)


def tokens(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences counting up by a step of 1–3 (mod 16), and the next token of each."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randint(0, VOCAB, (n, 1), generator=gen)
    step = torch.randint(1, 4, (n, 1), generator=gen)
    seq = (start + step * torch.arange(STEPS + 1)) % VOCAB
    return seq[:, :-1], seq[:, 1:]


@cache
def check(param: str):
    x, y = tokens(256)
    return coord_check(
        Attending, widths=(32, 64, 128), param=param, steps=3, seeds=3, data=(x, y, x, y)
    )


MAPS = ("attn.q_proj", "attn.k_proj", "attn.v_proj")


def update_fits(result, module: str) -> list:
    return [v for v in result.verdicts if v.metric == "update" and v.module == module]


def test_sp_with_adam_measures_the_query_and_key_updates_growing():
    result = check("sp")
    for module in ("attn.q_proj", "attn.k_proj"):
        fits = update_fits(result, module)
        assert len(fits) == 3 and all(v.ci_low > 0.5 for v in fits), fits  # ~width^0.85
    flagged = {v.module for v in result.flagged() if v.metric == "update" and v.slope > 0}
    assert "attn.q_proj" in flagged


def test_mup_keeps_every_map_flat():
    result = check("mup")
    for module in MAPS:
        fits = update_fits(result, module)
        assert fits and all(v.ci_low > -0.5 and v.ci_high < 0.5 for v in fits), fits
        assert not any(v.flagged for v in result.verdicts if v.module == module)
