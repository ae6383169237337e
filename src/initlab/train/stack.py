"""M models of one architecture as one set of stacked tensors, run by one of three strategies.

:class:`ModelStack` holds every parameter and buffer of M same-shaped ``nn.Module``\\ s
stacked along a new leading model axis (:func:`torch.func.stack_module_state`):
:attr:`ModelStack.params` and :attr:`ModelStack.buffers` map state-dict names to ``[M, ...]``
tensors. The optimizer updates those tensors in place, whatever the strategy; the strategy
only decides how a forward pass reaches them:

- ``"stacked"`` — the model's leaf modules replaced by stacked equivalents
  (:func:`initlab.train.stacked.stacked_module`: ``Linear`` → one ``baddbmm`` for all models,
  ``BatchNorm1d`` over ``M·C`` channels), inputs ``[M, B, ...]``; for models whose forward
  is a plain composition of modules (``nn.Sequential`` trees, initlab's MLP);
- ``"vmap"`` — :func:`torch.func.vmap` of :func:`torch.func.functional_call` of one template
  module over the model axis, ``randomness="different"`` (each model its own dropout masks);
  buffers are passed batched, so BatchNorm's in-place updates land in each model's slice;
- ``"looped"`` — one real module per model whose parameters and buffers are *views* of the
  stacked tensors (leaves of their own for autograd), called one after the other: exactly
  the plain PyTorch forward and backward of each model, no ``functional_call``. A stack of one
  always runs this way, so training one model costs what a plain loop costs.

``strategy="auto"`` (the default) takes ``"stacked"`` where the model allows it, otherwise
``"vmap"``, and then :meth:`ModelStack.prepare` times one training step of that batched
strategy against ``"looped"`` on the first minibatch (process CPU time, one thread) and
keeps the faster (attention or
small convolutions under ``vmap`` are slower than running the models one by one). A model
``vmap`` cannot run (data-dependent control flow, ``.item()`` in ``forward``...) is detected
by :meth:`prepare` too; the stack then runs ``"looped"`` and :attr:`ModelStack.note` says why
in one line.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from initlab.train.layers import restore, speed_up
from initlab.train.stacked import NotStackable, stacked_module

STACKED, VMAP, LOOPED, AUTO = "stacked", "vmap", "looped", "auto"
STRATEGIES = (AUTO, STACKED, VMAP, LOOPED)
TIMED_ROUNDS = (3, 8)
"""Interleaved timed steps per strategy in :meth:`ModelStack.prepare` (the best counts): at
least the first, at most the second, more only while the call is close (:data:`CLEAR`). On
a 2-core AMD EPYC whose neighbours share its caches, one ResNet step took 71-125 ms from one
round to the next: with 3 rounds the trial's ratio of 8 small ResNets went 0.87-1.42, with
7 it stayed at 0.88-0.92 (2026-12-03)."""
CLEAR = (0.8, 1.0)
"""A best-step ratio batched / looped outside this range decides after the first rounds."""
MARGIN = 0.95
"""The batched strategy is kept only if its best step takes under ``MARGIN`` times looped's:
looped costs what a plain loop costs, so a tie goes its way. The trial times forward and
backward only, and it underrates batching: 8 small ResNets at a trial ratio of 0.88-0.92
trained in 0.83 of looped's time (one thread), and the transformer's 0.85-0.9 trial ratio
on an Intel Xeon came with about 1.3x in training, so the margin is 5%, not the 10% it was."""

LossFn = Callable[[Tensor], Tensor]
_CHOSEN: dict[tuple, tuple[str, str]] = {}
"""Outcomes of :meth:`ModelStack.prepare` in this process (see there)."""


class ModelStack:
    """Stacked parameters (leaf tensors ``[M, ...]``) and buffers; see the module docstring."""

    def __init__(
        self, models: Sequence[nn.Module], device: torch.device, strategy: str = AUTO
    ) -> None:
        if not models:
            raise ValueError("a model stack needs at least one model")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown stack strategy {strategy!r}")
        self.size, self.device, self.auto = len(models), device, strategy == AUTO
        self.template = copy.deepcopy(models[0]).to(device)
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, Tensor] = {
            k: v.detach().to(device).requires_grad_(True) for k, v in params.items()
        }
        self.buffers: dict[str, Tensor] = {k: v.to(device) for k, v in buffers.items()}
        self.note, self.training, self._path = "", None, ""
        self._modules: list[nn.Module] | None = None
        self._leaf_lists: list[list[Tensor]] | None = None
        self._graph: nn.Module | None = None
        self.strategy = LOOPED
        if self.size > 1 and strategy != LOOPED:
            self.strategy = VMAP if strategy == VMAP else self._try_stacked(strategy)

    def _try_stacked(self, strategy: str) -> str:
        try:
            stacked_module(self.template, {**self.params, **self.buffers})
        except NotStackable as exc:
            if strategy == STACKED:
                raise ValueError(f"this model cannot be stacked: {exc}") from None
            return VMAP
        for name, module in self.template.named_modules():
            if type(module) is nn.Linear and f"{name}.weight" in self.params:
                self.params[f"{name}.weight"] = in_out_layout(self.params[f"{name}.weight"])
        self._graph = stacked_module(self.template, {**self.params, **self.buffers})
        return STACKED

    @property
    def looped(self) -> bool:
        return self.strategy == LOOPED

    @looped.setter
    def looped(self, value: bool) -> None:
        self.use(LOOPED if value else VMAP)

    def use(self, strategy: str) -> None:
        """Run the forward passes by ``strategy`` from now on (the tensors stay the same)."""
        self.strategy, self.training = strategy, None
        self.zero_grad()

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: Tensor, *, train: bool, shared: bool = False) -> Tensor:
        """All models' outputs ``[M, B, ...]`` on ``x``: ``[M, B, ...]`` (each model its own
        batch) or, with ``shared``, ``[B, ...]`` (every model on the same batch).

        Evaluation (``train=False``) of a ``vmap`` stack runs the models one by one: their
        eval-mode kernels (fused attention, oneDNN convolutions) have no batching rule, and
        vmap's evaluation of the benchmark's ResNet took 7.5x as long (transformer 2.7x)."""
        path = LOOPED if self.strategy == VMAP and not train else self.strategy
        if self.training is not train or self._path != path:
            self._set_mode(train, path)
        if path == LOOPED:
            outs = [mod(x if shared else x[m]) for m, mod in enumerate(self.modules())]
            return outs[0].unsqueeze(0) if self.size == 1 else torch.stack(outs)
        if path == STACKED:
            return self._graph(x.expand(self.size, *x.shape) if shared else x)
        run = vmap(self._call, in_dims=(0, 0, None if shared else 0), randomness="different")
        with vmap_friendly():
            return run(self.params, self.buffers, x)

    def _set_mode(self, train: bool, path: str) -> None:
        if path == LOOPED:
            for mod in self.modules():
                mod.train(train)
        elif path == STACKED:
            self._graph.train(train)
        else:
            speed_up(self.template)
            self.template.train(train)
        self._path = path
        self.training = train

    def _call(self, params: dict, buffers: dict, x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def modules(self) -> list[nn.Module]:
        """One real module per model, its parameters and buffers views of the stack."""
        if self._modules is None:
            self._modules = [self._view_module(m) for m in range(self.size)]
        return self._modules

    def _view_module(self, m: int) -> nn.Module:
        module = restore(copy.deepcopy(self.template))
        tensors = {**{k: nn.Parameter(v.detach()[m]) for k, v in self.params.items()}}
        tensors.update({k: v[m] for k, v in self.buffers.items()})
        for name, value in tensors.items():
            owner, _, attr = name.rpartition(".")
            sub = module.get_submodule(owner)
            table = sub._parameters if isinstance(value, nn.Parameter) else sub._buffers
            table[attr] = value
        return module

    def fuse_sgd(
        self,
        lr: float | None,
        momentum: float = 0.0,
        buffer: Callable[[Tensor], Tensor] | None = None,
    ) -> bool:
        """Let the stacked linear layers update themselves in their backward with SGD at
        ``lr`` and ``momentum`` (``buffer(param)``: the optimizer's momentum buffer of a
        stacked parameter; ``lr=None``: plain gradients again;
        :class:`initlab.train.layers.FusedSGD`). ``False`` when the stack has no such layer
        (other strategies)."""
        layers = [] if self._graph is None else list(self._graph.modules())
        fusing = [mod for mod in layers if hasattr(mod, "fused")]
        on = lr is not None and self.strategy == STACKED
        own = {id(p) for p in self.params.values()}
        for mod in fusing:
            switch = mod.fused
            switch.lr, switch.momentum, switch.buffers = None, 0.0, None
            tensors = [t for t in (mod.weight, mod.bias) if t is not None]
            if not on or (momentum and not all(id(t) in own for t in tensors)):
                continue  # a bias sliced from a parameter (separate q, k, v) has no buffer
            switch.lr, switch.momentum = lr, momentum
            if momentum:
                bias = None if mod.bias is None else buffer(mod.bias)
                switch.buffers = (buffer(mod.weight), bias)
        return bool(fusing) and self.strategy == STACKED

    # -- gradients -------------------------------------------------------------------------

    def grads(self) -> list[Tensor | None]:
        """Each stacked parameter's gradient ``[M, ...]`` (in :attr:`params` order)."""
        if self.strategy != LOOPED:
            return [p.grad for p in self.params.values()]
        leaves = self._leaves()
        out: list[Tensor | None] = []
        for i, p in enumerate(self.params.values()):
            gs = [leaf[i].grad for leaf in leaves]
            if all(g is None for g in gs):
                out.append(None)
            elif self.size == 1:
                out.append(gs[0].unsqueeze(0))
            else:
                out.append(torch.stack([p[0] * 0 if g is None else g for g in gs]))
        return out

    def _leaves(self) -> list[list[Tensor]]:
        """Per model, its module's parameters in :attr:`params` order."""
        if self._leaf_lists is None:
            self._leaf_lists = []
            for mod in self.modules():
                named = dict(mod.named_parameters())
                self._leaf_lists.append([named[k] for k in self.params])
        return self._leaf_lists

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None
        for leaves in self._leaves() if self._modules is not None else ():
            for p in leaves:
                p.grad = None

    # -- choosing a strategy ---------------------------------------------------------------

    def prepare(self, x: Tensor, loss: LossFn) -> None:
        """Before training, on one minibatch ``x`` (``[M, b, ...]``) and ``loss(out)``:
        check the batched strategy runs (else fall back, see the module docstring) and, for
        ``auto``, keep the faster of it and ``looped``. Parameters, gradients, buffers and
        the RNG are left as they were. The outcome is remembered for the process by the
        architecture (its ``repr``), M, the input shape, device and thread count, so the
        chunks of a sweep pay for one trial."""
        if self.strategy == LOOPED:
            return
        key = self._trial_key(x)
        if key in _CHOSEN:
            strategy, self.note = _CHOSEN[key]
            self.use(strategy)
            return
        saved = {k: v.clone() for k, v in self.buffers.items()}
        try:
            with torch.random.fork_rng(devices=rng_devices(self.device)):
                self._prepare(x, loss)
        finally:
            for k, v in self.buffers.items():
                v.copy_(saved[k])
            self.zero_grad()
        _CHOSEN[key] = (self.strategy, self.note)

    def _trial_key(self, x: Tensor) -> tuple:
        kind = type(self.template)
        model = (kind.__module__, kind.__qualname__, repr(restore(self.template)))
        shape = (self.size, tuple(x.shape), x.dtype, str(self.device))
        return (*model, *shape, torch.get_num_threads(), self.auto, self.strategy)

    def _prepare(self, x: Tensor, loss: LossFn) -> None:
        batched = self._runnable(x, loss)  # also the batched strategy's warm-up
        if batched is None or not self.auto:
            return
        best = {batched: math.inf, LOOPED: math.inf}
        with trial_threads(self.device):
            self._timed_step(x, loss)  # warm-up at this thread count
            self.use(LOOPED)
            self._timed_one(x, loss)
            for done in range(1, TIMED_ROUNDS[1] + 1):
                self.use(batched)
                best[batched] = min(best[batched], self._timed_step(x, loss))
                self.use(LOOPED)
                best[LOOPED] = min(best[LOOPED], self.size * self._timed_one(x, loss))
                ratio = best[batched] / max(best[LOOPED], 1e-9)
                if done >= TIMED_ROUNDS[0] and not CLEAR[0] <= ratio <= CLEAR[1]:
                    break
        self.use(batched if best[batched] < MARGIN * best[LOOPED] else LOOPED)

    def _timed_one(self, x: Tensor, loss: LossFn) -> float:
        """Seconds of the first model's forward and backward alone (``looped`` costs M times
        that: its models run one after the other)."""
        synchronize(self.device)
        start = clock(self.device)
        out = self.modules()[0](x[0])
        loss(out.unsqueeze(0).expand(self.size, *out.shape)).backward()
        synchronize(self.device)
        self.zero_grad()
        return clock(self.device) - start

    def _runnable(self, x: Tensor, loss: LossFn) -> str | None:
        """The batched strategy that runs on ``x`` (stacked, else vmap), or ``None``."""
        if self.strategy == STACKED:
            try:
                self._timed_step(x, loss)
                return STACKED
            except Exception:
                self.use(VMAP)
        try:
            self._timed_step(x, loss)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            reason = reason.split(". ")[0].rstrip(".")[:160]
            self.use(LOOPED)
            self.note = (
                f"models trained one at a time (torch.func.vmap cannot run this model: {reason})"
            )
            return None
        return VMAP

    def _timed_step(self, x: Tensor, loss: LossFn) -> float:
        """Seconds of one forward and backward pass on ``x`` (gradients discarded)."""
        synchronize(self.device)
        start = clock(self.device)
        loss(self.forward(x, train=True)).backward()
        synchronize(self.device)
        self.zero_grad()
        return clock(self.device) - start

    # -- state -----------------------------------------------------------------------------

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


