"""A nanoGPT block for the tests of fused projections: one ``c_attn = nn.Linear(d, 3d)``
whose output is cut into q, k and v in any of the ways models write it (:data:`CUTS`)."""

import torch
import torch.nn.functional as F
from torch import nn

CUTS = ("split", "chunk", "torch.split", "tensor_split", "unbind", "timm", "interleaved")
"""nanoGPT's ``split``, the other clean partitions, timm's reshape/permute, and Megatron's
per-head interleaving (no clean partition of the rows)."""


def qkv(out: torch.Tensor, how: str, heads: int) -> tuple[torch.Tensor, ...]:
    """q, k, v as ``[B, H, T, d / H]`` from a fused ``[B, T, 3d]`` output, cut as ``how`` says."""
    b, t, three_d = out.shape
    d = three_d // 3
    hd = d // heads
    if how == "timm":
        return out.reshape(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    if how == "interleaved":  # per head [q_h, k_h, v_h]
        return tuple(h.transpose(1, 2) for h in out.view(b, t, heads, 3 * hd).split(hd, dim=-1))
    pieces = {
        "split": lambda: out.split(d, dim=2),
        "chunk": lambda: out.chunk(3, dim=-1),
        "torch.split": lambda: torch.split(out, d, dim=2),
        "tensor_split": lambda: out.tensor_split(3, dim=-1),
        "unbind": lambda: out.view(b, t, 3, d).unbind(2),
    }[how]()
    return tuple(h.view(b, t, heads, hd).transpose(1, 2) for h in pieces)


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one fused ``c_attn`` for q, k and v, then ``c_proj``."""

    def __init__(self, d: int, heads: int, how: str = "split") -> None:
        super().__init__()
        self.heads, self.how = heads, how
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = qkv(self.c_attn(x), self.how, self.heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """A pre-norm nanoGPT block (attention, then a ``4d`` GELU MLP) and a 5-class head."""

    def __init__(self, d: int, heads: int, how: str = "split") -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, how)
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))
        return self.head(x)
