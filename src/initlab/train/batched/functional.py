"""Elementwise pieces of the batched MLP with their hand-written derivatives.

Every tensor here carries a leading model axis ``M``: activations are ``[M, B, width]`` (model,
example, unit). Nothing mixes models: every reduction runs over the example axis (1) or the
unit axis (2), never over axis 0, so one model's NaNs cannot reach another.

Derivatives call the same ATen backward kernels autograd uses for the single engine
(``threshold_backward`` for ReLU, ``tanh_backward``, ``gelu_backward``...), so a batched
gradient agrees with the single engine's to the last bits of float32 rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from initlab import activations

aten = torch.ops.aten
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class ActivationRule:
    """``phi`` and its derivative for the hand-written backward.

    ``forward(z, inplace)`` returns ``phi(z)`` (overwriting ``z`` when ``inplace``);
    ``backward(g, z, a)`` returns ``g * phi'(z)`` given the input ``z`` and output
    ``a = phi(z)``. When ``from_output`` is true the derivative only reads ``a``, so ``z`` may
    be overwritten by the forward (``z`` is then passed as ``None``).
    """

    forward: Callable[[Tensor, bool], Tensor]
    backward: Callable[[Tensor, Tensor | None, Tensor], Tensor]
    from_output: bool


def _linear_fwd(z: Tensor, inplace: bool) -> Tensor:
    return z


def _softsign_grad(g: Tensor, z: Tensor | None, a: Tensor) -> Tensor:
    """phi'(z) = 1 / (1 + |z|)^2 = (1 - |phi(z)|)^2."""
    return g * (1 - a.abs()).square_()


def _autograd_rule(fn: Callable[[Tensor], Tensor]) -> ActivationRule:
    """A rule for an activation without a closed form here: local autograd on ``fn``."""

    def backward(g: Tensor, z: Tensor | None, a: Tensor) -> Tensor:
        assert z is not None
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(fn(leaf), leaf, g)
        return grad

    return ActivationRule(lambda z, inplace: fn(z), backward, from_output=False)


_SLOPE = activations.LEAKY_RELU_SLOPE
RULES: dict[str, ActivationRule] = {
    "linear": ActivationRule(_linear_fwd, lambda g, z, a: g, True),
    "relu": ActivationRule(
        lambda z, inplace: z.relu_() if inplace else z.relu(),
        lambda g, z, a: aten.threshold_backward(g, a, 0),
        True,
    ),
    "leaky_relu": ActivationRule(
        lambda z, inplace: F.leaky_relu(z, _SLOPE, inplace=inplace),
        lambda g, z, a: aten.leaky_relu_backward(g, a, _SLOPE, True),
        True,
    ),
    "tanh": ActivationRule(
        lambda z, inplace: z.tanh_() if inplace else z.tanh(),
        lambda g, z, a: aten.tanh_backward(g, a),
        True,
    ),
    "sigmoid": ActivationRule(
        lambda z, inplace: z.sigmoid_() if inplace else z.sigmoid(),
        lambda g, z, a: aten.sigmoid_backward(g, a),
        True,
    ),
    "elu": ActivationRule(
        lambda z, inplace: F.elu(z, inplace=inplace),
        lambda g, z, a: aten.elu_backward(g, 1.0, 1, 1, True, a),
        True,
    ),
    "selu": ActivationRule(
        lambda z, inplace: F.selu(z, inplace=inplace),
        lambda g, z, a: aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1, True, a),
        True,
    ),
    "gelu": ActivationRule(
        lambda z, inplace: F.gelu(z), lambda g, z, a: aten.gelu_backward(g, z), False
    ),
    "silu": ActivationRule(
        lambda z, inplace: F.silu(z), lambda g, z, a: aten.silu_backward(g, z), False
    ),
    "softplus": ActivationRule(
        lambda z, inplace: F.softplus(z),
        lambda g, z, a: aten.softplus_backward(g, z, 1.0, 20.0),
        False,
    ),
    "softsign": ActivationRule(lambda z, inplace: F.softsign(z), _softsign_grad, True),
}


