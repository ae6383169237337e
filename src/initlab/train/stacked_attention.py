"""Stacked equivalents of transformer leaf modules for :mod:`initlab.train.stacked`.

Activations are laid out ``[M, B, ...]`` (model axis first); every stacked tensor is
``[M, ...]`` (the stack's own leaves, no copies). Per model ``m``:

- ``nn.Embedding``, ``nn.LayerNorm``: :mod:`initlab.train.stacked_norms`;
- ``nn.MultiheadAttention`` → :class:`StackedMultiheadAttention`: ``q, k, v = x W_in[m]^T +
  b_in[m]`` (stacked products, :class:`initlab.train.layers._StackedLinear`), then
  ``softmax(q k^T / sqrt(d_head) + mask) v`` by ONE ``F.scaled_dot_product_attention`` over
  ``[M·B, heads, T, d_head]`` (attention is per example, so the models are just more batch;
  its dropout draws independent masks for every model), then ``out_proj``;
- ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` →
  :class:`StackedTransformerEncoderLayer` / :class:`StackedTransformerEncoder`: torch's
  ``x = norm1(x + sa(x)); x = norm2(x + ff(x))`` (``norm_first``: ``x = x + sa(norm1(x));
  x = x + ff(norm2(x))``), ``ff(x) = linear2(dropout(act(linear1(x))))``, of the stacked
  pieces above.

Masks follow ``nn.MultiheadAttention``: boolean masks are ``True`` where attention is *not*
allowed (``-inf`` added), float masks are added. An attention mask arrives as the stacked
buffer ``[M, 1, T, S]`` (a model's ``[T, S]`` buffer, :class:`initlab.train.stacked.
StackedAttribute`) or as a plain ``[T, S]`` tensor; a key padding mask as ``[M, B, S]``.
``is_causal`` with no key padding mask uses the causal kernel and ignores the mask, as torch
does. The encoders' eval fast paths (``torch._transformer_encoder_layer_fwd``, nested
tensors) are not taken: the stacked leaves compute the same function, with padded positions
computed rather than zeroed.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.train import stacked_norms
from initlab.train.layers import FusedSGD, NotStackable, _StackedLinear
from initlab.train.stacked_norms import StackedLayerNorm

FUNCTIONS: set = {operator.eq, operator.ne, torch.eq, torch.ne, torch.logical_not}
"""Graph functions safe on ``[M, B, ...]`` tensors besides the elementwise ones (comparisons
that build a key padding mask from token ids)."""
METHODS: set[str] = {"eq", "ne", "logical_not"}
"""Tensor methods safe on ``[M, B, ...]`` tensors besides the elementwise ones."""

BLOCK_ELEMENTS = 2**21
"""Without autograd (evaluation), the encoder runs blocks of examples whose widest
activation, ``[M, b, T, 4 d]``, holds about this many elements: big evaluation batches
would otherwise stream every layer's activations through main memory."""
ACTIVATIONS = (F.relu, F.gelu, F.silu, torch.relu, torch.tanh, torch.sigmoid)
ACTIVATION_MODULES = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)
FUSED_ACTIVATIONS = {F.relu: False, torch.relu: False, nn.ReLU: False, F.gelu: True}
"""Activations of :class:`_FeedForward` (``True``: gelu); others run as separate leaves."""


