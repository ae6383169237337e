"""How sharp each attention softmax is at init, and the ``saturated_attention`` finding.

Attention weights ``softmax(q kᵀ / sqrt(d))`` start nearly uniform when the logits
``q·k / sqrt(d)`` have a small spread: with ``q = W_q x`` and ``k = W_k x`` for unit-variance
``x`` of width ``n``, the logit std is about ``n² σ_q² σ_k² · n / sqrt(d)``-ish, so unit-normal
``W_q, W_k`` (σ² = 1 instead of 1/n) multiply it by ``n²``. A saturated softmax puts nearly
all of a query's weight on one key; its Jacobian ``diag(p) − p pᵀ`` then nearly vanishes, so
``W_q`` and ``W_k`` get almost no gradient and the model copies one token per query from the
start (the "attention entropy collapse" of Zhai et al. 2023).

:class:`AttentionRecorder` watches one forward pass, without changing it, through a
:class:`torch.overrides.TorchFunctionMode`: every ``F.scaled_dot_product_attention`` (its
weights recomputed from ``q``, ``k``, the mask and the scale), every
``F.multi_head_attention_forward`` (``nn.MultiheadAttention``; run once more asking for its
weights, with dropout off so the random stream is untouched) and every softmax over the last
dim of square ``[..., T, T]`` scores, or of any ≥ 3-D scores in a module named like
attention (a hand-written attention; not a segmentation head's softmax over classes). For
each, over the
queries that may look at two keys or more: ``top_weight`` = the mean over queries of the
largest weight. Uniform attention over ``T`` keys gives ``1/T``; PyTorch's default init
about 0.1–0.2 at T = 16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from initlab.probe.findings import Finding

TOP_WEIGHT_HIGH = 0.9
"""``saturated_attention`` fires when a softmax's mean top weight exceeds this."""
SOFTMAXES = (torch.softmax, F.softmax, Tensor.softmax)


@dataclass
class AttentionRecord:
    """One attention softmax of the forward pass: the innermost module running it, the
    number of keys, and the mean (over queries with ≥ 2 keys) of the largest weight."""

    module: str
    keys: int
    top_weight: float
    uniform: float = math.nan
    """The mean top weight of uniform attention over each query's allowed keys (queries
    with two or more, as ``top_weight``): ``1/T`` without a mask, ``(H_T - 1) / (T - 1)``
    under a causal one (``H_T`` the harmonic number: 0.099 at T = 32, not 1/T = 0.031)."""


