"""Does the model run on the data at the widest width, and which attention scale can muP not set?

:func:`check_data` runs before the coordinate check does any work: token ids the model's
embedding cannot take are one line naming the width; under ``--param mup`` it also reports
the attention whose 1/d scale initlab cannot set (:func:`attention_caveat`), which the
verdicts then carry as a caveat.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError, some_names
from initlab.scaling.attention_watch import AttentionWatch
from initlab.scaling.coords import CoordSettings, DataMismatch, factory_depth, where
from initlab.scaling.parametrize import ATTN_ATTRIBUTE
from initlab.scaling.shapes import Factory, build
from initlab.train.preflight import ModelFailed, probe_forward


def check_data(factory: Factory, settings: CoordSettings, dataset: Any) -> str:
    """``compare``'s check that the model runs on the data
    (:func:`initlab.train.preflight.probe_forward`: token ids against the embedding that takes
    them, then a forward pass on two examples) at the widest width, on the CPU: one line
    naming the width (:class:`DataMismatch`) for ids it cannot take (a model that raises is
    left to :func:`~initlab.scaling.coords.preflight`, which names its error as it does at
    every width). Under muP, the attention it saw whose scale initlab cannot set to 1/d
    (:func:`attention_caveat`), else ""."""
    kwargs = dict(settings.kwargs) | ({"depth": settings.depths[0]} if settings.depths else {})
    width = settings.widths[-1]
    with torch.random.fork_rng(devices=[]):
        model = build(factory, width, kwargs, "cpu")
    try:
        with (watch := AttentionWatch()):
            probe_forward(model, dataset)
    except ModelFailed:  # the preflight runs it again and names the width and the error
        return ""
    except InitlabError as exc:
        raise DataMismatch(f"{where(width, factory_depth(factory, kwargs))}: {exc}") from None
    return attention_caveat(model, watch) if settings.param == "mup" else ""


def attention_caveat(model: nn.Module, watch: AttentionWatch) -> str:
    """The attention of ``model`` (one forward pass under ``watch``) whose scale initlab
    cannot set to muP's 1/d, in words ("" when none): an ``nn.MultiheadAttention``,
    ``scaled_dot_product_attention`` calls without ``scale=`` (both 1/√d) and, in a model
    with no ``attn_scale`` (which initlab sets), softmax or attention calls: the model's own
    scale, which initlab cannot see (a hand-written ``q·kᵀ/√d`` is arithmetic)."""
    mods = model.named_modules()
    mha = [f"`{n or '(model)'}`" for n, m in mods if isinstance(m, nn.MultiheadAttention)]
    if mha:  # it calls scaled_dot_product_attention itself
        return f"{some_names(mha)} (nn.MultiheadAttention) use 1/√d"
    if watch.unscaled:
        return f"{watch.unscaled} scaled_dot_product_attention call(s) use 1/√d"
    if watch.calls and not any(
        isinstance(getattr(m, ATTN_ATTRIBUTE, None), float) for m in model.modules()
    ):
        return (
            f"the forward's {watch.calls} softmax/attention call(s) take the scale the model "
            "gives them (q·kᵀ/√d, say), which initlab cannot see or set"
        )
    return ""