def _sub(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix`` (``"self_attn."``) by names relative to it."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class StackedLinearPart(nn.Module):
    """``y[m] = x[m] W[m]^T + b[m]``, ``W`` ``[M, out, in]`` in either memory layout."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.fused = FusedSGD()

    def forward(self, x: Tensor) -> Tensor:
        return _StackedLinear.apply(x, self.weight, self.bias, self.fused)


def _mm_into(a: Tensor, b: Tensor, out: Tensor) -> None:
    """``out = a @ b``, written through ``out``'s own layout (a transposed view is filled as
    ``(b^T a^T)^T``, so a weight gradient lands in the weight's memory layout)."""
    if out.is_contiguous():
        torch.mm(a, b, out=out)
    else:
        torch.mm(b.t(), a.t(), out=out.t())


def _affine_into(x: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor) -> None:
    """``out = x W^T + b`` (one ``addmm``; ``mm`` without bias)."""
    if bias is None:
        torch.mm(x, weight.t(), out=out)
    else:
        torch.addmm(bias, x, weight.t(), out=out)


class _FeedForward(torch.autograd.Function):
    """``y[m] = act(x[m] W1[m]^T + b1[m]) W2[m]^T + b2[m]`` for act relu or gelu, one model
    at a time so the ``[N, 4 d]`` hidden activation stays in cache between its producer and
    consumers. Backward per model: ``dh = dy W2``, ``dW2 = dy^T h``, ``dz = act'(z) ⊙ dh``,
    ``dW1 = dz^T x``, ``dx = dz W1``, ``db = sum dz`` (measured: benchmarks/README.md)."""

    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, b1, w2: Tensor, b2, gelu: bool) -> Tensor:
        m, flat = x.shape[0], x.reshape(x.shape[0], -1, x.shape[-1])
        saved = flat.new_empty(m, flat.shape[1], w1.shape[1])  # relu: h; gelu: z
        y = flat.new_empty(m, flat.shape[1], w2.shape[1])
        for i in range(m):
            _affine_into(flat[i], w1[i], None if b1 is None else b1[i], saved[i])
            h = F.gelu(saved[i]) if gelu else saved[i].relu_()
            _affine_into(h, w2[i], None if b2 is None else b2[i], y[i])
        ctx.save_for_backward(flat, w1, w2, saved)
        ctx.gelu, ctx.biases, ctx.shape = gelu, (b1 is not None, b2 is not None), x.shape
        return y.view(*x.shape[:-1], w2.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        flat, w1, w2, saved = ctx.saved_tensors
        g = grad.reshape(flat.shape[0], -1, grad.shape[-1])
        gx, gw1, gw2 = torch.empty_like(flat), torch.empty_like(w1), torch.empty_like(w2)
        gb1 = flat.new_empty(w1.shape[:2]) if ctx.biases[0] else None
        for i in range(flat.shape[0]):
            z = saved[i]
            h = F.gelu(z) if ctx.gelu else z
            _mm_into(g[i].t(), h, gw2[i])
            dh = g[i] @ w2[i]
            if ctx.gelu:
                dz = torch.ops.aten.gelu_backward(dh, z)
            else:
                dz = torch.ops.aten.threshold_backward(dh, h, 0.0)
            _mm_into(dz.t(), flat[i], gw1[i])
            if gb1 is not None:
                torch.sum(dz, 0, out=gb1[i])
            torch.mm(dz, w1[i], out=gx[i])
        gb2 = g.sum(1) if ctx.biases[1] else None
        return gx.view(ctx.shape), gw1, gb1, gw2, gb2, None


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A mask as torch's ``F._canonical_mask`` makes it: bool ``True`` → ``-inf``, else 0."""
    if mask is None or mask.is_floating_point():
        return mask if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, -torch.inf)


def _model_mask(mask: Tensor, size: int, batch: int) -> Tensor:
    """An attention mask for ``[M·B, heads, T, S]`` scores: a plain ``[T, S]`` as is, the
    stacked ``[M, 1, T, S]`` as its first model's ``[T, S]`` when all models' are equal,
    else expanded model-wise to ``[M·B, 1, T, S]``."""
    if mask.dim() == 2:
        return mask
    if mask.dim() != 4 or mask.shape[:2] != (size, 1):
        raise NotStackable(f"attention mask of shape {list(mask.shape)}")
    if size == 1 or torch.equal(mask, mask[:1].expand_as(mask)):
        return mask[0, 0]
    return mask.expand(size, batch, *mask.shape[2:]).reshape(size * batch, 1, *mask.shape[2:])


def attention_mask(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    is_causal: bool,
    x: Tensor,
    batch_first: bool,
) -> tuple[Tensor | None, bool]:
    """The mask and causal flag of ``F.scaled_dot_product_attention`` over ``[M·B, heads, T,
    S]`` for queries ``x``, as ``F.multi_head_attention_forward`` (need_weights off) derives
    them: ``is_causal`` without a key padding mask → the causal kernel, the mask unused;
    otherwise the float mask plus the key padding mask ``[M, B, S]`` as ``[M·B, 1, 1, S]``."""
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint.")
    if is_causal and key_padding_mask is None:
        return None, True
    size, batch = x.shape[0], x.shape[1 if batch_first else 2]
    padding = None
    if key_padding_mask is not None:
        if key_padding_mask.dim() != 3:
            raise NotStackable("key padding mask other than [batch, source length]")
        padding = _float_mask(key_padding_mask, x.dtype)
        padding = padding.reshape(size * batch, 1, 1, key_padding_mask.shape[2])
    if attn_mask is None:
        return padding, False
    mask = _float_mask(_model_mask(attn_mask, size, batch), x.dtype)
    return (mask if padding is None else mask + padding), False


