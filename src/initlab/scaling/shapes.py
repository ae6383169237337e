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

A parameter of three or more dimensions that is not a Linear/Conv/Embedding-type module's
weight has no known layout (a ViT's ``cls`` token ``[1, 1, width]``, a position embedding
``[1, T, width]``): it follows ``mup``'s rule on the number of infinite dimensions, one
making it vector-like, ``input`` (like an embedding whose vocabulary is its finite
dimensions), two or more ``hidden``. A bare 2-D parameter is read as ``[out, in]``
(``F.linear``). A tensor shared
by several names (tied weights) gets one kind for all of them (:func:`tie_rule`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError, option
from initlab.norm_layers import is_norm
from initlab.usercode.specs import factory_raised

KINDS = ("input", "hidden", "output", "vector", "fixed")
WIDTH_KEY = "width"
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
    tied: tuple[str, ...] = ()
    """Every name of this tensor when it is shared (tied weights), the one whose rule it
    follows first; ``()`` when it has one name."""
    own_kind: str = ""
    """The kind this name's own module would give it, when a tie gave it another."""


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
            takes = ", ".join(params) or "no keywords"
            example = {"depth": 2}.get(key, 64)
            raise InitlabError(
                f"{option(label)}: {name}() has no '{key}' keyword (it takes {takes}); if one "
                f"of those sets the layer sizes, name it with {option(f'--{key}-arg')}"
                f", else give the factory a '{key}' (def build({key}={example}, ...))"
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
                    f"{option(f'--{key}-arg {name}')}: {label}() has no '{name}' keyword (it "
                    f"takes {takes})"
                )
            if key in sig.parameters:
                raise InitlabError(
                    f"{option(f'--{key}-arg {name}')}: {label}() also has a '{key}' keyword"
                )

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
    args = {**kwargs, WIDTH_KEY: int(width)}
    try:
        with torch.device(device):
            model = factory(**args)
    except (Exception, SystemExit) as exc:
        raise InitlabError(f"the model factory raised {factory_raised(exc, args)}") from None
    if not isinstance(model, nn.Module):
        raise InitlabError(f"the model factory returned a {type(model).__name__}, not a Module")
    return model


def build_for_shapes(factory: Factory, width: int, kwargs: Mapping[str, Any]) -> nn.Module:
    """The model at ``width`` for its structure only: built on ``meta`` (no memory, no
    values) when the factory allows it, else on the CPU."""
    try:
        return build(factory, width, kwargs, "meta")
    except InitlabError:
        return build(factory, width, kwargs, "cpu")


def shapes_of(factory: Factory, width: int, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: (shape, module, pname, first)}`` of every parameter at ``width`` (``first``:
    the first name of the same tensor, as ``named_parameters`` keeps it) of
    :func:`build_for_shapes`'s model."""
    model = build_for_shapes(factory, width, kwargs)
    first_of: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        first_of.setdefault(id(p), name)
    owners = {}
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            owners[full] = (tuple(p.shape), module, pname, first_of[id(p)])
    return owners


def _fans(shape: tuple[int, ...], module: nn.Module, pname: str) -> tuple[int, int] | None:
    """(fan_out dim, fan_in dim) indices of a weight, or None when it has no fans."""
    if len(shape) < 2:
        return None
    if isinstance(module, _IN_OUT) and pname == "weight":
        return 1, 0
    return 0, 1


def _prod(sizes: list[int]) -> int:
    return int(torch.tensor(sizes, dtype=torch.int64).prod()) if sizes else 1


def _by_infinite_dims(
    shape: tuple[int, ...], base: tuple[int, ...], infinite: list[bool]
) -> tuple[str, int, int, float, float]:
    """``mup``'s rule for a parameter of three or more dimensions whose layout is not known
    (not the weight of a Linear/Conv/Embedding-type module: a ``cls`` token ``[1, 1, width]``,
    a position embedding ``[1, T, width]``, an einsum weight ``[heads, width, d]``): one
    infinite dimension makes it vector-like, ``input`` (fan_out that dimension, fan_in the
    product of the finite ones, as an embedding's vocabulary); two or more make it ``hidden``
    (fan_out the first infinite dimension, fan_in the product of all the others); none,
    ``fixed``."""
    if not any(infinite):
        return "fixed", _prod(list(shape[1:])), shape[0], 1.0, 1.0
    first = infinite.index(True)
    others = [k for k in range(len(shape)) if k != first]
    fan_out, fan_in = shape[first], _prod([shape[k] for k in others])
    m_out = fan_out / base[first]
    m_in = fan_in / _prod([base[k] for k in others])
    kind = "input" if sum(infinite) == 1 else "hidden"
    return kind, fan_in, fan_out, m_in, m_out


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
        bias = pname == "bias" or pname.endswith("_bias")  # MultiheadAttention's in_proj_bias
        kind = "input" if bias and not is_norm(module) else "vector"
        return kind, 1, n, 1.0, n / n0
    if len(shape) > 2 and not (isinstance(module, _OUT_IN + _IN_OUT) and pname == "weight"):
        return _by_infinite_dims(shape, base, infinite)  # no known layout
    o, i = dims
    rest = [k for k in range(len(shape)) if k not in dims]
    receptive = _prod([shape[k] for k in rest])
    base_receptive = _prod([base[k] for k in rest])
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
    for name, (shape, module, pname, _) in target.items():
        kind, fan_in, fan_out, _, _ = classify(probe[name][0], base[name][0], module, pname)
        _, _, _, m_in, m_out = classify(shape, base[name][0], module, pname)
        out[name] = ParamShape(name, kind, shape, base[name][0], fan_in, fan_out, m_in, m_out)
    return resolve_ties(out, {name: owner[3] for name, owner in target.items()})


def tie_rule(names: list[str], kinds: list[str]) -> str:
    """The name whose rule a tensor shared by ``names`` (their own ``kinds``) follows: the
    first whose kind is not ``output``, else the first. A tied embedding and readout are
    parametrized as the embedding, as ``mup``'s ``MuSharedReadout`` does: the readout's rule
    (zero init under muP) would zero or shrink the embedding too."""
    return next((n for n, k in zip(names, kinds, strict=True) if k != "output"), names[0])


def resolve_ties(shapes: dict[str, ParamShape], first: Mapping[str, str]) -> dict[str, ParamShape]:
    """``shapes`` with every name of a shared tensor (``first``: name → the tensor's first
    name) given the kind, fans and multipliers of :func:`tie_rule`'s name, ``tied`` (all its
    names, that one first) and ``own_kind`` (what its own module made it, when different)."""
    groups: dict[str, list[str]] = {}
    for name in shapes:
        groups.setdefault(first[name], []).append(name)
    out = dict(shapes)
    for names in groups.values():
        if len(names) < 2:
            continue
        rule = tie_rule(names, [shapes[n].kind for n in names])
        tied = (rule, *(n for n in names if n != rule))
        for name in names:
            own = shapes[name].kind
            out[name] = dataclasses.replace(
                shapes[rule],
                name=name,
                tied=tied,
                own_kind=own if own != shapes[rule].kind else "",
            )
    return out
