"""Faster stand-ins for leaf modules when a stack of models runs under ``vmap``.

Under ``vmap``, ``nn.Linear``'s weight gradient comes out of autograd as ``x^T dz``, laid out
``[M, in, out]``, and is then copied into the ``[M, out, in]`` layout of the stacked weight
(profiled, 8 seed MLPs, batch 32: that copy took 38% of a training step, more than the
product itself). :class:`FastLinear` is ``nn.Linear`` whose ``vmap`` rule is one stacked
product with a custom backward that computes ``dW = dz^T x`` directly in the weight's layout
(``dx = dz W``, ``db = sum dz``): the same formulas, the same parameters and state-dict
names; a step of 8 seed MLPs took 0.0080 s instead of 0.0133 s (CPU time, best of 3).
:func:`speed_up` switches the class of every plain ``nn.Linear`` of a (template) module in
place; subclasses of ``nn.Linear`` are left alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NotStackable(Exception):
    """A model's forward is not a composition the ``stacked`` strategy can run (the message
    says why; :mod:`initlab.train.stacked`)."""


class FusedSGD:
    """A stacked layer's switch for SGD fused into its backward (:class:`_StackedLinear`).

    With ``lr`` set, the backward updates the layer in place, ``W <- W - lr x^T dz`` in one
    ``baddbmm_`` and ``b <- b - lr sum dz``, and returns no gradient for them: the weight
    gradient is never materialized and no separate optimizer pass reads and writes the
    weights again (profiled, 15 seed MLPs, batch 32, 1 thread: the ``[M, in, out]`` gradient
    and the optimizer's pass over it took a quarter of a step). With ``momentum`` ``mu > 0``
    (``torch.optim.SGD``'s, no dampening, no Nesterov) it is ``B <- mu B + x^T dz`` in one
    ``baddbmm_`` with ``beta = mu`` on the momentum buffer ``B`` (``buffers``: the
    optimizer's own, created as zeros, so the first step's ``mu 0 + g = g`` is torch's
    ``B = g``), then ``W <- W - lr B``, and likewise for the bias (15 seed MLPs, one thread:
    the first layer's update took 3.4 ms instead of 5.4 ms). ``lr`` is one number, or a
    tensor ``[M]`` of each model's own (a sweep over learning rates): then ``dz`` is scaled
    per model before the product, ``W <- W + x^T (-lr_m dz)``, and with momentum the step is
    ``W <- W - lr_m B`` in one ``addcmul_``. ``lr = None``: plain gradients. The engine sets
    it only for SGD with one momentum, no weight decay, fp32 and no frozen model
    (:meth:`initlab.train.engine.StackTrainer.step`).
    """

    __slots__ = ("buffers", "lr", "momentum")

    def __init__(self) -> None:
        self.lr: float | Tensor | None = None
        self.momentum = 0.0
        self.buffers: tuple[Tensor, Tensor | None] | None = None
        """The momentum buffers of the weight and the bias (laid out as they are)."""


class _SavesInputs(torch.autograd.Function):
    """Saves ``x`` and ``weight`` (and the dtypes their gradients need) for the backward."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias, *rest = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.has_bias = bias is not None
        ctx.dtypes = (x.dtype, weight.dtype)
        ctx.fused = rest[0] if rest else None


class _StackedLinear(_SavesInputs):
    """``y[m] = x[m] W[m]^T + b[m]`` for a stack: ``x [M, B..., in]``, ``W [M, out, in]``,
    ``b [M, out]``; ``dW = dz^T x`` in ``W``'s layout, ``dx = dz W``, ``db = sum dz``."""

    @staticmethod
    def forward(
        x: Tensor, weight: Tensor, bias: Tensor | None, fused: FusedSGD | None = None
    ) -> Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        if bias is None:
            out = torch.bmm(flat, weight.transpose(1, 2))
        else:
            out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
        return out.view(*x.shape[:-1], weight.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = _saved(ctx, grad)
        g = grad.reshape(grad.shape[0], -1, grad.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.bmm(g, weight).view(x.shape).to(ctx.dtypes[0])
        lr = ctx.fused.lr if ctx.fused is not None else None
        if lr is not None and _fusable(ctx, weight, g):
            _sgd_in_place(ctx, x, g, ctx.fused)
            return gx, None, None, None
        if ctx.needs_input_grad[1]:
            flat = x.reshape(x.shape[0], -1, x.shape[-1])
            if weight.stride(1) == 1:  # stored [M, in, out]: the gradient in that layout too
                gw = torch.bmm(flat.transpose(1, 2), g).transpose(1, 2).to(ctx.dtypes[1])
            else:
                gw = torch.bmm(g.transpose(1, 2), flat).to(ctx.dtypes[1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(1).to(ctx.dtypes[1])
        return gx, gw, gb, None


class StackedLinear(nn.Module):
    """M ``nn.Linear`` layers: weight ``[M, out, in]`` (in either memory layout), bias
    ``[M, out]``; ``y[m] = x[m] W[m]^T + b[m]`` on x ``[M, B..., in]``."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.fused = FusedSGD()

    def forward(self, x: Tensor) -> Tensor:
        return _StackedLinear.apply(x, self.weight, self.bias, self.fused)


class StackedBatchNormState(nn.Module):
    """What M batch-norm layers hold: ``eps``, ``momentum`` and the stacked ``[M, C]``
    affine parameters and running statistics (views of the stack, updated in place)."""

    def __init__(self, source: nn.modules.batchnorm._BatchNorm, tensors: dict) -> None:
        super().__init__()
        if source.momentum is None:
            raise NotStackable(f"{type(source).__name__} with momentum=None (a cumulative average)")
        self.eps, self.momentum = source.eps, source.momentum
        self.weight, self.bias = tensors.get("weight"), tensors.get("bias")
        self.running_mean = tensors.get("running_mean")
        self.running_var = tensors.get("running_var")
        self.num_batches_tracked = tensors.get("num_batches_tracked")

    def normalize_rows(self, rows: Tensor) -> Tensor:
        """``F.batch_norm`` of ``rows [N, M·C]`` (column ``m·C + c`` is model m's channel c):
        batch statistics in training or without running statistics, which training updates
        in place (``num_batches_tracked`` counted); the running ones in eval mode."""
        stats = self.running_mean is not None
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            rows,
            self.running_mean.view(-1) if stats else None,
            self.running_var.view(-1) if stats else None,
            None if self.weight is None else self.weight.view(-1),
            None if self.bias is None else self.bias.view(-1),
            self.training or not stats,
            self.momentum,
            self.eps,
        )


def _fusable(ctx, weight: Tensor, g: Tensor) -> bool:
    """The fused update applies: fp32 throughout, the weight (and its momentum buffer) laid
    out ``[M, in, out]``."""
    buffers = ctx.fused.buffers if ctx.fused.momentum else None
    return (
        weight.dtype == g.dtype == ctx.dtypes[1]
        and weight.stride(1) == 1
        and (buffers is None or buffers[0].stride() == weight.stride())
        and ctx.needs_input_grad[1]
        and (not ctx.has_bias or ctx.needs_input_grad[2])
    )


@torch.no_grad()
def _sgd_in_place(ctx, x: Tensor, g: Tensor, fused: FusedSGD) -> None:
    """The update of :class:`FusedSGD` on the stack's own leaves, the weight's in one
    ``baddbmm_`` in its ``[M, in, out]`` storage (the input gradient is computed apart)."""
    _, weight, bias = ctx.saved_tensors
    flat = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)
    lr, mu = fused.lr, fused.momentum
    per_model = isinstance(lr, Tensor)
    if not mu:
        scale = 1.0 if per_model else -lr
        if per_model:  # -lr_m dz: a [M, B, out] product, not a pass over the weights
            g = g * -lr.view(-1, 1, 1)
        weight.transpose(1, 2).baddbmm_(flat, g, alpha=scale)
        if bias is not None:
            bias.add_(g.sum(1), alpha=scale)
        return
    step_w, step_b = fused.buffers
    step_w.transpose(1, 2).baddbmm_(flat, g, beta=mu)
    _step(weight, step_w, lr)
    if bias is not None:
        step_b.mul_(mu).add_(g.sum(1))
        _step(bias, step_b, lr)


def _step(param: Tensor, step: Tensor, lr: float | Tensor) -> None:
    """``param <- param - lr step``; a per-model ``lr [M]`` broadcast over the rest."""
    if isinstance(lr, Tensor):
        param.addcmul_(step, lr.view(-1, *[1] * (step.dim() - 1)), value=-1.0)
    else:
        param.add_(step, alpha=-lr)


def _saved(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
    """The saved ``x`` and ``weight`` in the gradient's dtype (bf16 under autocast)."""
    x, weight, _ = ctx.saved_tensors
    return x.to(grad.dtype), weight.to(grad.dtype)


class _Linear(_SavesInputs):
    """``F.linear`` whose ``vmap`` rule is :class:`_StackedLinear` (its backward too)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = _saved(ctx, grad)
        gx = (grad @ weight).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        gw = (g2.t() @ x2).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        gb = g2.sum(0).to(ctx.dtypes[1]) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb

    @staticmethod
    def vmap(info, in_dims, x: Tensor, weight: Tensor, bias: Tensor | None):
        x, weight = (
            _batched(x, in_dims[0], info.batch_size),
            _batched(weight, in_dims[1], info.batch_size),
        )
        if bias is not None:
            bias = _batched(bias, in_dims[2], info.batch_size)
        return _StackedLinear.apply(x, weight, bias), 0


def _batched(t: Tensor, dim: int | None, size: int) -> Tensor:
    """``t`` with its vmap axis first (expanded when ``t`` is shared by all models)."""
    return t.expand(size, *t.shape) if dim is None else t.movedim(dim, 0)


class FastLinear(nn.Linear):
    """``nn.Linear`` whose weight gradient is computed in the weight's own layout."""

    def forward(self, x: Tensor) -> Tensor:
        return _Linear.apply(x, self.weight, self.bias)


def speed_up(module: nn.Module) -> nn.Module:
    """Switch every exact ``nn.Linear`` in ``module`` to :class:`FastLinear` (in place)."""
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = FastLinear
    return module


def restore(module: nn.Module) -> nn.Module:
    """Undo :func:`speed_up`: every :class:`FastLinear` becomes an ``nn.Linear`` again."""
    for sub in module.modules():
        if type(sub) is FastLinear:
            sub.__class__ = nn.Linear
    return module