def in_out_layout(weight: Tensor) -> Tensor:
    """A leaf equal to ``weight`` (``[M, out, in]``) whose memory is laid out ``[M, in, out]``:
    the stacked forward ``x W^T`` is then a non-transposed ``baddbmm``, the fastest on MKL's
    AVX-512 kernels (benchmarks/README.md)."""
    moved = weight.detach().transpose(1, 2).contiguous().transpose(1, 2)
    return moved.detach().requires_grad_(weight.requires_grad)


def clock(device: torch.device) -> float:
    """Seconds for the strategy trial: this process's CPU time on the CPU (other jobs on a
    shared machine do not count, so one preempted step cannot decide), wall time on
    accelerators (after :func:`synchronize`)."""
    return time.process_time() if device.type == "cpu" else time.perf_counter()


@contextlib.contextmanager
def trial_threads(device: torch.device) -> Iterator[None]:
    """The strategy trial's thread count: one on the CPU. Process CPU time counts every
    thread, so at two threads a batched step whose large products use both threads was
    charged up to twice its wall time against looped's small ones, which mostly do not:
    ``auto`` kept ``looped`` for 7 seed MLPs at 2 threads (41 s for compare's 21 models
    instead of 11 s). Batching gains at least as much with more threads as with one."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (timing on accelerators)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
