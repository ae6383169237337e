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

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
KINDS = ("sgd", "momentum", "adam", "adamw")
ADAMS = ("adam", "adamw")
ADAMW_DEFAULT_WEIGHT_DECAY = 0.01
"""``torch.optim.AdamW``'s default weight decay."""
DESCRIPTIONS = {
    "sgd": "plain SGD: p ← p − lr·g",
    "momentum": "SGD with momentum μ: b ← μ·b + g; p ← p − lr·b",
    "adam": "Adam (β=(0.9, 0.999), ε=1e-8), bias-corrected",
    "adamw": "AdamW: Adam with decoupled weight decay (default 0.01)",
}


def effective_weight_decay(optimizer: str, weight_decay: float | None) -> float:
    """The weight decay ``λ`` a run's optimizer applies: ``weight_decay``, or where it is
    ``None`` the optimizer's default as in ``torch.optim`` (0; 0.01 for adamw). sgd,
    momentum and adam add ``λ·p`` to the gradient (L2); adamw multiplies ``p`` by
    ``1 − lr·λ`` before its step (decoupled)."""
    if weight_decay is None:
        return ADAMW_DEFAULT_WEIGHT_DECAY if optimizer == "adamw" else 0.0
    return float(weight_decay)


def _keep(alive: Tensor | None, present: Tensor | None, like: Tensor) -> Tensor:
    """The models that update a parameter this step (bool), shaped as ``like``."""
    if alive is None and present is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    if alive is None or present is None:
        keep = alive if present is None else present
    else:
        keep = alive & present
    return keep.view(like.shape)


