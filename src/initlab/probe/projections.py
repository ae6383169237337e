"""The query, key and value maps inside ``nn.MultiheadAttention``, seen as layers.

``nn.MultiheadAttention`` holds its three input projections in one packed parameter
``in_proj_weight`` ``[3E, E]`` (rows ``[0, E)`` the query map ``W_q``, ``[E, 2E)`` the key
map ``W_k``, ``[2E, 3E)`` the value map ``W_v``; ``in_proj_bias`` ``[3E]`` likewise), or, when
the keys or values have another width (``kdim``, ``vdim``), in ``q_proj_weight``,
``k_proj_weight`` and ``v_proj_weight``. It applies them inside
``F.multi_head_attention_forward``, where no module hook sees them:

    q = query · W_qᵀ + b_q,   k = key · W_kᵀ + b_k,   v = value · W_vᵀ + b_v

The probe shows each as a layer of its own, ``<attention>.q_proj``, ``.k_proj``,
``.v_proj`` (called before the attention's ``out_proj``): an :class:`AttentionProjection`
is a ``Linear`` whose weight and bias are views of those rows, so fans (``fan_in`` the input
width, ``fan_out = E``), weight statistics and duplicated rows are the map's own; z is
recomputed from the attention's inputs, and ``dL/dW`` is the same rows of the packed
parameter's gradient (:attr:`AttentionProjection.source`, :attr:`AttentionProjection.rows`).
z's own gradient is not available: the attention uses z inside one function.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAPS = ("q", "k", "v")


class AttentionProjection(nn.Linear):
    """One of ``attention``'s maps (``which``: ``"q"``, ``"k"`` or ``"v"``) as a ``Linear``
    layer: ``weight`` rows :attr:`rows` of the parameter named :attr:`weight_name` (a view),
    ``bias`` the same map's rows of ``in_proj_bias`` (or ``None``). For reading only: it owns
    no parameters, and its gradient is that parameter's, the same rows."""

    def __init__(self, attention: nn.MultiheadAttention, which: str) -> None:
        nn.Module.__init__(self)
        e, i = attention.embed_dim, MAPS.index(which)
        packed = attention.in_proj_weight is not None
        self.weight_name = "in_proj_weight" if packed else f"{which}_proj_weight"
        self.rows = (i * e, (i + 1) * e) if packed else (0, e)
        self.bias_rows = (i * e, (i + 1) * e)
        object.__setattr__(self, "owner", attention)  # not a submodule: it owns nothing
        self.weight = self.source.detach()[slice(*self.rows)]
        bias = attention.in_proj_bias
        self.bias = None if bias is None else bias.detach()[slice(*self.bias_rows)]
        self.out_features, self.in_features = self.weight.shape

    @property
    def source(self) -> Tensor:
        """The attention's parameter this map's weight is rows of."""
        return getattr(self.owner, self.weight_name)

    def state_in(self, owner_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """This map's ``weight`` and ``bias`` in the attention's parameters ``owner_state``
        (by name, e.g. a copy taken earlier)."""
        state = {"weight": owner_state[self.weight_name][slice(*self.rows)]}
        if self.bias is not None:
            state["bias"] = owner_state["in_proj_bias"][slice(*self.bias_rows)]
        return state


def projections(attention: nn.MultiheadAttention) -> list[AttentionProjection]:
    """The query, key and value maps of ``attention``, in that order."""
    return [AttentionProjection(attention, which) for which in MAPS]


def weight_source(layer: nn.Module) -> tuple[Tensor, slice]:
    """The parameter a layer's weight gradient is taken from, and the rows that are its
    own: ``(weight, [:])``, or ``(source, [a:b])`` for an :class:`AttentionProjection`."""
    if isinstance(layer, AttentionProjection):
        return layer.source, slice(*layer.rows)
    return layer.weight, slice(None)


def attention_inputs(args: tuple, kwargs: dict) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(query, key, value)`` of one ``MultiheadAttention`` call (``None`` if not given as
    tensors)."""
    names = ("query", "key", "value")
    found = [args[i] if i < len(args) else kwargs.get(n) for i, n in enumerate(names)]
    if not all(isinstance(t, Tensor) for t in found):
        return None
    return found[0], found[1], found[2]


@torch.no_grad()
def project(projection: AttentionProjection, x: Tensor) -> Tensor:
    """``x · Wᵀ + b`` for ``x`` ``[..., in]``: the map's output z, in ``x``'s layout."""
    weight = projection.weight.to(x.dtype)
    bias = None if projection.bias is None else projection.bias.to(x.dtype)
    return F.linear(x, weight, bias)
