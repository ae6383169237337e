"""Collect a model's per-layer tensors with forward hooks and one backward pass.

The model is not modified: hooks are registered for one forward pass and removed in a
``finally``; gradients are taken with :func:`torch.autograd.grad`, so no parameter's
``.grad`` is ever written; every module's train/eval flag and every buffer (BatchNorm running
statistics, ...) are restored; dropout draws from a forked, fixed-seed RNG, so the caller's
random state is untouched.

What a *layer* is: one call of a Linear/Conv/ConvTranspose module (the modules
:func:`initlab.initialize` acts on). Its pre-activation z is the input of the first activation
module called after it (before the next Linear/Conv) — the output of a BatchNorm in between,
if any — and its activation phi(z) that module's output. Without an activation module (a
functional ``F.relu``), z is the layer's own output and phi(z) the input of the next
Linear/Conv; the activation's name is then inferred by matching phi(z) against every
registry activation of z. Activation modules are those of :mod:`initlab.activations`
(``nn.ReLU``, ``nn.Tanh``, ...; ``nn.Identity`` is not one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import initlab.activations as activations
from initlab.apply import INITIALIZABLE
from initlab.errors import InitlabError, UnknownNameError
from initlab.probe.metrics import layer_metrics

NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
)
MODES = ("train", "eval", "current")
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_INFER_ORDER = [n for n in activations.names() if n != "linear"] + ["linear"]

Loss = Callable[..., Tensor]


@dataclass
class _Event:
    kind: str  # "layer", "act" or "norm"
    name: str
    module: nn.Module
    input: Tensor | None = None  # live tensor (grads are taken with respect to it)
    input_value: Tensor | None = None  # detached copy taken before the module ran
    output: Tensor | None = None
    output_value: Tensor | None = None


@dataclass
class LayerTensors:
    """What the probe saw of one call of one Linear/Conv layer (values are detached copies)."""

    name: str
    module: nn.Module
    input: Tensor | None
    pre: Tensor
    post: Tensor | None
    activation: str | None
    normalized: bool
    unit_dim: int
    pre_grad: Tensor | None = None
    post_grad: Tensor | None = None
    weight_grad: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        """The weight as ``[units, ...]``: one row of incoming weights per output unit."""
        return unit_rows(self.module, self.module.weight.detach())

    @property
    def bias(self) -> Tensor | None:
        bias = getattr(self.module, "bias", None)
        return None if bias is None else bias.detach()

    def metrics(self) -> dict[str, float]:
        """:func:`initlab.probe.metrics.layer_metrics` of this layer."""
        grad = None if self.weight_grad is None else unit_rows(self.module, self.weight_grad)
        return layer_metrics(
            self.pre,
            self.post,
            self.activation,
            self.weight,
            grad,
            self.post_grad,
            pre_grad=self.pre_grad,
            bias=self.bias,
            unit_dim=self.unit_dim,
        )


def unit_rows(module: nn.Module, weight: Tensor) -> Tensor:
    """``weight`` with one row per output unit (ConvTranspose stores ``[in, out/groups, *k]``)."""
    if isinstance(module, _TRANSPOSED):
        groups = int(module.groups)
        return weight.unflatten(0, (groups, -1)).transpose(1, 2).flatten(0, 1)
    return weight


def _unit_dim(module: nn.Module) -> int:
    return -1 if isinstance(module, nn.Linear) else 1


def _first_tensor(args: tuple) -> Tensor | None:
    return next((a for a in args if isinstance(a, Tensor)), None)


def _copy(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.detach().clone()


class _Recorder:
    """Forward hooks on every weight layer, activation module and norm layer, in call order."""

    def __init__(self, model: nn.Module) -> None:
        self.events: list[_Event] = []
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        for name, module in model.named_modules():
            kind = _kind(module)
            if kind is not None:
                self._watch(name or "(model)", module, kind)

    def _watch(self, name: str, module: nn.Module, kind: str) -> None:
        pending: list[_Event] = []

        def before(mod: nn.Module, args: tuple) -> None:
            x = _first_tensor(args)
            pending.append(_Event(kind, name, mod, x, _copy(x)))

        def after(mod: nn.Module, args: tuple, output: object) -> None:
            event = pending.pop() if pending else _Event(kind, name, mod)
            if isinstance(output, Tensor):
                event.output, event.output_value = output, _copy(output)
            self.events.append(event)

        self.handles.append(module.register_forward_pre_hook(before))
        self.handles.append(module.register_forward_hook(after))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, INITIALIZABLE):
        return "layer"
    if isinstance(module, NORMS):
        return "norm"
    if not isinstance(module, nn.Identity) and activations.name_of_module(module) is not None:
        return "act"
    return None


def infer_activation(pre: Tensor, post: Tensor) -> str | None:
    """The registry activation phi with ``phi(pre) ≈ post`` (``linear`` tried last), if any."""
    if pre.shape != post.shape:
        return None
    for name in _INFER_ORDER:
        guess = activations.get(name).fn(pre)
        if torch.allclose(guess, post, rtol=1e-4, atol=1e-6, equal_nan=True):
            return name
    return None


def _passed_untouched(layer: _Event, following: _Event) -> bool:
    """Whether ``layer``'s output tensor itself is ``following``'s input, unchanged: no
    function (not even an in-place one) ran between them, so there is no activation."""
    return (
        following.input is layer.output
        and layer.output_value is not None
        and following.input_value is not None
        and torch.equal(layer.output_value, following.input_value)
    )


def _assemble(events: list[_Event]) -> tuple[list[LayerTensors], list[tuple[Tensor, ...]]]:
    """One :class:`LayerTensors` per weight-layer call, and its live ``(pre, post)`` tensors."""
    layers = [i for i, e in enumerate(events) if e.kind == "layer" and e.output is not None]
    out, live = [], []
    seen: dict[str, int] = {}
    for k, i in enumerate(layers):
        event = events[i]
        following = events[layers[k + 1]] if k + 1 < len(layers) else None
        between = events[i + 1 : layers[k + 1] if following else len(events)]
        act = next((e for e in between if e.kind == "act" and e.output is not None), None)
        upto = between[: between.index(act)] if act else between
        normalized = any(e.kind == "norm" for e in upto)
        unit_dim = _unit_dim(event.module)
        if act is not None:
            pre, post = (act.input, act.input_value), (act.output, act.output_value)
            name = activations.name_of_module(act.module)
        else:
            pre = (event.output, event.output_value)
            post = (following.input, following.input_value) if following else (None, None)
            if following is not None:
                unit_dim = _unit_dim(following.module)
            name = None if post[1] is None else infer_activation(pre[1], post[1])
            if following is not None and _passed_untouched(event, following):
                name = "linear"  # nothing ran between the layers (all-zero outputs included)
        calls = seen[event.name] = seen.get(event.name, 0) + 1
        label = event.name if calls == 1 else f"{event.name}[{calls}]"
        out.append(
            LayerTensors(
                label, event.module, event.input_value, pre[1], post[1], name, normalized, unit_dim
            )
        )
        live.append((pre[0], post[0]))
    return out, live


def _objective(output: object, targets: Tensor | None, loss: Loss | None, seed: int) -> Tensor:
    """The scalar whose gradients are taken: the task loss, or ``<output, v>`` with
    ``v ~ N(0, 1)`` from a generator seeded with ``seed`` (a unit-variance cotangent)."""
    if not isinstance(output, Tensor):
        raise InitlabError(
            f"diagnose needs a model whose forward returns one tensor, got {type(output).__name__}"
        )
    if targets is not None:
        value = (loss or F.cross_entropy)(output, targets)
    elif loss is not None:
        value = loss(output)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        v = torch.randn(output.shape, generator=gen, dtype=torch.float32)
        value = (output * v.to(output)).sum()
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise InitlabError("the loss must return a scalar tensor")
    return value.reshape(())


def _attach_grads(
    layers: list[LayerTensors], live: list[tuple[Tensor, ...]], objective: Tensor
) -> None:
    """Fill ``pre_grad``, ``post_grad`` and ``weight_grad`` with one ``autograd.grad`` call."""
    wanted: dict[int, Tensor] = {}
    for layer, (pre, post) in zip(layers, live, strict=True):
        for t in (pre, post, layer.module.weight):
            if isinstance(t, Tensor) and t.requires_grad:
                wanted.setdefault(id(t), t)
    if not wanted or not objective.requires_grad:
        return
    grads = torch.autograd.grad(objective, list(wanted.values()), allow_unused=True)
    found = {key: (None if g is None else g.detach()) for key, g in zip(wanted, grads, strict=True)}
    for layer, (pre, post) in zip(layers, live, strict=True):
        layer.pre_grad = found.get(id(pre)) if pre is not None else None
        layer.post_grad = found.get(id(post)) if post is not None else None
        layer.weight_grad = found.get(id(layer.module.weight))
        if pre is not None and pre is post:  # an in-place activation overwrote z
            layer.pre_grad = _through_activation(layer)


def _through_activation(layer: LayerTensors) -> Tensor | None:
    """dL/dz = J_phi(z)ᵀ dL/dphi(z), for an in-place activation whose input tensor is gone."""
    if layer.activation is None or layer.post_grad is None:
        return None
    with torch.enable_grad():
        z = layer.pre.detach().requires_grad_(True)
        phi = activations.get(layer.activation).fn(z)
        (grad,) = torch.autograd.grad(phi, z, layer.post_grad)
    return grad.detach()


@contextlib.contextmanager
def preserved(model: nn.Module, mode: str = "train", seed: int = 0) -> Iterator[None]:
    """Run a block on ``model`` and leave it exactly as it was.

    Saves and restores every module's ``training`` flag and every buffer's values (BatchNorm
    running statistics and batch counters); forks the global RNG (seeded with ``seed``
    inside, so dropout masks are reproducible and the caller's RNG stream is untouched).
    ``mode``: ``"train"`` (what a training step sees: batch statistics, dropout on),
    ``"eval"`` or ``"current"`` (the modes as they are).
    """
    if mode not in MODES:
        raise UnknownNameError("probe mode", mode, MODES)
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(int(seed))  # torch.manual_seed is slower:
            for device in devices:  # it queues a lazy CUDA seeding with a stack trace
                torch.cuda.default_generators[device].manual_seed(int(seed))
            if mode != "current":
                model.train(mode == "train")
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, flag in flags:
            module.training = flag


def collect(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    loss: Loss | None = None,
    *,
    mode: str = "train",
    seed: int = 0,
) -> list[LayerTensors]:
    """One forward and one backward pass of ``model`` on ``inputs``; per-layer tensors.

    The backward pass differentiates the task loss (``loss(output, targets)``, cross-entropy
    by default) when ``targets`` are given, ``loss(output)`` when only ``loss`` is, and
    otherwise ``<output, v>`` for a fixed-seed standard-normal ``v``. See the module docs for
    what a layer, its pre-activation and its activation are, and :func:`preserved` for how
    the model is left untouched.
    """
    with preserved(model, mode, seed):
        recorder = _Recorder(model)
        try:
            with torch.enable_grad():  # also inside a caller's torch.no_grad()
                output = model(inputs)
        finally:
            recorder.remove()
        layers, live = _assemble(recorder.events)
        recorder.events.clear()
        with torch.enable_grad():
            objective = _objective(output, targets, loss, seed)
        _attach_grads(layers, live, objective)
    return layers