def _pick(values, mask: list[bool]):
    """The entries of the list ``values`` where ``mask`` is true (a number: itself)."""
    if isinstance(values, float):
        return values
    return [v for v, keep in zip(values, mask, strict=True) if keep]


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
        """Per parameter, each model's Adam step count (float64 ``[M]`` on the CPU) once one
        has skipped a step of it (``None``: every model has taken all :attr:`t` steps)."""

    @torch.no_grad()
    def step(
        self,
        alive: Tensor | None = None,
        grads: Sequence[Tensor | None] | None = None,
        present: Sequence[Tensor | None] | None = None,
        lr_scale: float = 1.0,
    ) -> None:
        """One update from ``grads`` (default: each parameter's ``.grad``), ``[M, ...]``
        each; models with ``alive[m]`` False are frozen, and a parameter's models outside
        ``present[i]`` skip it (see the module docstring). All tensors are updated by
        ``torch._foreach_*`` kernels (one launch per operation, as ``torch.optim``'s
        default), with a scalar learning rate when every model has the same; ``lr_scale``
        multiplies every learning rate this step (a schedule's factor,
        :mod:`initlab.train.schedule`).
        """
        self.t += 1
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        partial = present is not None and any(p is not None for p in present)
        present = list(present) if partial else [None] * len(self.params)
        if self.kind in ADAMS:
            self._count(grads, present)
        idx = [i for i, g in enumerate(grads) if g is not None]
        if not idx:
            return
        ps, gs = [self.params[i] for i in idx], [grads[i] for i in idx]
        lrs: list[Tensor] | float = [self.lr[i] for i in idx]
        keeps: list[Tensor] = []
        if alive is not None or partial:
            keeps = [_keep(alive, present[i], self.lr[i]) for i in idx]
            gs = [torch.where(k, g, 0.0) for k, g in zip(keeps, gs, strict=True)]
            lrs = torch._foreach_mul(lrs, keeps)
        elif self.uniform:
            lrs = self.lr0
        if lr_scale != 1.0:
            lrs = lrs * lr_scale if isinstance(lrs, float) else torch._foreach_mul(lrs, lr_scale)
        saved = self._save_skipped(idx, present, keeps) if partial else []
        if self.any_wd and self.kind != "adamw":
            gs = torch._foreach_addcmul(gs, ps, [self.wd[i] for i in idx])
        if self.kind == "momentum":
            gs = self._momentum(idx, gs)
        if self.kind in ADAMS:
            self._adam(idx, ps, gs, lrs)
        elif isinstance(lrs, float):
            torch._foreach_add_(ps, gs, alpha=-lrs)
        else:
            torch._foreach_sub_(ps, torch._foreach_mul(gs, lrs))
        self._restore_skipped(saved)

    def _count(self, grads: list[Tensor | None], present: list[Tensor | None]) -> None:
        """Advance each parameter's per-model Adam step counts where they are kept: from
        the first step on which some model skipped it (no gradient, or not in ``present``)."""
        for i, g in enumerate(grads):
            skips = g is None or present[i] is not None
            if self.counts[i] is None and not skips:
                continue
            if self.counts[i] is None:
                size = self.params[i].shape[0]
                self.counts[i] = torch.full((size,), float(self.t - 1), dtype=torch.float64)
            if g is not None:
                self.counts[i] += 1 if present[i] is None else present[i].cpu().double()

    def _save_skipped(
        self, idx: list[int], present: list[Tensor | None], keeps: list[Tensor]
    ) -> list[tuple[int, Tensor, dict[str, Tensor]]]:
        """``(parameter, the models that update it, its state)`` to put the skipped
        models' state back after the update (state this step creates: zeros for them,
        the state of a parameter that has taken no step)."""
        return [
            (i, keep, {k: t.clone() for k, t in self.state[i].items()})
            for i, keep in zip(idx, keeps, strict=True)
            if present[i] is not None
        ]

    def _restore_skipped(self, saved: list[tuple[int, Tensor, dict[str, Tensor]]]) -> None:
        for i, keep, before in saved:
            for name, tensor in self.state[i].items():
                old = before.get(name)
                tensor.copy_(tensor * keep if old is None else torch.where(keep, tensor, old))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def model_state(self, m: int) -> dict:
        """Model ``m``'s share of the state (copies): per parameter, by position, its slice
        of each buffer and its Adam step count (``None``: all :attr:`t` steps); and ``t``."""
        return {
            "t": self.t,
            "state": [{k: v[m].detach().clone() for k, v in s.items()} for s in self.state],
            "counts": [None if c is None else float(c[m]) for c in self.counts],
        }

    @torch.no_grad()
    def load_model_states(self, states: Sequence[dict]) -> None:
        """The state of each model of the stack, in order, from its :meth:`model_state`
        (taken after the same number of steps). A buffer some model lacks is zeros for it,
        which is what its first step would start from."""
        self.t = max(s["t"] for s in states)
        for i, param in enumerate(self.params):
            for name in sorted(set().union(*(s["state"][i] for s in states))):
                stacked = torch.zeros_like(param)  # in the parameter's memory layout
                for m, s in enumerate(states):
                    if name in s["state"][i]:
                        stacked[m].copy_(s["state"][i][name])
                self.state[i][name] = stacked
            counts = [s["counts"][i] for s in states]
            if any(c is not None for c in counts):
                steps = [float(self.t) if c is None else c for c in counts]
                self.counts[i] = torch.tensor(steps, dtype=torch.float64)

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
        counted = [self.counts[i] is not None for i in idx]
        if any(counted):
            self._adam_counted(*(_pick(xs, counted) for xs in (idx, ps, ms, vs, lrs)))
            plain = [not c for c in counted]
            idx, ps, ms, vs, lrs = (_pick(xs, plain) for xs in (idx, ps, ms, vs, lrs))
        if not idx:
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
        """Adam's step for parameters with per-model step counts (:attr:`counts`): bias
        corrections in float64 from each model's own count, as ``torch.optim`` computes
        them from its per-parameter step (a model with no step yet has learning rate 0)."""
        for k, i in enumerate(idx):
            t = self.counts[i].clamp(min=1)
            shape, like = self.lr[i].shape, ps[k]
            bc1 = (1 - BETA1**t).to(like.device, like.dtype).view(shape)
            bc2_sqrt = (1 - BETA2**t).sqrt().to(like.device, like.dtype).view(shape)
            lr = lrs if isinstance(lrs, float) else lrs[k]
            denom = (vs[k].sqrt() / bc2_sqrt).add_(EPS)
            ps[k].sub_(ms[k] / denom * (lr / bc1))
