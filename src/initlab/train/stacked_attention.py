"""Stacked equivalents of transformer leaf modules for :mod:`initlab.train.stacked`.

Activations are laid out ``[M, B, ...]`` (model axis first); every stacked tensor is
``[M, ...]`` (the stack's own leaves, no copies). Per model ``m``:

- ``nn.Embedding``, ``nn.LayerNorm``: :mod:`initlab.train.stacked_norms`;
- ``nn.MultiheadAttention`` → :class:`StackedMultiheadAttention`: ``q, k, v = x W_in[m]^T +
  b_in[m]`` (stacked products, :class:`initlab.train.layers._StackedLinear`), then
  ``softmax(q k^T / sqrt(d_head) + mask) v`` by ONE ``F.scaled_dot_product_attention`` over
  ``[M·B, heads, T, d_head]`` (attention is per example, so the models are just more batch;
  its dropout draws independent masks for every model, from the stack's global generator),
  then ``out_proj``;
- ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` →
  :class:`StackedTransformerEncoderLayer` / :class:`StackedTransformerEncoder`: torch's
  ``x = norm1(x + sa(x)); x = norm2(x + ff(x))`` (``norm_first``: ``x = x + sa(norm1(x));
  x = x + ff(norm2(x))``), ``ff(x) = linear2(dropout(act(linear1(x))))``, of the stacked
  pieces above (the layer's three dropouts draw from each model's own generator,
  :mod:`initlab.train.dropout_streams`). When training on the CPU, ``sa`` and ``ff``
  (relu/gelu, no dropout inside) each run as ONE autograd function that loops over the
  models (:class:`_SelfAttention`, :class:`initlab.train.stacked_norms.FeedForward`): the
  same kernels as one model alone, but each model's wide intermediates (``[B·T, 3d]``
  q/k/v, ``[B·T, 4d]`` hidden) stay in cache from producer to consumer, which the
  whole-stack ``[M, B·T, 4d]`` tensors do not.
  At the benchmark's size (d 64, batch 32, length 32) a model's step is bound by its
  kernels, not by Python overhead, so stacking M models gains little over running them
  one after the other (see benchmarks/README.md).

Masks follow ``nn.MultiheadAttention``: boolean masks are ``True`` where attention is *not*
allowed (``-inf`` added), float masks are added. Like every tensor of the stacked graph,
an attention mask arrives stacked, ``[M, T, S]`` (each model's ``[T, S]``: a buffer, or one
computed in ``forward``), a key padding mask as ``[M, B, S]``.
``is_causal`` with no key padding mask uses the causal kernel and ignores the mask, as torch
does. The encoders' eval fast paths (``torch._transformer_encoder_layer_fwd``, nested
tensors) are not taken: the stacked leaves compute the same function, with padded positions
computed rather than zeroed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.train import stacked_norms
from initlab.train.dropout_streams import StackedDropout
from initlab.train.layers import NotStackable, StackedLinear, _StackedLinear
from initlab.train.stacked_norms import (
    FeedForward,
    StackedLayerNorm,
    affine_into,
    elementwise_activation,
    mm_into,
)

_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BACKWARD = getattr(
    torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None
)


def _sub(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix`` (``"self_attn."``) by names relative to it."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _rows(mask: Tensor | None, i: int, batch: int) -> Tensor | None:
    """Model ``i``'s rows of an SDPA mask over ``[M·B, ...]`` (a shared mask as it is)."""
    if mask is None or mask.dim() < 4 or mask.shape[0] == 1:
        return mask
    return mask[i * batch : (i + 1) * batch]


