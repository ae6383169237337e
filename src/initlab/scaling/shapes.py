"""Base shapes: which dimensions of which parameters grow with ``width``.

As ``mup``'s ``make_base_shapes`` does, the factory is instantiated at two widths (on the
``meta`` device when it can be, so no memory is spent and no init runs) and every parameter's
shapes are compared: a dimension that changes is *infinite*. Fans come from the owning module
(PyTorch ``[out, in, *k]``; ``ConvTranspose`` ``[in, out, *k]``; ``Embedding``
``[in = vocabulary, out]``), and each parameter gets a kind (docs/scaling.md, §1):

``input`` (finite fan_in → infinite fan_out, and every bias of a width-sized output),
``hidden`` (infinite → infinite), ``output`` (infinite → finite), ``vector`` (1-D
normalization gains/biases and other one-dimensional width-sized parameters), ``fixed``
(nothing width-sized).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError

KINDS = ("input", "hidden", "output", "vector", "fixed")
WIDTH_KEY = "width"
_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),  # torch >= 2.4
)
_OUT_IN = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_IN_OUT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding)

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ParamShape:
    """One parameter at the target and the base width: kind, fans and width multipliers
    ``m_in = fan_in / base fan_in``, ``m_out = fan_out / base fan_out``."""

    name: str
    kind: str
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    m_in: float
    m_out: float


def check_factory(factory: Factory, *, depth: bool = False, label: str = "--model") -> None:
    """:class:`InitlabError` unless ``factory`` takes a ``width`` keyword (and ``depth``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in (WIDTH_KEY, "depth") if depth else (WIDTH_KEY,):
        if key not in params:
            name = getattr(factory, "__name__", "the factory")
            raise InitlabError(
                f"{label}: {name}() has no '{key}' keyword; scaling needs a factory whose "
                f"'{key}' sets the layer sizes (e.g. def build({key}=64, ...))"
            )


def renamed(factory: Factory, width: str = WIDTH_KEY, depth: str = "depth") -> Factory:
    """``factory`` callable as ``f(width=..., depth=...)`` when its own keywords for them have
    other names (``width="n_embd"``: ``--width-arg n_embd``): a wrapper that hands ``width``
    on as ``n_embd``, with the factory's signature under the scaling names.
    :class:`InitlabError` (one line) if the factory has no such keyword."""
    own = {key: name for key, name in ((WIDTH_KEY, width), ("depth", depth)) if key != name}
    if not own:
        return factory
    label = getattr(factory, "__name__", "the factory")
    try:
        sig: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        for key, name in own.items():
            if name not in sig.parameters:
                takes = ", ".join(sig.parameters) or "none"
                raise InitlabError(
                    f"--{key}-arg {name}: {label}() has no '{name}' keyword (it takes {takes})"
                )
            if key in sig.parameters:
                raise InitlabError(f"--{key}-arg {name}: {label}() also has a '{key}' keyword")

    def call(**kwargs: Any) -> nn.Module:
        return factory(**{own.get(k, k): v for k, v in kwargs.items()})

    call.__name__ = label
    if sig is not None:
        scaling_name = {name: key for key, name in own.items()}
        params = [p.replace(name=scaling_name.get(p.name, p.name)) for p in sig.parameters.values()]
        call.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return call


def build(factory: Factory, width: int, kwargs: Mapping[str, Any], device: str) -> nn.Module:
    """``factory(width=width, **kwargs)`` built on ``device``; one-line error if it raises."""
    try:
        with torch.device(device):
            model = factory(**{**kwargs, WIDTH_KEY: int(width)})
    except Exception as exc:
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise InitlabError(f"the model factory raised {first} at width {width}") from None
    if not isinstance(model, nn.Module):
        raise InitlabError(f"the model factory returned a {type(model).__name__}, not a Module")
    return model


def shapes_of(factory: Factory, width: int, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: (shape, module)}`` of every parameter at ``width``, built on ``meta`` when
    the factory allows it, else on the CPU."""
    try:
        model = build(factory, width, kwargs, "meta")
    except InitlabError:
        model = build(factory, width, kwargs, "cpu")
    owners = {}
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            owners[full] = (tuple(p.shape), module, pname)
    return owners


def _fans(shape: tuple[int, ...], module: nn.Module, pname: str) -> tuple[int, int] | None:
    """(fan_out dim, fan_in dim) indices of a weight, or None when it has no fans."""
    if len(shape) < 2:
        return None
    if isinstance(module, _IN_OUT) and pname == "weight":
        return 1, 0
    return 0, 1


def classify(
    shape: tuple[int, ...], base: tuple[int, ...], module: nn.Module, pname: str
) -> tuple[str, int, int, float, float]:
    """``(kind, fan_in, fan_out, m_in, m_out)`` of one parameter from its shapes at the
    target and base widths."""
    infinite = [a != b for a, b in zip(shape, base, strict=True)]
    dims = _fans(shape, module, pname)
    if dims is None:  # a vector: a bias (fan_in 1) or a normalization's gain
        n, n0 = (shape[0], base[0]) if shape else (1, 1)
        if not any(infinite):
            return "fixed", 1, n, 1.0, 1.0
        kind = "vector" if isinstance(module, _NORMS) or pname != "bias" else "input"
        return kind, 1, n, 1.0, n / n0
    o, i = dims
    rest = [k for k in range(len(shape)) if k not in dims]
    receptive = int(torch.tensor([shape[k] for k in rest]).prod()) if rest else 1
    base_receptive = int(torch.tensor([base[k] for k in rest]).prod()) if rest else 1
    fan_in, fan_out = shape[i] * receptive, shape[o] * receptive
    m_in = fan_in / (base[i] * base_receptive)
    m_out = fan_out / (base[o] * base_receptive)
    kind = {
        (False, True): "input",
        (True, True): "hidden",
        (True, False): "output",
        (False, False): "fixed",
    }[(infinite[i], infinite[o])]
    return kind, fan_in, fan_out, m_in, m_out


def infer_shapes(
    factory: Factory,
    *,
    width: int,
    base_width: int,
    kwargs: Mapping[str, Any] | None = None,
) -> dict[str, ParamShape]:
    """Every parameter of ``factory(width=width)`` classified against ``base_width``
    (``base_width == width`` compares with ``2·width`` to find the infinite dimensions, and
    the multipliers are then 1). Refuses, in one line, a factory whose parameter shapes do not
    change with ``width``."""
    check_factory(factory)
    kwargs = dict(kwargs or {})
    probe_width = width if width != base_width else 2 * base_width
    target = shapes_of(factory, width, kwargs)
    base = shapes_of(factory, base_width, kwargs)
    probe = target if probe_width == width else shapes_of(factory, probe_width, kwargs)
    if set(base) != set(target) or set(base) != set(probe):
        raise InitlabError(
            f"the model factory builds different parameters at widths {base_width} and "
            f"{probe_width}; scaling needs the same layers at every width"
        )
    if all(probe[n][0] == base[n][0] for n in base):
        raise InitlabError(
            f"no parameter's shape changes between width {base_width} and {probe_width}: the "
            "factory ignores 'width'; make it set the layer sizes"
        )
    out = {}
    for name, (shape, module, pname) in target.items():
        kind, fan_in, fan_out, _, _ = classify(probe[name][0], base[name][0], module, pname)
        _, _, _, m_in, m_out = classify(shape, base[name][0], module, pname)
        out[name] = ParamShape(name, kind, shape, base[name][0], fan_in, fan_out, m_in, m_out)
    return out