class StackedMultiheadAttention(nn.Module):
    """M ``nn.MultiheadAttention`` (module docstring): inputs ``[M, B, T, d]`` (``batch_first``)
    or ``[M, T, B, d]``; returns ``(out, None)`` (attention weights are not computed)."""

    def __init__(self, source: nn.MultiheadAttention, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        if source.bias_k is not None or source.add_zero_attn:
            raise NotStackable("MultiheadAttention with add_bias_kv or add_zero_attn")
        self.heads, self.batch_first = source.num_heads, source.batch_first
        self.dropout, self.packed = source.dropout, source._qkv_same_embed_dim
        d, bias = source.embed_dim, tensors.get("in_proj_bias")
        if self.packed:
            self.in_proj = StackedLinearPart(tensors["in_proj_weight"], bias)
        else:
            names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
            biases = (
                (None,) * 3 if bias is None else (bias[:, :d], bias[:, d : 2 * d], bias[:, 2 * d :])
            )
            self.projections = nn.ModuleList(
                StackedLinearPart(tensors[n], b) for n, b in zip(names, biases, strict=True)
            )
        self.out_proj = StackedLinearPart(tensors["out_proj.weight"], tensors.get("out_proj.bias"))

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, None]:
        if need_weights:
            raise NotStackable("MultiheadAttention with need_weights")
        if query.dim() != 4:
            raise NotStackable("MultiheadAttention on unbatched inputs")
        mask, causal = attention_mask(
            attn_mask, key_padding_mask, is_causal, query, self.batch_first
        )
        return self.attend(query, key, value, mask, causal), None

    def attend(self, query: Tensor, key: Tensor, value: Tensor, mask, causal: bool) -> Tensor:
        """``out_proj(softmax(q k^T / sqrt(d_head) + mask) v)`` with a prepared SDPA mask."""
        same = query is key and key is value
        if not self.batch_first:
            query, key, value = (t.transpose(1, 2) for t in (query, key, value))
        m, b, t, d = query.shape
        h = self.heads
        if self.packed and same:
            qkv = self.in_proj(query).view(m, b, t, 3, h, d // h).permute(3, 0, 1, 4, 2, 5)
            q, k, v = qkv.reshape(3, m * b, h, t, d // h).unbind(0)
        else:
            q, k, v = (self._project(i, x) for i, x in enumerate((query, key, value)))
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, mask, p, causal)
        out = out.view(m, b, h, t, d // h)
        out = out.permute(0, 1, 3, 2, 4) if self.batch_first else out.permute(0, 3, 1, 2, 4)
        return self.out_proj(out.reshape(m, *out.shape[1:3], d))

    def _project(self, i: int, x: Tensor) -> Tensor:
        """Query (0), key (1) or value (2) projection ``[M·B, heads, length, d_head]``."""
        if self.packed:
            w, bias = self.in_proj.weight, self.in_proj.bias
            d = w.shape[1] // 3
            rows = slice(i * d, (i + 1) * d)
            y = _StackedLinear.apply(x, w[:, rows], None if bias is None else bias[:, rows])
        else:
            y = self.projections[i](x)
        m, b, s, d = y.shape
        return y.view(m * b, s, self.heads, d // self.heads).transpose(1, 2)


def _activation(source: nn.TransformerEncoderLayer):
    """The layer's activation if it acts elementwise (F.relu, F.gelu, ... or such a module)."""
    act = source.activation
    if act in ACTIVATIONS or type(act) in ACTIVATION_MODULES:
        return act
    raise NotStackable(f"TransformerEncoderLayer with activation {act!r}")


class StackedTransformerEncoderLayer(nn.Module):
    """M ``nn.TransformerEncoderLayer`` (torch's ``_sa_block``/``_ff_block`` structure):
    post-norm ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``, ``norm_first`` ``x = x +
    sa(norm1(x)); x = x + ff(norm2(x))``, ``ff(x) = linear2(dropout(act(linear1(x))))``."""

    def __init__(self, source: nn.TransformerEncoderLayer, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        if type(source.self_attn) is not nn.MultiheadAttention:
            raise NotStackable("TransformerEncoderLayer with a custom self-attention")
        self.self_attn = StackedMultiheadAttention(source.self_attn, _sub(tensors, "self_attn."))
        self.linear1 = StackedLinearPart(tensors["linear1.weight"], tensors.get("linear1.bias"))
        self.linear2 = StackedLinearPart(tensors["linear2.weight"], tensors.get("linear2.bias"))
        self.norm1 = StackedLayerNorm(source.norm1, _sub(tensors, "norm1."))
        self.norm2 = StackedLayerNorm(source.norm2, _sub(tensors, "norm2."))
        self.activation, self.norm_first = _activation(source), source.norm_first
        self.fused = FUSED_ACTIVATIONS.get(
            self.activation, FUSED_ACTIVATIONS.get(type(self.activation))
        )
        self.p = (source.dropout.p, source.dropout1.p, source.dropout2.p)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        mask, causal = attention_mask(
            src_mask, src_key_padding_mask, is_causal, src, self.self_attn.batch_first
        )
        return self.run(src, mask, causal)

    def run(self, x: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """The layer on ``x`` with a prepared SDPA mask (:func:`attention_mask`)."""
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask, causal)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, mask, causal))
        return self.norm2(x + self._ff(x))

    def _dropout(self, x: Tensor, i: int) -> Tensor:
        p = self.p[i]
        return F.dropout(x, p, True) if self.training and p > 0 else x

    def _sa(self, x: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        return self._dropout(self.self_attn.attend(x, x, x, mask, causal), 1)

    def _ff(self, x: Tensor) -> Tensor:
        weight = self.linear1.weight
        if (
            self.fused is not None
            and (self.p[0] == 0 or not self.training)
            and x.dtype == weight.dtype
        ):
            b1, w2, b2 = self.linear1.bias, self.linear2.weight, self.linear2.bias
            return self._dropout(_FeedForward.apply(x, weight, b1, w2, b2, self.fused), 2)
        h = self._dropout(self.activation(self.linear1(x)), 0)
        return self._dropout(self.linear2(h), 2)


def _is_causal(mask: Tensor | None, is_causal: bool | None, length: int) -> bool:
    """torch's ``_detect_is_causal_mask`` for a model's mask (``[T, T]``, or stacked
    ``[M, 1, T, T]``): the hint if given, else whether every model's mask is causal."""
    if is_causal is not None or mask is None:
        return bool(is_causal)
    model_shape = mask.shape[2:] if mask.dim() == 4 else mask.shape
    if model_shape != (length, length):
        return False
    causal = nn.Transformer.generate_square_subsequent_mask(length, mask.device, mask.dtype)
    return bool((mask == causal).all())


class StackedTransformerEncoder(nn.Module):
    """M ``nn.TransformerEncoder``: the stacked layers in turn, then the optional final norm;
    the mask is prepared once for all layers."""

    def __init__(self, source: nn.TransformerEncoder, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        if any(type(layer) is not nn.TransformerEncoderLayer for layer in source.layers):
            raise NotStackable("TransformerEncoder with custom layers")
        self.layers = nn.ModuleList(
            StackedTransformerEncoderLayer(layer, _sub(tensors, f"layers.{i}."))
            for i, layer in enumerate(source.layers)
        )
        self.norm = None
        if source.norm is not None:
            if type(source.norm) is not nn.LayerNorm:
                raise NotStackable("TransformerEncoder with a final norm other than LayerNorm")
            self.norm = StackedLayerNorm(source.norm, _sub(tensors, "norm."))
        self.batch_first = source.layers[0].self_attn.batch_first

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        dim = 1 if self.batch_first else 2
        rows = max(1, BLOCK_ELEMENTS // (src[:, :1, :1].numel() * src.shape[3 - dim] * 4))
        if torch.is_grad_enabled() or src.shape[dim] <= rows:
            return self._run(src, mask, src_key_padding_mask, is_causal)
        pad = src_key_padding_mask
        parts = [
            self._run(part, mask, None if pad is None else pad[:, i : i + rows], is_causal)
            for i, part in zip(range(0, src.shape[dim], rows), src.split(rows, dim), strict=True)
        ]
        return torch.cat(parts, dim)

    def _run(self, src: Tensor, mask, padding, is_causal: bool | None) -> Tensor:
        length = src.shape[2] if self.batch_first else src.shape[1]
        mask = _float_mask(mask, src.dtype)
        causal = _is_causal(mask, is_causal, length)
        sdpa_mask, causal = attention_mask(mask, padding, causal, src, self.batch_first)
        for layer in self.layers:
            src = layer.run(src, sdpa_mask, causal)
        return src if self.norm is None else self.norm(src)


def replacement(name: str, module: nn.Module, tensors: dict[str, Tensor]) -> nn.Module | None:
    """The stacked equivalent of the leaf ``module`` (``tensors``: its stacked parameters
    and buffers by names relative to it), or ``None`` if this module has none."""
    kinds = {
        nn.MultiheadAttention: StackedMultiheadAttention,
        nn.TransformerEncoderLayer: StackedTransformerEncoderLayer,
        nn.TransformerEncoder: StackedTransformerEncoder,
    }
    kind = kinds.get(type(module))
    if kind is None:
        return stacked_norms.replacement(name, module, tensors)
    return kind(module, tensors)
