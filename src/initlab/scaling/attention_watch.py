"""Attention a coordinate check cannot see from outside the model: a forward's attention
calls (fused ``scaled_dot_product_attention``, or the softmax hand-written attention
normalizes with) and the ones that keep the built-in 1/√d scale muP would replace by 1/d."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from initlab.scaling.parametrize import ATTN_ATTRIBUTE

ATTENTION_FUNCTIONS = frozenset({"scaled_dot_product_attention", "softmax"})
"""Torch functions whose call marks a forward as attention: fused attention, and the softmax
hand-written attention normalizes its logits with (a model's forward rarely calls softmax
otherwise; its loss does, outside the forward)."""


class AttentionWatch(TorchFunctionMode):
    """Counts the attention calls of a forward (:data:`ATTENTION_FUNCTIONS`) and the
    ``scaled_dot_product_attention`` calls made without ``scale=`` (1/√d)."""

    def __init__(self) -> None:
        super().__init__()
        self.unscaled = 0
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        self.calls += name in ATTENTION_FUNCTIONS
        if name == "scaled_dot_product_attention" and kwargs.get("scale") is None:
            self.unscaled += len(args) < 7
        return func(*args, **kwargs)


def attention_modules(model: nn.Module) -> list[str]:
    """The modules that are attention by type: an ``nn.MultiheadAttention``, a class whose name
    contains "Attention", or one with an ``attn_scale`` attribute
    (:data:`~initlab.scaling.parametrize.ATTN_ATTRIBUTE`)."""
    return [
        name or "(model)"
        for name, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention)
        or "attention" in type(m).__name__.lower()
        or isinstance(getattr(m, ATTN_ATTRIBUTE, None), float)
    ]


def watch_attention(model: nn.Module, x: Tensor) -> tuple[AttentionWatch, object]:
    """One forward pass of ``model`` on ``x`` under an :class:`AttentionWatch`, and its
    output."""
    watch = AttentionWatch()
    with torch.no_grad(), watch:
        out = model(x)
    return watch, out


def unscaled_notes(watch: AttentionWatch) -> list[str]:
    """One line when the watched forward called attention with its built-in 1/√d scale."""
    if not watch.unscaled:
        return []
    return [
        f"{watch.unscaled} scaled_dot_product_attention call(s) use the default 1/√d scale; "
        "muP needs 1/d — pass scale=1/d in the model (initlab cannot change it from outside)"
    ]


def attention_notes(model: nn.Module, x: Tensor) -> list[str]:
    """:func:`unscaled_notes` of one forward pass of ``model`` on ``x``."""
    return unscaled_notes(watch_attention(model, x)[0])
