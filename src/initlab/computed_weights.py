"""Layers whose weight is computed from other tensors: no scheme can set it, and some cannot
be copied.

Two kinds wrap a layer so:

- ``torch.nn.utils.parametrize`` (``parametrizations.weight_norm``, ``spectral_norm``,
  ``orthogonal``...): ``weight`` is a property computed from ``parametrizations.weight``;
- the older hook-based ``torch.nn.utils.weight_norm`` and ``torch.nn.utils.spectral_norm``:
  ``weight`` is a plain attribute that a forward pre-hook recomputes from ``weight_g`` and
  ``weight_v`` (``weight_orig``, with buffers ``weight_u``/``weight_v``) on every call.

Filling either kind's ``weight`` changes nothing the next forward pass sees, so
:func:`refuse_computed` refuses an init that would (one line naming the layer and what to
do). The hook-based ones also keep a computed, non-leaf ``weight`` on the module, which
``copy.deepcopy`` refuses (as it does an RNN whose weights are parametrized, after a forward
pass): :func:`copy_failure` says so when a copy fails.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from initlab.errors import InitlabError

HOOKS: tuple[tuple[type, str], ...] = ((WeightNorm, "weight_norm"), (SpectralNorm, "spectral_norm"))
"""The hook objects of the older ``torch.nn.utils`` norms, and each one's function name."""


def norm_hooks(module: nn.Module) -> list[tuple[str, str]]:
    """``(tensor name, "weight_norm" | "spectral_norm")`` for each hook-based norm that
    computes one of ``module``'s own tensors."""
    return [
        (hook.name, kind)
        for hook in module._forward_pre_hooks.values()
        for cls, kind in HOOKS
        if isinstance(hook, cls)
    ]


def hooked_layers(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(module name, tensor name, kind)`` of every hook-based norm in ``model``."""
    return [
        (name, tensor, kind)
        for name, module in model.named_modules()
        for tensor, kind in norm_hooks(module)
    ]


def computed_by(module: nn.Module) -> str:
    """What computes ``module``'s weight from other tensors (module docstring), in words;
    ``""`` when nothing does."""
    if parametrize.is_parametrized(module):
        return "a parametrization (" + ", ".join(module.parametrizations.keys()) + ")"
    hooks = norm_hooks(module)
    return f"a torch.nn.utils.{hooks[0][1]} hook" if hooks else ""


def refuse_computed(name: str, module: nn.Module, instead: str = "use the init 'default'") -> None:
    """One line if ``module`` (named ``name``), which an init (or a residual rule) is to
    set, has a computed weight (module docstring): filling it would change nothing. The line
    ends with what to do: initialize the layer before wrapping it, or ``instead``."""
    label = name or "the model"
    if parametrize.is_parametrized(module):
        which = ", ".join(module.parametrizations.keys())
        raise InitlabError(
            f"{label}: {which} is parametrized (weight_norm, spectral_norm...) and computed "
            "from other tensors; initialize the layer before registering the "
            f"parametrization, or {instead}"
        )
    hooks = norm_hooks(module)
    if hooks:
        tensor, kind = hooks[0]
        raise InitlabError(
            f"{label}: {tensor} is recomputed from {_sources(tensor, kind)} by a "
            f"torch.nn.utils.{kind} hook on every forward pass, so filling it would change "
            f"nothing; initialize the layer before applying {kind}, or {instead}"
        )


def _sources(tensor: str, kind: str) -> str:
    """The parameters a hook-based norm computes ``tensor`` from."""
    return f"{tensor}_g and {tensor}_v" if kind == "weight_norm" else f"{tensor}_orig"


def copy_failure(model: nn.Module, exc: Exception, when: str, why: str) -> str:
    """One line for a ``copy.deepcopy(model)`` that raised ``exc``: that the model cannot be
    copied ``when`` (``" after a forward pass"``, or ``""``), the copy's error, ``why``
    initlab copies it, and, when the cause is recognizable (:func:`copy_blocker`), what it
    is and what to do."""
    first = str(exc).strip().splitlines()[0].split(". ")[0].rstrip(".")[:160] if str(exc) else ""
    error = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    blocker = copy_blocker(model)
    fix = f": {blocker}" if blocker else " (copy.deepcopy), so it must be copyable"
    return f"the model cannot be copied{when} ({error}); {why}{fix}"


def copy_blocker(model: nn.Module) -> str:
    """What keeps ``model`` from being copied and what to do, when initlab knows it: a
    hook-based norm (module docstring) or an RNN with parametrized weights; ``""`` else."""
    hooked = hooked_layers(model)
    if hooked:
        name, tensor, kind = hooked[0]
        module = model.get_submodule(name)
        return (
            f"layer {name or '(model)'} ({type(module).__name__}) uses the hook-based "
            f"torch.nn.utils.{kind}, which keeps its computed {tensor} on the module; use "
            f"torch.nn.utils.parametrizations.{kind} instead"
        )
    rnns = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.RNNBase) and parametrize.is_parametrized(module)
    ]
    if rnns:
        return f"build its RNN {rnns[0]} without parametrizations (they keep computed weights)"
    return ""
