"""A small GPT (Radford et al. 2019; nanoGPT's layout): pre-norm transformer blocks.

``tokens [B, T] → tok_emb + pos_emb → depth × Block → ln_f → head → logits [B, T, V]`` with
``Block(x) = x + attn(ln1(x)); x + mlp(ln2(x))``: two residual branches per block, so
``2·depth`` in all. ``attn`` is causal multi-head self-attention with explicit ``q``, ``k``,
``v`` and output ``proj`` Linear layers; its logits are ``attn_scale · q·k`` with
``attn_scale = 1/sqrt(head_dim)`` by default (muP sets ``1/head_dim``: change the attribute).
``mlp`` is ``fc (width → mlp_ratio·width) → GELU → proj``. The residual output projections
are ``attn.proj`` and ``mlp.proj`` (nanoGPT's ``c_proj``).

Weights are PyTorch's defaults; GPT-2's N(0, 0.02) and its depth-scaled projections are
initlab schemes (``normal(std=0.02)`` with ``--residual-init depth_scaled``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.errors import InitlabError, check_positive


class CausalSelfAttention(nn.Module):
    """``proj(softmax(attn_scale · q kᵀ + causal mask) v)`` over ``heads`` heads."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.attn_scale = 1.0 / math.sqrt(self.head_dim)

    def _split(self, x: Tensor) -> Tensor:
        """``[..., T, C] → [..., heads, T, head_dim]``."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.attn_scale)
        return self.proj(y.transpose(-3, -2).flatten(-2))


class MLPBranch(nn.Module):
    """``proj(gelu(fc(x)))``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    """``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLPBranch(width, mlp_ratio * width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and position embeddings, ``depth`` pre-norm blocks, final norm, linear head."""

    def __init__(
        self, vocab_size: int, width: int, depth: int, heads: int, context: int, mlp_ratio: int
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("width", width),
            ("depth", depth),
            ("heads", heads),
            ("context", context),
            ("mlp_ratio", mlp_ratio),
        ):
            check_positive(name, value)
        if width % heads:
            raise InitlabError(f"width ({width}) must be a multiple of heads ({heads})")
        self.vocab_size, self.width, self.depth, self.context = vocab_size, width, depth, context
        self.tok_emb = nn.Embedding(vocab_size, width)
        self.pos_emb = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(Block(width, heads, mlp_ratio) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        positions = torch.arange(idx.size(-1), device=idx.device)
        h = self.tok_emb(idx) + self.pos_emb(positions)
        return self.head(self.ln_f(self.blocks(h)))


def gpt(
    vocab_size: int = 64,
    width: int = 64,
    depth: int = 2,
    heads: int = 4,
    context: int = 32,
    mlp_ratio: int = 4,
) -> GPT:
    """A small GPT: ``idx [B, T]`` (``T <= context``) → logits ``[B, T, vocab_size]``.
    Usable as ``--model initlab.models.gpt:gpt`` with ``--task sequence``."""
    return GPT(int(vocab_size), int(width), int(depth), int(heads), int(context), int(mlp_ratio))
