"""Collect a model's per-layer tensors in one forward and one backward pass.

The model is not modified: the tracer's hooks live for one forward pass
(:func:`initlab.probe.trace.trace`); gradients are taken with :func:`torch.autograd.grad`,
so no parameter's ``.grad`` is ever written; every module's train/eval flag and the values
of every parameter and buffer (BatchNorm running statistics, a spectral norm's ``_u``/``_v``,
...) are restored; dropout draws from a forked, fixed-seed RNG, so the caller's random state
is untouched (:func:`initlab.preserve.preserved`, re-exported here). A parametrized weight is
computed once, in the forward pass, and kept: read again later, in training mode, it would
run its parametrization (a spectral norm's power iteration) outside the preserved block.

What a *layer* is: one call of a Linear/Conv/ConvTranspose module (the modules
:func:`initlab.initialize` acts on), of an ``nn.Embedding`` (a lookup: z and phi(z) are
its output, ``linear``), or of a ``MultiheadAttention``'s query, key or value map
(:mod:`initlab.probe.projections`). Its pre-activation z and activation phi(z) are those
:mod:`initlab.probe.trace` finds: the input and output of the first activation function
its output meets (after a BatchNorm, dropout or reshape, if any), or, for a layer whose
output goes straight on, the output itself and what enters the next layer. The output
layer has no phi(z) (the loss is its nonlinearity).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

import initlab.activations as activations
from initlab.data.tasks import IGNORE_INDEX
from initlab.errors import InitlabError
from initlab.preserve import MODES, preserved
from initlab.probe.metrics import layer_metrics
from initlab.probe.projections import weight_source
from initlab.probe.trace import TracedLayer, trace

__all__ = ["MODES", "LayerTensors", "collect", "preserved", "unit_rows"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

Loss = Callable[..., Tensor]


@dataclass
class LayerTensors:
    """What the probe saw of one call of one Linear/Conv layer (values are detached copies;
    ``seen_weight``/``seen_bias``: the weight and bias the call used, read by :func:`collect`
    while the model was preserved — reading a parametrized weight later, in training mode,
    would run its parametrization again: a spectral norm's power iteration writes ``_u``)."""

    name: str
    module: nn.Module
    input: Tensor | None
    pre: Tensor
    post: Tensor | None
    activation: str | None
    normalized: bool
    unit_dim: int
    inside: str | None = None
    pre_grad: Tensor | None = None
    post_grad: Tensor | None = None
    weight_grad: Tensor | None = None
    seen_weight: Tensor | None = None
    seen_bias: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        """The weight as ``[units, ...]``: one row of incoming weights per output unit."""
        weight = self.seen_weight if self.seen_weight is not None else self.module.weight
        return unit_rows(self.module, weight.detach())

    @property
    def bias(self) -> Tensor | None:
        seen = self.seen_weight is not None
        bias = self.seen_bias if seen else getattr(self.module, "bias", None)
        return None if bias is None else bias.detach()

    def keep_tensors(self) -> None:
        """Read the module's weight and bias now (:attr:`seen_weight`, :attr:`seen_bias`)."""
        self.seen_weight = self.module.weight.detach()
        bias = getattr(self.module, "bias", None)
        self.seen_bias = None if bias is None else bias.detach()

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
            groups=int(getattr(self.module, "groups", 1)),
        )


def unit_rows(module: nn.Module, weight: Tensor) -> Tensor:
    """``weight`` with one row per output unit (ConvTranspose stores ``[in, out/groups, *k]``;
    an Embedding's ``[V, D]`` table has D output units, each reading one entry per token)."""
    if isinstance(module, nn.Embedding):
        return weight.T
    if isinstance(module, _TRANSPOSED):
        groups = int(module.groups)
        return weight.unflatten(0, (groups, -1)).transpose(1, 2).flatten(0, 1)
    return weight


def _unit_dim(module: nn.Module) -> int:
    return -1 if isinstance(module, (nn.Linear, nn.Embedding)) else 1


def _assemble(calls: list[TracedLayer]) -> tuple[list[LayerTensors], list[tuple[Tensor, ...]]]:
    """One :class:`LayerTensors` per traced layer call, and its live ``(pre, post)`` tensors.

    A second call of the same module is labelled ``name[2]``; an ``unknown`` activation
    is ``None`` here, and so is the output layer's (its output leaves the model)."""
    out, live = [], []
    seen: dict[str, int] = {}
    for k, call in enumerate(calls):
        following = calls[k + 1] if k + 1 < len(calls) else None
        goes_on = call.pre is call.output and following is not None
        unit_dim = _unit_dim(following.module if goes_on else call.module)
        known = call.activation not in (None, "unknown") and call.post[1] is not None
        number = seen[call.name] = seen.get(call.name, 0) + 1
        label = call.name if number == 1 else f"{call.name}[{number}]"
        out.append(
            LayerTensors(
                label,
                call.module,
                call.input[1],
                call.pre[1],
                call.post[1],
                call.activation if known else None,
                call.normalized,
                unit_dim,
                call.inside,
            )
        )
        live.append((call.pre[0], call.post[0]))
    return out, live


