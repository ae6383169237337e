"""The ``gpt-init`` study's muP arm: the small GPT under muP, trainable with one learning rate.

``--model initlab.studies.gpt_init_models:mup_gpt``: :func:`initlab.models.gpt.gpt` at
``width`` under muP (:mod:`initlab.scaling.parametrize`, Tensor Programs V Table 3, for Adam),
normalized at ``base_width``, with its per-parameter learning rates folded into the Linear
layers as multipliers by :func:`initlab.studies.lr_transfer_models.folded` (that module's
docs: the same mechanism as the ``lr-transfer`` study), so the engine's one learning rate
trains it. With ``m = width / base_width``:

- hidden Linear weights (``q``, ``k``, ``v``, ``proj``, ``fc``): PyTorch's default rms
  (variance ∝ 1/fan_in), learning rate × 1/m;
- the readout ``head``: weight and bias 0 at init, learning rate × 1/m (weight), × 1 (bias);
- embeddings, biases of width-sized outputs, layer norms: as built, learning rate × 1;
- attention logits scaled by ``√d_base / d`` (∝ 1/d instead of 1/√d; equal to 1/√d at the
  base width), ``d`` the head dimension.

AdamW without weight decay is Adam, so the factors are Adam's.
"""

from __future__ import annotations

from torch import nn

from initlab.models.gpt import gpt
from initlab.studies.lr_transfer_models import folded


def mup_gpt(
    vocab_size: int = 64,
    width: int = 64,
    depth: int = 2,
    heads: int = 4,
    context: int = 32,
    mlp_ratio: int = 4,
    base_width: int = 16,
) -> nn.Module:
    """The small GPT at ``width`` under muP normalized at ``base_width`` (a multiple of
    ``heads``), for Adam, with its learning rates folded in (module docs). The caller seeds
    the RNG (the engine does)."""
    kwargs = {
        "vocab_size": int(vocab_size),
        "depth": int(depth),
        "heads": int(heads),
        "context": int(context),
        "mlp_ratio": int(mlp_ratio),
    }
    return folded(gpt, "mup", width=width, base_width=base_width, optimizer="adam", kwargs=kwargs)