class _SelfAttention(torch.autograd.Function):
    """Self-attention of ``x [M, B, T, d]`` one model at a time (its ``[B·T, 3d]`` q, k, v
    stay in cache): ``qkv = x W_in^T + b_in``, CPU flash attention per model, ``y = a
    W_out^T + b_out``; backward by the flash kernel's own backward, then ``dW = dz^T x``,
    ``dx = dz W``, ``db = sum dz`` for both products."""

    @staticmethod
    def forward(ctx, x: Tensor, w_in, b_in, w_out, b_out, heads: int, mask, causal: bool):
        m, b, t, d = x.shape
        flat = x.reshape(m, b * t, d)
        qkv, att, y = (flat.new_empty(m, b * t, k) for k in (3 * d, d, d))
        lse = flat.new_empty(m, b, heads, t)
        for i in range(m):
            affine_into(flat[i], w_in[i], None if b_in is None else b_in[i], qkv[i])
            q, k, v = qkv[i].view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            out, lse[i] = _FLASH(q, k, v, 0.0, causal, attn_mask=_rows(mask, i, b))
            att[i].view(b, t, heads, d // heads).copy_(out.transpose(1, 2))
            affine_into(att[i], w_out[i], None if b_out is None else b_out[i], y[i])
        ctx.save_for_backward(flat, w_in, w_out, qkv, att, lse, mask)
        ctx.heads, ctx.causal, ctx.biases = heads, causal, (b_in is not None, b_out is not None)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        flat, w_in, w_out, qkv, att, lse, mask = ctx.saved_tensors
        (m, n, d), b, h = flat.shape, lse.shape[1], ctx.heads
        shape = (b, n // b, h, d // h)  # [B, T, heads, d_head]
        g = grad.reshape(m, n, d)
        gx, gw_in, gw_out = torch.empty_like(flat), torch.empty_like(w_in), torch.empty_like(w_out)
        gb_in = flat.new_empty(m, 3 * d) if ctx.biases[0] else None
        gqkv = flat.new_empty(n, 3 * d)
        for i in range(m):
            mm_into(g[i].t(), att[i], gw_out[i])
            gatt = (g[i] @ w_out[i]).view(shape).transpose(1, 2)
            q, k, v = qkv[i].view(b, -1, 3, h, d // h).permute(2, 0, 3, 1, 4)
            out = att[i].view(shape).transpose(1, 2)
            grads = _FLASH_BACKWARD(
                gatt, q, k, v, out, lse[i], 0.0, ctx.causal, attn_mask=_rows(mask, i, b)
            )
            torch.stack([gr.transpose(1, 2) for gr in grads], 2, out=gqkv.view(b, -1, 3, h, d // h))
            mm_into(gqkv.t(), flat[i], gw_in[i])
            if gb_in is not None:
                torch.sum(gqkv, 0, out=gb_in[i])
            torch.mm(gqkv, w_in[i], out=gx[i])
        gb_out = g.sum(1) if ctx.biases[1] else None
        return gx.view(grad.shape), gw_in, gb_in, gw_out, gb_out, None, None, None


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A mask as torch's ``F._canonical_mask`` makes it: bool ``True`` → ``-inf``, else 0."""
    if mask is None or mask.is_floating_point():
        return mask if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, -torch.inf)


def _model_mask(mask: Tensor, size: int, batch: int) -> Tensor:
    """An attention mask for ``[M·B, heads, T, S]`` scores from the stacked ``[M, T, S]``:
    its first model's ``[T, S]`` when all models' are equal, else expanded model-wise to
    ``[M·B, 1, T, S]``. A model's 3-d mask (one per example and head) is refused."""
    if mask.dim() != 3 or mask.shape[0] != size:
        raise NotStackable(f"attention mask of shape {list(mask.shape[1:])} per model")
    if size == 1 or torch.equal(mask, mask[:1].expand_as(mask)):
        return mask[0]
    shape = mask.shape[1:]
    return mask[:, None].expand(size, batch, *shape).reshape(size * batch, 1, *shape)


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
            self.in_proj = StackedLinear(tensors["in_proj_weight"], bias)
        else:
            names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
            biases = (
                (None,) * 3 if bias is None else (bias[:, :d], bias[:, d : 2 * d], bias[:, 2 * d :])
            )
            self.projections = nn.ModuleList(
                StackedLinear(tensors[n], b) for n, b in zip(names, biases, strict=True)
            )
        self.out_proj = StackedLinear(tensors["out_proj.weight"], tensors.get("out_proj.bias"))
        self.weights_unused = False
        """Set by :func:`initlab.train.stacked.stacked_module` when the model reads only the
        output (``attn(q, k, v)[0]``): ``need_weights`` then changes nothing it uses."""

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
        if need_weights and not self.weights_unused:
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

    def fusable(self, x: Tensor, mask: Tensor | None) -> bool:
        """Self-attention on ``x`` can run as :class:`_SelfAttention`: training on the CPU
        (without autograd one SDPA over all models is faster), packed weights, batch first,
        no attention dropout, the weights' dtype, a mask not needing grad."""
        return (
            _FLASH_BACKWARD is not None
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and self.packed
            and self.batch_first
            and (self.dropout == 0 or not self.training)
            and x.dtype == self.in_proj.weight.dtype
            and (mask is None or not mask.requires_grad)
        )

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


class StackedTransformerEncoderLayer(nn.Module):
    """M ``nn.TransformerEncoderLayer`` (torch's ``_sa_block``/``_ff_block`` structure):
    post-norm ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``, ``norm_first`` ``x = x +
    sa(norm1(x)); x = x + ff(norm2(x))``, ``ff(x) = linear2(dropout(act(linear1(x))))``."""

    def __init__(self, source: nn.TransformerEncoderLayer, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        if type(source.self_attn) is not nn.MultiheadAttention:
            raise NotStackable("TransformerEncoderLayer with a custom self-attention")
        self.self_attn = StackedMultiheadAttention(source.self_attn, _sub(tensors, "self_attn."))
        self.linear1 = StackedLinear(tensors["linear1.weight"], tensors.get("linear1.bias"))
        self.linear2 = StackedLinear(tensors["linear2.weight"], tensors.get("linear2.bias"))
        self.norm1 = StackedLayerNorm(source.norm1, _sub(tensors, "norm1."))
        self.norm2 = StackedLayerNorm(source.norm2, _sub(tensors, "norm2."))
        # gelu: FeedForward's flag (None: the block runs as separate stacked leaves)
        self.activation, self.gelu = elementwise_activation(source.activation)
        self.norm_first = source.norm_first
        self.p = (source.dropout.p, source.dropout1.p, source.dropout2.p)
        self.dropouts = nn.ModuleList(StackedDropout(p) for p in self.p)  # model streams

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
        return self.dropouts[i](x)

    def _sa(self, x: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        attn = self.self_attn
        if attn.fusable(x, mask):
            w_in, b_in = attn.in_proj.weight, attn.in_proj.bias
            w_out, b_out = attn.out_proj.weight, attn.out_proj.bias
            y = _SelfAttention.apply(x, w_in, b_in, w_out, b_out, attn.heads, mask, causal)
        else:
            y = attn.attend(x, x, x, mask, causal)
        return self._dropout(y, 1)

    def _ff(self, x: Tensor) -> Tensor:
        weight = self.linear1.weight
        if (
            self.gelu is not None
            and (self.p[0] == 0 or not self.training)
            and x.dtype == weight.dtype
        ):
            b1, w2, b2 = self.linear1.bias, self.linear2.weight, self.linear2.bias
            return self._dropout(FeedForward.apply(x, weight, b1, w2, b2, self.gelu), 2)
        h = self._dropout(self.activation(self.linear1(x)), 0)
        return self._dropout(self.linear2(h), 2)


def _is_causal(mask: Tensor | None, is_causal: bool | None, length: int) -> bool:
    """torch's ``_detect_is_causal_mask`` for the models' masks (stacked ``[M, T, T]``): the
    hint if given, else whether every model's mask is causal."""
    if is_causal is not None or mask is None:
        return bool(is_causal)
    if mask.shape[1:] != (length, length):
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
        length = src.shape[2] if self.batch_first else src.shape[1]
        mask = _float_mask(mask, src.dtype)
        causal = _is_causal(mask, is_causal, length)
        sdpa_mask, causal = attention_mask(
            mask, src_key_padding_mask, causal, src, self.batch_first
        )
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
