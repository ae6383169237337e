"""``torch.optim``'s SGD, momentum, Adam and AdamW, elementwise over stacked parameters.

Every parameter has a leading model axis M; each model's learning rate, momentum and weight
decay are ``[M, 1, ..., 1]`` tensors broadcasting over it. The formulas are PyTorch's
(``torch/optim/sgd.py``, ``adam.py``, ``adamw.py``), applied to all models at once:

- sgd:      ``g <- g + wd p`` (if wd); ``p <- p - lr g``
- momentum: ``g <- g + wd p`` (if wd); ``b <- mu b + g`` (first step ``b = g``); ``p <- p - lr b``
- adam:     ``g <- g + wd p`` (if wd); ``m <- lerp(m, g, 1 - b1)``; ``v <- b2 v + (1 - b2) g^2``;
  ``p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``
- adamw:    ``p <- p (1 - lr wd)`` first (decoupled; wd defaults to 0.01), then Adam without wd.

**Freezing.** :meth:`StackedOptimizer.step` takes an optional ``alive`` mask ``[M]``: a frozen
model's gradient is zeroed (NaN/inf included) and its learning rate is 0, so its parameters
stay exactly as they are while the others train.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from initlab.train.optim import ADAMW_DEFAULT_WEIGHT_DECAY

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
KINDS = ("sgd", "momentum", "adam", "adamw")


def effective_weight_decay(optimizer: str, weight_decay: float) -> float:
    """The weight decay a run's ``torch.optim`` optimizer gets (adamw: 0 means 0.01)."""
    if optimizer == "adamw":
        return weight_decay or ADAMW_DEFAULT_WEIGHT_DECAY
    return weight_decay


def _column(values: Sequence[float], like: Tensor) -> Tensor:
    """Per-model values as ``[M, 1, ..., 1]`` broadcasting over ``like`` (``[M, ...]``)."""
    shape = (-1,) + (1,) * (like.dim() - 1)
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).view(shape)


class StackedOptimizer:
    """One optimizer for every stacked parameter; per-model ``lrs``, ``momenta``, ``wds``."""

    def __init__(
        self,
        kind: str,
        params: Sequence[Tensor],
        lrs: Sequence[float],
        momenta: Sequence[float],
        weight_decays: Sequence[float],
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown optimizer kind {kind!r}")
        self.kind, self.params, self.t = kind, list(params), 0
        self.wds = [effective_weight_decay(kind, w) for w in weight_decays]
        self.any_wd = any(self.wds)
        self.lr = [_column(lrs, p) for p in self.params]
        self.mu = [_column(momenta, p) for p in self.params]
        self.wd = [_column(self.wds, p) for p in self.params]
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]

    @torch.no_grad()
    def step(self, alive: Tensor | None = None) -> None:
        """One update from each parameter's ``.grad``; models with ``alive[m]`` False are
        frozen (see the module docstring)."""
        self.t += 1
        for i, p in enumerate(self.params):
            g, lr = p.grad, self.lr[i]
            if g is None:
                continue
            if alive is not None:
                keep = alive.view(lr.shape)
                g = torch.where(keep, g, 0.0)
                lr = lr * keep
            if self.any_wd and self.kind != "adamw":
                g = g.addcmul(p, self.wd[i])
            if self.kind == "sgd":
                p.addcmul_(g, lr, value=-1.0)
            elif self.kind == "momentum":
                self._momentum(i, p, g, lr)
            else:
                self._adam(i, p, g, lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _momentum(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        buf = self.state[i].get("momentum_buffer")
        if buf is None:
            buf = self.state[i]["momentum_buffer"] = g.clone()
        else:
            buf.mul_(self.mu[i]).add_(g)
        p.addcmul_(buf, lr, value=-1.0)

    def _adam(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        state = self.state[i]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        if self.kind == "adamw":
            p.mul_(1 - lr * self.wd[i])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - BETA1)
        v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
        bc1, bc2 = 1 - BETA1**self.t, 1 - BETA2**self.t
        denom = (v.sqrt() / bc2**0.5).add_(EPS)
        p.addcmul_(m / denom, lr / bc1, value=-1.0)
