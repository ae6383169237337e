"""The transformer arm of the ``lr-transfer`` study: the built-in GPT under SP or muP with
one learning rate, and a short-context version of the scaling package's token task.

:func:`gpt` is :func:`initlab.models.gpt.gpt` under :func:`initlab.scaling.parametrize.parametrized`
with muP's per-parameter learning rates folded into its Linear layers as multipliers
(:func:`initlab.studies.lr_transfer_models.folded`); muP's attention scale
(``attn_scale = √d_base/d``) is set by ``parametrized`` and kept. With Adam, muP's
learning-rate factor of every non-Linear parameter (embeddings: input-like; LayerNorm:
vector-like) is 1, so the Linear layers are all there is to fold
(``fold_learning_rates`` refuses otherwise).

Its keywords are the MLP factory's (``width, param, optimizer, base_width, depth,
input_size``) so that one axis of the study's grid sets both; for a token model
``input_size`` is the context length (tokens per sequence). Heads are fixed
(:data:`HEADS`), so the head dimension grows with the width, as in Tensor Programs V.
"""

from __future__ import annotations

from torch import nn

from initlab.models.gpt import gpt as builtin_gpt
from initlab.scaling.tokens import VOCAB, progressions
from initlab.studies.lr_transfer_models import folded

HEADS = 2
SHORT_CONTEXT = 16
SHORT_TRAIN, SHORT_TEST = 512, 128


def short_progressions() -> dict[str, object]:
    """:func:`initlab.scaling.tokens.progressions` with :data:`SHORT_CONTEXT` tokens per
    sequence and :data:`SHORT_TRAIN` training sequences (the quick scales' data)."""
    return progressions(n_train=SHORT_TRAIN, n_test=SHORT_TEST, context=SHORT_CONTEXT)


def gpt(
    width: int = 32,
    param: str = "mup",
    optimizer: str = "adam",
    base_width: int = 32,
    depth: int = 1,
    input_size: int = SHORT_CONTEXT,
    vocab_size: int = VOCAB,
) -> nn.Module:
    """The built-in GPT at ``width`` (``depth`` blocks, :data:`HEADS` heads, context
    ``input_size``) under ``param`` (``sp`` or ``mup``, normalized at ``base_width``) for
    ``optimizer``, trainable with one learning rate. The caller seeds the RNG."""
    return folded(
        builtin_gpt,
        param,
        width=width,
        base_width=base_width,
        optimizer=optimizer,
        kwargs={
            "depth": int(depth),
            "heads": HEADS,
            "context": int(input_size),
            "vocab_size": int(vocab_size),
        },
    )
