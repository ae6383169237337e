"""M models of one architecture as one set of stacked tensors, run with ``torch.func``.

:class:`ModelStack` holds every parameter and buffer of M same-shaped ``nn.Module``\\ s
stacked along a new leading model axis (:func:`torch.func.stack_module_state`). The forward
pass of all models is :func:`torch.func.functional_call` of one template module under
:func:`torch.func.vmap` over that axis, with ``randomness="different"`` so each model draws
its own dropout masks. Buffers (BatchNorm running statistics, ``num_batches_tracked``) are
passed stacked and batched, so the in-place updates BatchNorm makes in training mode land in
each model's own slice: every model keeps its own running statistics.

A model vmap cannot run (data-dependent Python control flow, in-place operations vmap
rejects, ``.item()`` in ``forward``...) is detected by :meth:`ModelStack.trial` on a tiny
batch before training; the stack then runs each model's ``functional_call`` in turn on its
own slice (``looped``), which gives the same numbers, more slowly; :attr:`ModelStack.note`
says why in one line.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from initlab.train.layers import restore, speed_up


class ModelStack:
    """Stacked parameters (leaf tensors ``[M, ...]`` with ``requires_grad``) and buffers."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        if not models:
            raise ValueError("a model stack needs at least one model")
        self.size = len(models)
        self.device = device
        self.template = copy.deepcopy(models[0]).to(device)
        if self.size > 1:
            speed_up(self.template)
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, Tensor] = {
            k: v.detach().to(device).requires_grad_(True) for k, v in params.items()
        }
        self.buffers: dict[str, Tensor] = {k: v.to(device) for k, v in buffers.items()}
        self.looped = self.size == 1  # one model: functional_call alone, no vmap dispatch
        self.note = ""

    def _call(self, params: dict, buffers: dict, x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def forward(self, x: Tensor, *, train: bool, shared: bool = False) -> Tensor:
        """All models' outputs ``[M, B, ...]`` on ``x``: ``[M, B, ...]`` (each model its own
        batch) or, with ``shared``, ``[B, ...]`` (every model on the same batch)."""
        self.template.train(train)
        if self.looped:
            return torch.stack(
                [
                    self._call(self.slice_params(m), self.slice_buffers(m), x if shared else x[m])
                    for m in range(self.size)
                ]
            )
        run = vmap(self._call, in_dims=(0, 0, None if shared else 0), randomness="different")
        with vmap_friendly():
            return run(self.params, self.buffers, x)

    def slice_params(self, m: int) -> dict[str, Tensor]:
        """Model ``m``'s parameters: views of the stack (gradients flow into it)."""
        return {k: v[m] for k, v in self.params.items()}

    def slice_buffers(self, m: int) -> dict[str, Tensor]:
        """Model ``m``'s buffers: views, so in-place updates land in the stack."""
        return {k: v[m] for k, v in self.buffers.items()}

    def trial(self, x: Tensor) -> None:
        """Run one vmapped forward and backward on ``x`` (``[M, b, ...]``) without touching
        any parameter, gradient, buffer or RNG; on failure switch to ``looped`` and set
        :attr:`note`."""
        if self.size == 1:
            return
        params = {k: v.detach().clone().requires_grad_(True) for k, v in self.params.items()}
        buffers = {k: v.clone() for k, v in self.buffers.items()}
        self.template.train(True)
        try:
            with torch.random.fork_rng(devices=rng_devices(self.device)), vmap_friendly():
                run = vmap(self._call, in_dims=(0, 0, 0), randomness="different")
                out = run(params, buffers, x)
                torch.autograd.grad(out.float().sum(), list(params.values()), allow_unused=True)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            reason = reason.split(". ")[0].rstrip(".")[:160]
            self.looped = True
            self.note = (
                f"models trained one at a time (torch.func.vmap cannot run this model: {reason})"
            )

    def state_dict(self, m: int) -> dict[str, Tensor]:
        """Model ``m``'s state as ``nn.Module.state_dict`` names (detached copies)."""
        state = {k: v[m].detach().clone() for k, v in self.params.items()}
        state.update({k: v[m].clone() for k, v in self.buffers.items()})
        return state

    def materialize(self, m: int) -> nn.Module:
        """A real ``nn.Module`` holding model ``m``'s current state (a copy)."""
        model = restore(copy.deepcopy(self.template))
        model.load_state_dict(self.state_dict(m), strict=False)
        return model


@contextlib.contextmanager
def vmap_friendly() -> Iterator[None]:
    """Kernels that ``vmap`` batches: attention by its math form (the fused CPU/flash
    kernels and ``nn.TransformerEncoderLayer``'s eval fast path have no batching rule, so
    vmap would run them model by model)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def rng_devices(device: torch.device) -> list:
    """The CUDA devices whose RNG a fork must save (none on the CPU)."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []
