"""M models of one architecture as one set of stacked tensors, run by one of three strategies.

:class:`ModelStack` holds every parameter and buffer of M same-shaped ``nn.Module``\\ s
stacked along a new leading model axis (:func:`stack_state`):
:attr:`ModelStack.params` and :attr:`ModelStack.buffers` map state-dict names to ``[M, ...]``
tensors. The optimizer updates those tensors in place, whatever the strategy; the strategy
only decides how a forward pass reaches them:

- ``"stacked"`` — the model's leaf modules replaced by stacked equivalents
  (:func:`initlab.train.stacked.stacked_module`: ``Linear`` → one ``baddbmm`` for all models,
  ``BatchNorm1d`` over ``M·C`` channels), inputs ``[M, B, ...]``, and each function and
  tensor method of the forward given its per-model meaning (shapes, dims, broadcasting:
  :mod:`initlab.train.stacked_ops`); for models whose forward torch.fx traces and whose
  every leaf and call has a stacked rule (MLPs, CNNs, ViTs, nanoGPT-style blocks);
- ``"vmap"`` — :func:`torch.func.vmap` of :func:`torch.func.functional_call` of one template
  module over the model axis, ``randomness="different"`` (each model its own dropout masks,
  from the stack's global generator); buffers are passed batched, so BatchNorm's in-place
  updates land in each model's slice;
- ``"looped"`` — one real module per model whose parameters and buffers are *views* of the
  stacked tensors (leaves of their own for autograd), called one after the other: exactly
  the plain PyTorch forward and backward of each model, no ``functional_call``. A stack of one
  always runs this way, so training one model costs what a plain loop costs.

Under ``stacked`` and ``looped``, model m's ``nn.Dropout`` masks come from its own generator
(:attr:`ModelStack.streams`, seeded with ``dropout_seeds[m]``;
:mod:`initlab.train.dropout_streams`): the same masks whatever shares the stack.

``strategy="auto"`` (the default) takes ``"stacked"`` where the model allows it, otherwise
``"vmap"``; before training, :func:`initlab.train.trial.prepare` checks on the first
minibatch that the batched strategy runs and reproduces each model's outputs, and for
``auto`` keeps it only if a timed trial finds it faster than ``"looped"`` (attention or
small convolutions under ``vmap`` are slower than running the models one by one). Where it
falls back to ``"looped"``, :attr:`ModelStack.note` says why in one line.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from initlab.ties import tied_names
from initlab.train.dropout_streams import DropoutStreams, use_model_dropout
from initlab.train.layers import restore, speed_up
from initlab.train.stacked import NotStackable, stacked_module

STACKED, VMAP, LOOPED, AUTO = "stacked", "vmap", "looped", "auto"
STRATEGIES = (AUTO, STACKED, VMAP, LOOPED)
BATCHED = "batched"
"""``INITLAB_STRATEGY=batched``: the batched strategy that runs (stacked, else vmap)."""
STRATEGY_VARIABLE = "INITLAB_STRATEGY"


def preferred_strategy() -> str:
    """``INITLAB_STRATEGY``: ``auto`` (unset: time the batched strategy against looped and
    keep the faster), ``batched`` or ``looped``, taken without timing wherever the model
    allows it. Which one a stack takes changes the order of float sums, which chaotic
    training (batch norm with Adam) can amplify to seed noise within an epoch or two; the
    timing depends on the machine's load, so pinning it makes a rerun on the same machine
    give the same numbers. Anything else: :class:`~initlab.errors.InitlabError`."""
    from initlab.errors import InitlabError

    value = os.environ.get(STRATEGY_VARIABLE, "").strip().lower() or AUTO
    if value not in (AUTO, BATCHED, LOOPED):
        raise InitlabError(
            f"{STRATEGY_VARIABLE}={value!r}: give auto (time it), batched (stacked, else "
            "vmap) or looped"
        )
    return "" if value == AUTO else value


def stack_state(models: Sequence[nn.Module]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Every parameter and buffer of ``models``, detached and stacked along a new first
    axis, by name (tied ones once), as :func:`torch.func.stack_module_state` stacks them but
    for models of one structure whatever their classes: a factory that defines its class in
    its body makes a new class per call, which ``stack_module_state`` refuses."""
    states = [(dict(m.named_parameters()), dict(m.named_buffers())) for m in models]
    first = states[0]
    for params, buffers in states[1:]:
        same = [(a.keys(), [t.shape for t in a.values()]) for a in (params, buffers)]
        if same != [(a.keys(), [t.shape for t in a.values()]) for a in first]:
            raise ValueError("the models of a stack must have the same parameters and buffers")
    params = {n: torch.stack([s[0][n].detach() for s in states]) for n in first[0]}
    buffers = {n: torch.stack([s[1][n].detach() for s in states]) for n in first[1]}
    return params, buffers


class ModelStack:
    """Stacked parameters (leaf tensors ``[M, ...]``) and buffers; see the module docstring."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        device: torch.device,
        strategy: str = AUTO,
        prefer: str = "",
        dropout_seeds: Sequence[int] | None = None,
    ) -> None:
        if not models:
            raise ValueError("a model stack needs at least one model")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown stack strategy {strategy!r}")
        self.size, self.device, self.auto = len(models), device, strategy == AUTO
        self.template = copy.deepcopy(models[0]).to(device)
        if dropout_seeds is not None and len(dropout_seeds) != len(models):
            raise ValueError("a model stack needs one dropout seed per model")
        self.streams = DropoutStreams(dropout_seeds or range(len(models)), device)
        """Model m's dropout generator (default seed: m)."""
        self.names = tied_names(self.template)
        """Every parameter/buffer name → the name its tensor is stored under (ties)."""
        params, buffers = stack_state(models)
        frozen = {n for n, p in self.template.named_parameters() if not p.requires_grad}
        self.frozen = frozen
        self.params: dict[str, Tensor] = {
            k: v.detach().to(device).requires_grad_(True)
            for k, v in params.items()
            if k not in frozen
        }
        """The trained tensors; a frozen parameter (``requires_grad=False``) is a constant,
        kept with the buffers, as ``torch.optim`` never steps what has no gradient."""
        frozen_params = {k: v.detach().to(device) for k, v in params.items() if k in frozen}
        self.buffers: dict[str, Tensor] = {
            **{k: v.to(device) for k, v in buffers.items()},
            **frozen_params,
        }
        self.note, self.training, self._path = "", None, ""
        self.unstackable = ""
        """Why the ``stacked`` strategy cannot run this model (``""``: it can, or untried)."""
        self.prefer = prefer  # for auto: the strategy to take untimed if it works (trial)
        self._modules: list[nn.Module] | None = None
        self._leaf_lists: list[list[Tensor]] | None = None
        self._present: list[Tensor | None] = [None] * len(self.params)
        self._graph: nn.Module | None = None
        self.strategy = LOOPED
        if self.size > 1 and strategy != LOOPED:
            self.strategy = VMAP if strategy == VMAP else self._try_stacked(strategy)

    def _try_stacked(self, strategy: str) -> str:
        try:
            stacked_module(self.template, {**self.params, **self.buffers}, self.streams)
        except NotStackable as exc:
            if strategy == STACKED:
                raise ValueError(f"this model cannot be stacked: {exc}") from None
            self.unstackable = str(exc)
            return VMAP
        for name, module in self.template.named_modules():
            for tensors in (self.params, self.buffers):  # a frozen weight is with the buffers
                if type(module) is nn.Linear and f"{name}.weight" in tensors:
                    tensors[f"{name}.weight"] = in_out_layout(tensors[f"{name}.weight"])
        self._graph = stacked_module(self.template, {**self.params, **self.buffers}, self.streams)
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
        for k in self.frozen:  # a parameter still, one that trains nothing
            tensors[k] = nn.Parameter(tensors[k].detach(), requires_grad=False)
        for name, canonical in self.names.items():
            value = tensors[canonical]
            owner, _, attr = name.rpartition(".")
            sub = module.get_submodule(owner)
            table = sub._parameters if isinstance(value, nn.Parameter) else sub._buffers
            table[attr] = value
        return use_model_dropout(module, self.streams.generators[m])

    def fuse_sgd(
        self,
        lr: float | Tensor | None,
        momentum: float = 0.0,
        buffer: Callable[[Tensor], Tensor] | None = None,
    ) -> bool:
        """Let the stacked linear layers update themselves in their backward with SGD at
        ``lr`` (one number, or each model's ``[M]``) and ``momentum`` (``buffer(param)``: the
        optimizer's momentum buffer of a stacked parameter; ``lr=None``: plain gradients again;
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
        """Each stacked parameter's gradient ``[M, ...]`` (in :attr:`params` order); a model
        that did not reach a parameter (looped strategy) has zeros there, and
        :meth:`present` says which models did."""
        self._present = [None] * len(self.params)
        if self.strategy != LOOPED:
            return [p.grad for p in self.params.values()]
        leaves = self._leaves()
        out: list[Tensor | None] = []
        for i, p in enumerate(self.params.values()):
            gs = [leaf[i].grad for leaf in leaves]
            has = [g is not None for g in gs]
            if not any(has):
                out.append(None)
            elif self.size == 1:
                out.append(gs[0].unsqueeze(0))
            else:
                out.append(torch.stack([p[0] * 0 if g is None else g for g in gs]))
                if not all(has):
                    self._present[i] = torch.tensor(has, device=self.device)
        return out

    def present(self) -> list[Tensor | None]:
        """Per stacked parameter, the models whose gradients the last :meth:`grads` holds
        (``[M]`` bool), or ``None`` when all do: in the looped strategy a model's
        data-dependent code may leave a parameter unused, and the optimizer then skips it
        for that model as ``torch.optim`` does
        (:class:`initlab.train.optimizers.StackedOptimizer`)."""
        return self._present

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

    # -- state -----------------------------------------------------------------------------

    def state_dict(self, m: int) -> dict[str, Tensor]:
        """Model ``m``'s state with exactly ``nn.Module.state_dict``'s keys (detached
        copies; a tied tensor under each of its names, non-persistent buffers left out)."""
        stored = {k: v[m].detach().clone() for k, v in self.params.items()}
        stored.update({k: v[m].clone() for k, v in self.buffers.items()})
        state = self.template.state_dict()  # other entries (``_extra_state``): the template's
        return {k: stored[self.names[k]] if k in self.names else v for k, v in state.items()}

    def materialize(self, m: int) -> nn.Module:
        """A real ``nn.Module`` holding model ``m``'s current state (a copy)."""
        model = restore(copy.deepcopy(self.template))
        model.load_state_dict(self.state_dict(m))
        return model


def in_out_layout(weight: Tensor) -> Tensor:
    """A leaf equal to ``weight`` (``[M, out, in]``) whose memory is laid out ``[M, in, out]``:
    the stacked forward ``x W^T`` is then a non-transposed ``baddbmm``, the fastest on MKL's
    AVX-512 kernels (benchmarks/README.md)."""
    moved = weight.detach().transpose(1, 2).contiguous().transpose(1, 2)
    return moved.detach().requires_grad_(weight.requires_grad)


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
    vmap would run them model by model). Inside, torch's per-op warning for an op without a
    batching rule (``nn.Bilinear``: "There is a performance drop ...") is off: the strategy
    trial already times that fallback and keeps ``looped`` when it is slower, so the warning
    gives a user nothing to act on. It is switched off at its source for this block only (no
    warnings filter, which would outlive the call and reset every warning registry) and back
    on after: torch's default (it has no getter to restore another value)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    fallback_warning = getattr(torch._C._functorch, "_set_vmap_fallback_warning_enabled", None)
    if fallback_warning is not None:
        fallback_warning(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if fallback_warning is not None:
            fallback_warning(True)


def rng_devices(device: torch.device) -> list:
    """The CUDA devices whose RNG a fork must save (none on the CPU)."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []
