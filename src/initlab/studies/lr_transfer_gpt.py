"""The transformer arm of the ``lr-transfer`` study: the built-in GPT under SP or muP with
one learning rate, and a short-context version of the scaling package's token task.

:func:`gpt` is :func:`initlab.models.gpt.gpt` under :func:`initlab.scaling.parametrize.parametrized`
with muP's per-parameter learning rates folded into its Linear layers as multipliers
(:func:`initlab.studies.lr_transfer_models.fold_learning_rates`); muP's attention scale
(``attn_scale = √d_base/d``) is set by ``parametrized`` and kept. With Adam, muP's
learning-rate factor of every non-Linear parameter (embeddings: input-like; LayerNorm:
vector-like) is 1, so the Linear layers are all there is to fold; :func:`gpt` checks it.

Its keywords are the MLP factory's (``width, param, optimizer, base_width, depth,
input_size``) so that one axis of the study's grid sets both; for a token model
``input_size`` is the context length (tokens per sequence). Heads are fixed
(:data:`HEADS`), so the head dimension grows with the width, as in Tensor Programs V.
"""

from __future__ import annotations

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.models.gpt import gpt as builtin_gpt
from initlab.scaling.parametrize import parametrized
from initlab.scaling.tokens import VOCAB, progressions
from initlab.studies.lr_transfer_models import fold_learning_rates

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
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    built = parametrized(
        builtin_gpt,
        param,
        width=int(width),
        base_width=int(base_width),
        optimizer=optimizer,
        lr=1.0,
        seed=seed,
        kwargs={
            "depth": int(depth),
            "heads": HEADS,
            "context": int(input_size),
            "vocab_size": int(vocab_size),
        },
    )
    linear = {f"{n}.{p}" for n, m in built.model.named_modules() if type(m) is nn.Linear
              for p in ("weight", "bias")}  # fmt: skip
    unfolded = {n: r for n, r in built.lr_factor.items() if n not in linear and r != 1.0}
    if unfolded:
        raise InitlabError(
            f"lr-transfer's GPT: muP gives non-Linear parameters learning-rate factors "
            f"{unfolded} under {optimizer}, which one learning rate cannot carry"
        )
    return fold_learning_rates(built)
