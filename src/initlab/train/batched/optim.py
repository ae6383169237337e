"""``torch.optim``'s SGD, momentum, Adam and AdamW on stacked parameters, per-model settings.

Every parameter carries a leading model axis M; the learning rate, momentum and weight decay
of each model are ``[M, 1, 1]`` tensors that broadcast over a ``[M, in, out]`` weight or a
``[M, 1, out]`` bias. The formulas are PyTorch's (``torch/optim/sgd.py``, ``adam.py``, single-
tensor path, the one used on CPU), applied to all models at once:

- sgd:      ``g <- g + wd p`` (if wd); ``p <- p - lr g``
- momentum: ``g <- g + wd p`` (if wd); ``b <- mu b + g`` (first step ``b = g``); ``p <- p - lr b``
- adam:     ``g <- g + wd p`` (if wd); ``m <- lerp(m, g, 1 - b1)``;
  ``v <- b2 v + (1 - b2) g^2``; ``p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``
- adamw:    ``p <- p (1 - lr wd)`` first (decoupled; wd defaults to 0.01), then Adam without wd.

Fusions (same formulas, different float32 rounding order): for sgd without weight decay the
weight gradient is never materialized — ``W.baddbmm_(h^T, dz, alpha=-lr)`` adds ``-lr h^T dz``
in the matrix product itself; for momentum without weight decay the buffer update is
``b.mul_(mu).baddbmm_(h^T, dz)`` (a zero-initialized buffer makes the first step ``b = g``
exactly). With per-model learning rates the factor ``-lr`` scales ``dz`` (small) instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from initlab.config import RunConfig
from initlab.train.optim import ADAMW_DEFAULT_WEIGHT_DECAY

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def _column(values: Sequence[float]) -> Tensor:
    """Per-model values as a ``[M, 1, 1]`` float32 tensor (each rounded like a scalar arg)."""
    return torch.tensor(list(values), dtype=torch.float32).view(-1, 1, 1)


def _common(values: Sequence[float]) -> float | None:
    """The value when all ``values`` are equal (a scalar fast path), else ``None``."""
    return values[0] if values and all(v == values[0] for v in values) else None


def weight_decays(configs: Sequence[RunConfig]) -> list[float]:
    """Each config's weight decay as its single-engine optimizer gets it (adamw: 0 → 0.01)."""
    return [
        (c.weight_decay or ADAMW_DEFAULT_WEIGHT_DECAY) if c.optimizer == "adamw" else c.weight_decay
        for c in configs
    ]


class StackedOptimizer:
    """One optimizer for all parameters of a :class:`StackedMLP`; a ``GradSink``.

    ``begin_step()`` before each backward pass; the backward then calls :meth:`linear` and
    :meth:`grad`, which update the parameters in place.
    """

    def __init__(self, configs: Sequence[RunConfig], params: list[Tensor]) -> None:
        self.kind = configs[0].optimizer
        if any(c.optimizer != self.kind for c in configs):
            raise ValueError("a stacked optimizer needs one optimizer kind for all models")
        self.params = params
        self.lrs = [float(c.lr) for c in configs]
        self.wds = weight_decays(configs)
        self.neg_lr = _column([-lr for lr in self.lrs])
        self.momentum = _column([c.momentum for c in configs])
        self.wd = _column(self.wds)
        self.decay = _column([1 - lr * wd for lr, wd in zip(self.lrs, self.wds, strict=True)])
        self.any_wd = any(self.wds)
        self.t = 0
        self.state: list[dict[str, Tensor]] = [{} for _ in params]
        self.uniform_lr = _common(self.lrs)

    def select(self, index: Tensor, params: list[Tensor]) -> None:
        """Keep the models ``index`` (after the parameters were compacted to ``params``)."""
        keep = index.tolist()
        self.params = params
        self.lrs = [self.lrs[i] for i in keep]
        self.wds = [self.wds[i] for i in keep]
        self.uniform_lr = _common(self.lrs)
        for name in ("neg_lr", "momentum", "wd", "decay"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self.state = [{k: v.index_select(0, index) for k, v in s.items()} for s in self.state]

    def begin_step(self) -> None:
        """Count one optimizer step (Adam's bias corrections use it)."""
        self.t += 1

    def linear(self, weight: int, bias: int, dz: Tensor, inp: Tensor) -> None:
        """Update a linear layer from the factors of its weight gradient ``inp^T dz``."""
        fusable = not self.any_wd and self.kind in ("sgd", "momentum") and inp.dim() == 3
        if fusable:
            self._fused(weight, dz, inp)
        else:
            self.grad(weight, torch.matmul(inp.transpose(-2, -1), dz))
        self.grad(bias, dz.sum(1, keepdim=True))

    def _fused(self, index: int, dz: Tensor, inp: Tensor) -> None:
        """SGD / momentum weight update with the gradient folded into ``baddbmm_``."""
        p, lr = self.params[index], self.uniform_lr
        if self.kind == "sgd":
            if lr is not None:
                p.baddbmm_(inp.transpose(1, 2), dz, alpha=-lr)
            else:
                p.baddbmm_(inp.transpose(1, 2), dz * self.neg_lr)
            return
        buf = self.state[index].get("momentum_buffer")
        if buf is None:
            buf = self.state[index]["momentum_buffer"] = torch.zeros_like(p)
        buf.mul_(self.momentum).baddbmm_(inp.transpose(1, 2), dz)
        self._apply(p, buf)

    def _apply(self, p: Tensor, g: Tensor) -> None:
        """``p <- p - lr g`` with one or per-model learning rates."""
        lr = self.uniform_lr
        if lr is not None:
            p.add_(g, alpha=-lr)
        else:
            p.addcmul_(g, self.neg_lr)

    def grad(self, index: int, g: Tensor) -> None:
        """Apply the update of parameter ``index`` given its full gradient ``g``."""
        p = self.params[index]
        if self.any_wd and self.kind != "adamw":
            g = torch.addcmul(g, p, self.wd)
        if self.kind == "sgd":
            self._apply(p, g)
        elif self.kind == "momentum":
            buf = self.state[index].get("momentum_buffer")
            if buf is None:
                buf = self.state[index]["momentum_buffer"] = g.clone()
            else:
                buf.mul_(self.momentum).add_(g)
            self._apply(p, buf)
        else:
            self._adam(index, p, g)

    def _adam(self, index: int, p: Tensor, g: Tensor) -> None:
        """Adam / AdamW (torch's single-tensor formulas, bias-corrected)."""
        state = self.state[index]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        if self.kind == "adamw":
            p.mul_(self.decay)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - BETA1)
        v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
        bc1, bc2 = 1 - BETA1**self.t, 1 - BETA2**self.t
        denom = (v.sqrt() / bc2**0.5).add_(EPS)
        lr = self.uniform_lr
        if lr is not None:
            p.addcdiv_(m, denom, value=-(lr / bc1))
        else:
            step = _column([-(rate / bc1) for rate in self.lrs])
            p.addcmul_(m / denom, step)