def _objective(output: object, targets: Tensor | None, loss: Loss | None, seed: int) -> Tensor:
    """The scalar whose gradients are taken: the task loss, or ``<output, v>`` with
    ``v ~ N(0, 1)`` from a generator seeded with ``seed`` (a unit-variance cotangent)."""
    if not isinstance(output, Tensor):
        raise InitlabError(
            f"diagnose needs a model whose forward returns one tensor, got {type(output).__name__}"
        )
    if targets is not None:
        from initlab.train.tasks import batch_task, model_loss  # train imports this module

        if loss is None:
            _check_labels(output, targets)
        value = (loss or model_loss(batch_task(output, targets)))(output, targets)
    elif loss is not None:
        value = loss(output)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        v = torch.randn(output.shape, generator=gen, dtype=torch.float32)
        value = (output * v.to(output)).sum()
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise InitlabError("the loss must return a scalar tensor")
    return value.reshape(())


def _check_labels(output: Tensor, targets: Tensor) -> None:
    """Class labels (token ids) outside ``[0, outputs)`` for the default loss → one line."""
    if targets.is_floating_point() or not targets.numel() or output.dim() < 2:
        return
    if output.dim() == 3:  # token targets: -100 is padding (initlab.data.tasks.IGNORE_INDEX)
        targets = targets[targets != IGNORE_INDEX]
        if not targets.numel():
            raise InitlabError("every target is -100 (padding): give real tokens to diagnose")
    low, high, classes = int(targets.min()), int(targets.max()), output.shape[-1]
    if low < 0 or high >= classes:
        raise InitlabError(
            f"labels must lie in [0, {classes}) for the model's {classes} outputs; got "
            f"{low}..{high}"
        )


def _attach_grads(
    layers: list[LayerTensors], live: list[tuple[Tensor, ...]], objective: Tensor
) -> None:
    """Fill ``pre_grad``, ``post_grad`` and ``weight_grad`` with one ``autograd.grad`` call."""
    wanted: dict[int, Tensor] = {}
    for layer, (pre, post) in zip(layers, live, strict=True):
        for t in (pre, post, weight_source(layer.module)[0]):
            if isinstance(t, Tensor) and t.requires_grad:
                wanted.setdefault(id(t), t)
    if not wanted:
        return
    if not objective.requires_grad:  # its gradients read as NaN: 'exploding_gradients'
        from initlab.train.preflight import NOT_DIFFERENTIABLE

        raise InitlabError(f"diagnose: {NOT_DIFFERENTIABLE}")
    grads = torch.autograd.grad(objective, list(wanted.values()), allow_unused=True)
    found = {key: (None if g is None else g.detach()) for key, g in zip(wanted, grads, strict=True)}
    for layer, (pre, post) in zip(layers, live, strict=True):
        layer.pre_grad = found.get(id(pre)) if pre is not None else None
        layer.post_grad = found.get(id(post)) if post is not None else None
        source, rows = weight_source(layer.module)
        grad = found.get(id(source))
        if grad is not None and grad.is_sparse:  # nn.Embedding(sparse=True)
            grad = grad.to_dense()
        layer.weight_grad = None if grad is None else grad[rows]
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
def watching(*recorders: contextlib.AbstractContextManager) -> Iterator[None]:
    """One context for :func:`collect`'s ``watch`` entering every recorder (attention,
    recurrent calls) and leaving each on the way out, whatever is raised: entered only
    when ``collect`` enters it, so an error before the forward pass leaves no hook."""
    with contextlib.ExitStack() as stack:
        for recorder in recorders:
            stack.enter_context(recorder)
        yield


def collect(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    loss: Loss | None = None,
    *,
    mode: str = "train",
    seed: int = 0,
    watch: contextlib.AbstractContextManager | None = None,
) -> list[LayerTensors]:
    """One forward and one backward pass of ``model`` on ``inputs``; per-layer tensors.
    ``watch`` (e.g. an :class:`initlab.probe.attention.AttentionRecorder`) is entered around
    the forward pass only.

    The backward pass differentiates the task loss (``loss(output, targets)``; by default the
    one the targets imply, :func:`initlab.train.tasks.batch_task`: cross-entropy for class
    labels, MSE for float targets, token cross-entropy for ``[B, T]`` ids) when ``targets``
    are given, ``loss(output)`` when only ``loss`` is, and
    otherwise ``<output, v>`` for a fixed-seed standard-normal ``v``. See
    :mod:`initlab.probe.trace` for what a layer, its pre-activation and its activation
    are, and :func:`preserved` for how the model is left untouched (parametrized weights
    are computed once, cached, so each layer's weight and its gradient are those the forward
    pass used).
    """
    if targets is not None and len(targets) != len(inputs):
        raise InitlabError(
            f"the targets have {len(targets)} examples and the inputs {len(inputs)}; "
            "give one target per input"
        )
    with preserved(model, mode, seed), parametrize.cached():
        with torch.enable_grad(), watch or contextlib.nullcontext():  # also under no_grad
            calls, output = trace(model, inputs)
        layers, live = _assemble(calls)
        del calls
        with torch.enable_grad():
            objective = _objective(output, targets, loss, seed)
        _attach_grads(layers, live, objective)
        for layer in layers:
            layer.keep_tensors()
    return layers