class AttentionRecorder(TorchFunctionMode):
    """``with AttentionRecorder(model) as rec: model(x)`` fills ``rec.records``; the innermost
    module running each softmax is known from forward hooks on ``model``'s modules."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.records: list[AttentionRecord] = []
        self._stack: list[str] = []
        self._handles: list = []

    def __enter__(self) -> AttentionRecorder:
        for name, module in self.model.named_modules():
            if isinstance(module, torch.jit.ScriptModule):
                continue  # takes no hooks: its softmaxes are named by the module around it
            self._handles.append(module.register_forward_pre_hook(self._push(name)))
            self._handles.append(module.register_forward_hook(self._pop))
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        super().__exit__(*exc)

    def _push(self, name: str):
        def hook(module: nn.Module, args: object) -> None:
            self._stack.append(name or "(model)")

        return hook

    def _pop(self, module: nn.Module, args: object, output: object) -> None:
        if self._stack:
            self._stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            found = _weights(func, args, kwargs, out, self._stack[-1] if self._stack else "")
        except Exception:  # an observer never breaks the user's forward pass
            found = None
        if found is not None:
            self._record(*found)
        return out

    def _record(self, weights: Tensor, allowed: Tensor) -> None:
        """``allowed``: which keys each query may look at (from the logits, not from the
        weights: a fully saturated row's other weights underflow to exactly 0)."""
        weights = weights.detach().float()
        counts = allowed.expand_as(weights).sum(-1)
        rows = weights.amax(-1)[counts >= 2]
        if rows.numel():
            module = self._stack[-1] if self._stack else "(model)"
            uniform = float((1.0 / counts[counts >= 2].float()).mean())
            record = AttentionRecord(module, weights.shape[-1], float(rows.mean()), uniform)
            self.records.append(record)


def _weights(
    func, args: tuple, kwargs: dict, out: object, module: str = ""
) -> tuple[Tensor, Tensor] | None:
    """``(weights, allowed keys)`` of one call (module docstring), ``None`` for other calls;
    ``module``: the innermost module running it."""
    with torch.no_grad():
        if func is F.scaled_dot_product_attention:
            logits = _sdpa_logits(*args, **kwargs)
            return torch.softmax(logits, -1), _allowed(logits)
        if func is F.multi_head_attention_forward:
            return _mha_weights(args, kwargs)
        if (
            func in SOFTMAXES
            and isinstance(out, Tensor)
            and _attention_shaped(out, args, kwargs, module)
        ):
            return out, _allowed(args[0])
    return None


def _allowed(logits: Tensor) -> Tensor:
    """Keys a query may look at: logits neither -inf nor a large negative mask value."""
    floor = torch.finfo(logits.dtype).min / 2 if logits.is_floating_point() else -math.inf
    return torch.isfinite(logits) & (logits > floor)


def _attention_shaped(out: Tensor, args: tuple, kwargs: dict, module: str = "") -> bool:
    """A softmax over the last dim of square ``[..., T, T]`` scores (self-attention), or of
    any ≥ 3-D scores inside a module named like attention (``attn``, cross-attention's
    ``[..., T, S]``): not a segmentation head's softmax over ``[B, H, W, classes]``."""
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim not in (-1, out.dim() - 1) or out.dim() < 3:
        return False
    return out.shape[-1] == out.shape[-2] or "att" in module.rsplit(".", 1)[-1].lower()


def _sdpa_logits(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    **_: object,
) -> Tensor:
    """``q kᵀ · scale + mask`` as ``F.scaled_dot_product_attention`` defines it (masked keys
    at -inf); its softmax is the attention weights."""
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if key.shape[-3:-2] != query.shape[-3:-2] and key.dim() == query.dim() >= 3:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)  # grouped q
    logits = query.float() @ key.float().transpose(-2, -1) * scale
    if is_causal:
        t, s = logits.shape[-2:]
        attn_mask = torch.ones(t, s, dtype=torch.bool, device=logits.device).tril()
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        logits = logits.masked_fill(attn_mask.logical_not(), -math.inf)
    elif attn_mask is not None:
        logits = logits + attn_mask
    return logits


def _mha_weights(args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
    """``nn.MultiheadAttention``'s per-head weights: its functional form run once more;
    every key allowed unless a mask is given (then the keys with a weight above 0)."""
    import inspect

    bound = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
    masked = any(bound.arguments.get(k) is not None for k in ("attn_mask", "key_padding_mask"))
    masked = masked or bool(bound.arguments.get("is_causal"))
    bound.arguments.update(need_weights=True, average_attn_weights=False, dropout_p=0.0)
    _, weights = F.multi_head_attention_forward(*bound.args, **bound.kwargs)
    return weights, (weights > 0) if masked else torch.ones_like(weights, dtype=torch.bool)


def _uniform(record: AttentionRecord) -> float:
    return record.uniform if record.uniform == record.uniform else 1 / record.keys


def attention_findings(records: list[AttentionRecord]) -> list[Finding]:
    """``saturated_attention`` for the sharpest softmax above :data:`TOP_WEIGHT_HIGH`."""
    hot = [r for r in records if r.top_weight > TOP_WEIGHT_HIGH]
    if not hot:
        return []
    worst = max(hot, key=lambda r: r.top_weight)
    more = f" ({len(hot)} of {len(records)} attention softmaxes)" if len(records) > 1 else ""
    message = (
        f"attention starts saturated: at {worst.module} each query puts on average "
        f"{worst.top_weight:.2f} of its weight on one key (limit {TOP_WEIGHT_HIGH:g}; uniform "
        f"over the keys each query may see: {_uniform(worst):.2f}){more}"
    )
    suggestion = (
        "the q·k logits are too large: a saturated softmax passes almost no gradient to the "
        "query and key weights; give them a fan-in scale (std ≈ 1/sqrt(width): xavier_uniform "
        "as nn.MultiheadAttention's own, lecun_normal, or normal(std=0.02) as GPT-2)"
    )
    values = {"top_weight": worst.top_weight, "keys": float(worst.keys)}
    layers = tuple(dict.fromkeys(r.module for r in hot))
    return [Finding("saturated_attention", layers, values, TOP_WEIGHT_HIGH, message, suggestion)]
