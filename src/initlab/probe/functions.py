"""The torch functions the activation tracer (:mod:`initlab.probe.trace`) tells apart, by name.

Each set names what a layer's output (or a tensor carrying its tag) can meet: an
activation, a normalizing or shape-only function, a split, the next layer, a matrix
product, a sum; the tracer's module docs say what each means for the layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATION_FUNCTIONS = {
    **{f: f for f in ("relu", "leaky_relu", "tanh", "sigmoid", "selu", "elu")},
    **{f"{f}_": f for f in ("relu", "leaky_relu", "tanh", "sigmoid", "selu", "elu")},
    **{f: f for f in ("gelu", "silu", "softplus", "softsign")},
}
"""torch function name → initlab activation name."""

GATED = {"sigmoid": "silu"}
"""``phi(x) * x`` written by hand → the activation it computes (swish = SiLU)."""

NORM_FUNCTIONS = frozenset({"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"})
TRANSPARENT_FUNCTIONS = NORM_FUNCTIONS | frozenset(
    {
        *("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"),
        *(f"max_pool{d}d" for d in (1, 2, 3)),
        *(f"max_pool{d}d_with_indices" for d in (1, 2, 3)),
        *(f"avg_pool{d}d" for d in (1, 2, 3)),
        *("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "mean"),
        *("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"),
        *("view", "reshape", "flatten", "unflatten", "contiguous", "clone", "__getitem__"),
        *("view_as", "reshape_as", "squeeze", "unsqueeze", "pad"),
        *("permute", "transpose", "t", "movedim", "moveaxis", "swapaxes", "swapdims"),
        *("float", "double", "half", "bfloat16", "to", "type_as", "type"),
    }
)
"""Functions that do not change which nonlinearity a layer's output meets next: norms,
dropout, pooling, zero padding and everything that only moves values (reshapes and axis
permutations: a ConvNeXt's channels-last ``permute``, a ViT's ``flatten(2).transpose(1, 2)``)
or changes their precision (LLaMA's RMSNorm computes on ``x.float()``)."""

SPLIT_FUNCTIONS = frozenset(
    {
        *("split", "split_with_sizes", "chunk", "unbind", "tensor_split"),
        *("hsplit", "vsplit", "dsplit", "unsafe_split", "unsafe_chunk", "unsafe_split_with_sizes"),
    }
)
"""Functions that cut a tensor into a tuple of pieces (a fused q/k/v projection's
``qkv.split(d, dim=2)``): every piece carries the tensor's tag, unless the tensor is a
residual sum (``_Tracer._sum``: an RNN's ``(W x + U h).chunk(4, -1)`` stays ``unknown``)."""

LAYER_FUNCTIONS = frozenset(
    {
        *("linear", "multi_head_attention_forward"),  # the attention's q, k, v maps
        *(f"conv{d}d" for d in (1, 2, 3)),
        *(f"conv_transpose{d}d" for d in (1, 2, 3)),
    }
)
"""The next layer: a layer whose output meets one is linear (an ``nn.MultiheadAttention``
reading it, a ViT's patch embedding, counts: its first step is the query, key and value
maps)."""
PRODUCT_FUNCTIONS = frozenset(
    {"matmul", "__matmul__", "__rmatmul__", "bmm", "einsum", "scaled_dot_product_attention"}
)
"""Matrix products of activations (attention's ``q @ k.T`` and ``att @ v``): a layer whose
output meets one is linear, like one whose output meets the next layer."""
ADD_FUNCTIONS = frozenset({"add", "__add__", "__radd__"})
"""Out-of-place sums: a term that is a layer's output passes its tag to the sum when the
other term has its shape (``_Tracer._sum``: a residual join, or two layers' outputs)."""
IN_PLACE_ADD = "add_"
"""``out += term`` (``out.add_(term)``): ``out`` keeps its own tag, and takes ``term``'s
when ``term`` is a layer's output of its shape (a ResNet's ``out += identity`` after a
projection shortcut); otherwise ignored."""
STREAM_READERS = frozenset({"multi_head_attention_forward", "pow", *ADD_FUNCTIONS})
"""What reads a residual stream and leaves a branch end that joined it linear, besides the
next layer or product: an ``nn.MultiheadAttention`` (its own function), the next join and a
``pow`` (LLaMA's hand-written RMSNorm: ``x * rsqrt(x.pow(2).mean(-1) + eps)``). A ``mean``
is pooling (:data:`TRANSPARENT_FUNCTIONS`): a ViT's or MLP-Mixer's pooled stream, a CNN's
global average pool, a squeeze-excite's squeeze all pass the layer's tag on to what reads
them. Anything else (a scale, an RNN's ``chunk`` of ``W x + U h``) leaves it ``unknown``,
for :func:`~initlab.activations.infer_activation`."""
IGNORED_FUNCTIONS = frozenset({"dim", "size", "__get__", "__len__", IN_PLACE_ADD})
"""Reading a tensor's shape or attributes is not consuming it (nor is being the target of
an in-place sum)."""


def learned_shift(x: torch.Tensor, terms: Sequence[torch.Tensor], name: str) -> bool:
    """Whether the call ``name`` of the tensors ``terms`` only adds learned constants to its
    term ``x``: a sum whose other terms are parameters broadcast to ``x``'s shape (a ViT's
    position table,
    ``patch(x).flatten(2).transpose(1, 2) + self.pos``). It passes the layer's tag on, as a
    bias would; taken for a nonlinearity, it left the patch convolution ``unknown`` (LSUV)."""
    others = [t for t in terms if t is not x]
    if name not in ADD_FUNCTIONS or not others:
        return False
    try:
        fits = all(torch.broadcast_shapes(t.shape, x.shape) == x.shape for t in others)
    except RuntimeError:
        return False
    return fits and all(isinstance(t, nn.Parameter) for t in others)