@functools.lru_cache(maxsize=64)
def rule(name: str) -> ActivationRule:
    """The rule of activation ``name`` (any alias :func:`initlab.activations.get` accepts).

    Activations registered in :mod:`initlab.activations` without a rule here fall back to
    local autograd on their ``fn`` (correct, a little slower).
    """
    act = activations.get(name)
    return RULES.get(act.name) or _autograd_rule(act.fn)


def cross_entropy(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-model mean cross-entropy and its gradient with respect to the logits.

    ``logits [M, B, C]``, ``target [M, B]``. Returns ``loss [M]`` with
    ``loss_m = -(1/B) sum_i log softmax(z_mi)[y_mi]`` and ``dlogits [M, B, C]`` with
    ``dL/dz_mi = (softmax(z_mi) - onehot(y_mi)) / B``: the gradient of the *sum over models*
    of the per-model means, so each model gets exactly the gradient it gets alone.
    """
    b = logits.shape[1]
    logp = torch.log_softmax(logits, dim=2)
    idx = target.unsqueeze(2)
    loss = logp.gather(2, idx).squeeze(2).mean(1).neg_()
    grad = logp.exp_()
    grad.scatter_add_(2, idx, _minus_ones(idx.shape, grad.dtype))
    return loss, grad.mul_(1.0 / b)


@functools.lru_cache(maxsize=16)
def _minus_ones(shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """A cached tensor of -1 (read-only use: the ``src`` of ``scatter_add_``)."""
    return torch.full(shape, -1.0, dtype=dtype)


@dataclass
class NormCache:
    """What the batch-norm backward needs: the normalized input and ``1/sqrt(var + eps)``."""

    xhat: Tensor
    inv_std: Tensor


def batch_norm_train(
    z: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor
) -> tuple[Tensor, NormCache]:
    """``BatchNorm1d`` in training mode for each model separately, stats over axis 1.

    ``mu = mean_i z_i``, ``var = mean_i (z_i - mu)^2`` (biased), ``xhat = (z - mu) / sqrt(var +
    eps)``, output ``gamma * xhat + beta``; the running statistics move in place by momentum
    0.1 toward ``mu`` and the *unbiased* variance ``var * B / (B - 1)``, as PyTorch does.
    """
    b = z.shape[1]
    if b < 2:  # the single engine's nn.BatchNorm1d refuses this too
        raise ValueError(
            "Expected more than 1 value per channel when training, got input size "
            f"torch.Size([{b}, {z.shape[2]}])"
        )
    var, mean = torch.var_mean(z, dim=1, keepdim=True, correction=0)
    inv_std = (var + BN_EPS).rsqrt_()
    xhat = (z - mean).mul_(inv_std)
    running_mean.mul_(1 - BN_MOMENTUM).add_(mean, alpha=BN_MOMENTUM)
    running_var.mul_(1 - BN_MOMENTUM).add_(var, alpha=BN_MOMENTUM * b / (b - 1))
    return torch.addcmul(beta, xhat, gamma), NormCache(xhat, inv_std)


def batch_norm_eval(
    z: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor
) -> Tensor:
    """``BatchNorm1d`` in eval mode: ``(z - running_mean) / sqrt(running_var + eps) * gamma +
    beta``, folded into one scale and shift per unit as PyTorch's CPU kernel does."""
    scale = gamma * (running_var + BN_EPS).rsqrt()
    shift = beta - running_mean * scale
    return torch.addcmul(shift, z, scale)


def batch_norm_backward(
    g: Tensor, gamma: Tensor, cache: NormCache
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``gamma * xhat + beta`` (batch statistics) for each model.

    With ``gx = g * gamma``: ``dz = inv_std * (gx - mean_i(gx) - xhat * mean_i(gx * xhat))``,
    ``dgamma = sum_i g * xhat``, ``dbeta = sum_i g`` (sums over the examples of a model).
    Returns ``(dz, dgamma, dbeta)``.
    """
    dgamma = (g * cache.xhat).sum(1, keepdim=True)
    dbeta = g.sum(1, keepdim=True)
    b = g.shape[1]
    gx_mean = dbeta * (gamma / b)
    gxx_mean = dgamma * (gamma / b)
    dz = g * gamma
    dz.sub_(gx_mean).sub_(cache.xhat * gxx_mean).mul_(cache.inv_std)
    return dz, dgamma, dbeta
