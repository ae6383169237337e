"""Branches guessed from names (a model torch.fx cannot trace, no data to run it): an
attention child's q, k and v projections are parallel, the first of a chain of m = 2, and
its q and k reach the softmax. Registration order made q → k → v → out a chain of 4, and
Fixup scaled the query and key projections (T-Fixup leaves them) and v by L^(-1/6)."""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab import initialize
from initlab.residual import find_structure

BLOCKS = 4


class Attention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])
        mask = torch.ones(16, 16).tril()[:steps, :steps]  # fx cannot trace the slice
        weights = scores.masked_fill(mask == 0, float("-inf")).softmax(-1)
        return self.proj(weights @ self.v(x))


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 16:  # data-dependent: no fx trace
            raise ValueError("context too long")
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Tiny(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width) for _ in range(BLOCKS))
        self.head = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_guessed_attention_branches_are_q_k_v_then_out():
    structure = find_structure(Tiny())
    assert structure.method == "fallback" and structure.depth == 2 * BLOCKS
    attention = structure.branches[0]
    assert attention.layers == [f"blocks.0.attn.{n}" for n in ("q", "k", "v", "proj")]
    assert attention.chain == 2 and attention.scores == ["blocks.0.attn.q", "blocks.0.attn.k"]


def test_fixup_on_guessed_branches_leaves_q_and_k_and_scales_v_by_l_to_the_minus_half():
    torch.manual_seed(0)
    model, plain = Tiny(), Tiny()
    plain.load_state_dict(model.state_dict())
    initialize(plain, "he_normal", generator=torch.Generator().manual_seed(1))
    initialize(
        model, "he_normal", generator=torch.Generator().manual_seed(1), residual_init="fixup"
    )
    attn, ref = model.blocks[0].attn, plain.blocks[0].attn
    assert torch.equal(attn.q.weight, ref.q.weight) and torch.equal(attn.k.weight, ref.k.weight)
    factor = (2 * BLOCKS) ** -0.5  # m = 2: L^(-1/(2m-2)), L = 8 branches
    torch.testing.assert_close(attn.v.weight, ref.v.weight * factor)
    assert torch.count_nonzero(attn.proj.weight) == 0
