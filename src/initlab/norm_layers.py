"""Which modules are normalization layers: PyTorch's, and the ones models write themselves.

nanoGPT's ``LayerNorm`` (a module with an optional bias calling ``F.layer_norm``), LLaMA-style
``RMSNorm`` (``x * rsqrt(mean(x²) + eps) * weight``) and timm's ``LayerNorm2d`` are classes of
their own: an ``isinstance`` check on PyTorch's norms misses them, so a residual rule would not
find the norm that ends a branch and a plan would call its gain "other". A module counts as a
normalization layer when it is one of :data:`NORMS`, or when its class name contains "Norm"
and its own parameters are all vectors (a gain, a bias) with no submodule holding
parameters: the shape of every normalization layer's affine part.
"""

from __future__ import annotations

from torch import nn

NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm; InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),  # torch >= 2.4
)


def is_norm(module: object) -> bool:
    """``True`` for PyTorch's normalization layers and for a model's own (module docstring)."""
    if isinstance(module, NORMS):
        return True
    if not isinstance(module, nn.Module) or "norm" not in type(module).__name__.lower():
        return False
    own = list(module.parameters(recurse=False))
    children = any(True for child in module.children() for _ in child.parameters())
    return bool(own) and not children and all(p.dim() == 1 for p in own)
