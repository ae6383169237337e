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

**Parameters a model did not use.** ``torch.optim`` skips a parameter whose ``.grad`` is
``None`` (a branch that data-dependent code did not take): its value, momentum and Adam
moments stay, and its Adam step count does not advance. ``present`` (per parameter, a mask
``[M]`` of the models that have its gradient, or ``None`` for all) does the same per model:
the others' step is computed with learning rate 0 and their state put back, and Adam's bias
corrections use each model's own count of steps of that parameter, so a model's numbers do
not depend on which other models share its stack.
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


def _keep(alive: Tensor | None, present: Tensor | None, like: Tensor) -> Tensor | None:
    """The models that update a parameter this step, shaped as ``like`` (``None``: all)."""
    if alive is None and present is None:
        return None
    if alive is None or present is None:
        keep = alive if present is None else present
    else:
        keep = alive & present
    return keep.view(like.shape)


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
        self.uniform, self.lr0 = len(set(lrs)) == 1, float(lrs[0]) if lrs else 0.0
        self.mu = [_column(momenta, p) for p in self.params]
        self.wd = [_column(self.wds, p) for p in self.params]
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]
        self.counts: list[Tensor | None] = [None] * len(self.params)
        """Per parameter, each model's Adam step count ``[M, 1, ...]`` once one has skipped
        a step of it (``None``: every model has taken all :attr:`t` steps)."""

    @torch.no_grad()
    def step(
        self,
        alive: Tensor | None = None,
        grads: Sequence[Tensor | None] | None = None,
        present: Sequence[Tensor | None] | None = None,
    ) -> None:
        """One update from ``grads`` (default: each parameter's ``.grad``), ``[M, ...]``
        each; models with ``alive[m]`` False are frozen, and a parameter's models outside
        ``present[i]`` skip it (see the module docstring). All tensors are updated by
        ``torch._foreach_*`` kernels (one launch per operation, as ``torch.optim``'s
        default), with a scalar learning rate when every model has the same.
        """
        self.t += 1
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        present = [None] * len(self.params) if present is None else list(present)
        idx = [i for i, g in enumerate(grads) if g is not None]
        for i, g in enumerate(grads):
            self._count(i, None if g is None else present[i], skipped=g is None)
        if not idx:
            return
        ps, gs = [self.params[i] for i in idx], [grads[i] for i in idx]
        lrs: list[Tensor] | float = [self.lr[i] for i in idx]
        keeps = [_keep(alive, present[i], self.lr[i]) for i in idx]
        if any(k is not None for k in keeps):
            ones = [
                torch.ones(lr.shape, dtype=torch.bool, device=lr.device) if k is None else k
                for k, lr in zip(keeps, lrs, strict=True)
            ]
            gs = [torch.where(k, g, 0.0) for k, g in zip(ones, gs, strict=True)]
            lrs = torch._foreach_mul(lrs, ones)
        elif self.uniform:
            lrs = self.lr0
        saved = self._save_skipped(idx, present)
        if self.any_wd and self.kind != "adamw":
            gs = torch._foreach_addcmul(gs, ps, [self.wd[i] for i in idx])
        if self.kind == "momentum":
            gs = self._momentum(idx, gs)
        if self.kind in ("adam", "adamw"):
            self._adam(idx, ps, gs, lrs)
        elif isinstance(lrs, float):
            torch._foreach_add_(ps, gs, alpha=-lrs)
        else:
            torch._foreach_sub_(ps, torch._foreach_mul(gs, lrs))
        self._restore_skipped(saved)

    def _count(self, i: int, present: Tensor | None, skipped: bool) -> None:
        """Advance parameter ``i``'s per-model Adam step counts, if it needs them: when all
        its models skip this step, or only those in ``present`` take it."""
        if self.kind not in ("adam", "adamw") or (present is None and not skipped):
            if self.counts[i] is not None:
                self.counts[i] += 1
            return
        if self.counts[i] is None:
            self.counts[i] = torch.full_like(self.lr[i], float(self.t - 1))
        if not skipped:
            self.counts[i] += present.view(self.lr[i].shape)

    def _save_skipped(
        self, idx: list[int], present: list[Tensor | None]
    ) -> list[tuple[int, Tensor, dict[str, Tensor]]]:
        """``(parameter, skipped models, their state rows)`` to put back after the update
        (no rows yet: the state this step creates is reset to zeros for them, which is
        the state of a parameter that has taken no step)."""
        saved = []
        for i in idx:
            if present[i] is not None:
                rows = ~present[i]
                saved.append((i, rows, {k: t[rows].clone() for k, t in self.state[i].items()}))
        return saved

    def _restore_skipped(self, saved: list[tuple[int, Tensor, dict[str, Tensor]]]) -> None:
        for i, rows, values in saved:
            for name, tensor in self.state[i].items():
                tensor[rows] = values.get(name, 0.0)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def momentum_buffer(self, param: Tensor) -> Tensor:
        """``param``'s momentum buffer (``param`` one of :attr:`params`), created as zeros
        in its layout if it has none yet: ``mu 0 + g = g`` is the first step's ``b = g``.
        For SGD fused into a backward (:class:`initlab.train.layers.FusedSGD`), which then
        updates it in place, so :meth:`step` continues from it when fusing stops."""
        i = next(k for k, p in enumerate(self.params) if p is param)
        state = self.state[i]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state["momentum_buffer"]

    def _momentum(self, idx: list[int], gs: list[Tensor]) -> list[Tensor]:
        """``b <- mu b + g`` (first step ``b = g``); the buffers are the step directions."""
        old = [(i, g) for i, g in zip(idx, gs, strict=True) if "momentum_buffer" in self.state[i]]
        for i, g in zip(idx, gs, strict=True):
            if "momentum_buffer" not in self.state[i]:
                self.state[i]["momentum_buffer"] = g.clone()
        if old:
            bufs = [self.state[i]["momentum_buffer"] for i, _ in old]
            torch._foreach_mul_(bufs, [self.mu[i] for i, _ in old])
            torch._foreach_add_(bufs, [g for _, g in old])
        return [self.state[i]["momentum_buffer"] for i in idx]

    def _adam(
        self, idx: list[int], ps: list[Tensor], gs: list[Tensor], lrs: list[Tensor] | float
    ) -> None:
        for i, p in zip(idx, ps, strict=True):
            if not self.state[i]:
                self.state[i]["exp_avg"] = torch.zeros_like(p)
                self.state[i]["exp_avg_sq"] = torch.zeros_like(p)
        if self.kind == "adamw":
            wds = [self.wd[i] for i in idx]
            if isinstance(lrs, float):
                decay = torch._foreach_add(torch._foreach_mul(wds, -lrs), 1.0)
            else:
                decay = torch._foreach_add(torch._foreach_mul(torch._foreach_mul(lrs, wds), -1), 1)
            torch._foreach_mul_(ps, decay)
        ms = [self.state[i]["exp_avg"] for i in idx]
        vs = [self.state[i]["exp_avg_sq"] for i in idx]
        torch._foreach_lerp_(ms, gs, 1 - BETA1)
        torch._foreach_mul_(vs, BETA2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - BETA2)
        if any(self.counts[i] is not None for i in idx):
            self._adam_counted(idx, ps, ms, vs, lrs)
            return
        bc1, bc2 = 1 - BETA1**self.t, 1 - BETA2**self.t
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bc2**0.5)
        torch._foreach_add_(denom, EPS)
        if isinstance(lrs, float):
            torch._foreach_addcdiv_(ps, ms, denom, value=-lrs / bc1)
        else:
            steps = torch._foreach_div(ms, denom)
            torch._foreach_mul_(steps, torch._foreach_div(lrs, bc1))
            torch._foreach_sub_(ps, steps)

    def _adam_counted(self, idx, ps, ms, vs, lrs) -> None:
        """Adam's step with each model's own step count per parameter (``counts``; a
        model that has not taken a step yet is masked by its learning rate 0)."""
        for k, i in enumerate(idx):
            t = (
                self.counts[i]
                if self.counts[i] is not None
                else torch.full_like(self.lr[i], self.t)
            )
            t = t.clamp(min=1)
            bc1, bc2 = 1 - BETA1**t, 1 - BETA2**t
            lr = lrs if isinstance(lrs, float) else lrs[k]
            denom = (vs[k].sqrt() / bc2.sqrt()).add_(EPS)
            ps[k].sub_(ms[k] / denom * (lr / bc1))
