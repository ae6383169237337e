"""SP, NTK and muP for any width-parametrized factory (docs/scaling.md, §1).

>>> model, groups = initlab.parametrize(factory, "mup", base_width=64, width=1024,
...                                     optimizer="adam", lr=1e-2)
>>> opt = torch.optim.Adam(groups)      # each group carries its own "lr"

Every rule is normalized at ``base_width``: at the base width SP, NTK and muP are the model as
its factory built it, trained at ``lr``. Away from it, with ``m_in``/``m_out`` the fan
multipliers of :mod:`initlab.scaling.shapes`, each parameter is rescaled to the rms the table
asks for (``target_rms = base_rms · init_factor``) and gets ``lr · lr_factor``; a note says
which parameters that changed beyond sampling noise (:func:`rescale_note`). ``"default"`` is
the model exactly as its factory built it at every width, every parameter at ``lr`` (SP's
learning rates without the init's normalization): the init as built is what gets checked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab.config import AS_BUILT
from initlab.errors import InitlabError, UnknownNameError
from initlab.layer_order import known_output_layer
from initlab.notes import note
from initlab.ranges import check_number
from initlab.scaling.inputs import learning_rate
from initlab.scaling.rescale import changed_beyond_noise, rescale, rescale_note, rescale_ratios
from initlab.scaling.shapes import Factory, ParamShape, build, infer_shapes, renamed
from initlab.usercode.inprocess import refuse_built

PARAMETRIZATIONS = ("sp", "ntk", "mup", "default")
OPTIMIZERS = ("sgd", "adam")
ATTN_ATTRIBUTE = "attn_scale"
DESCRIPTIONS = {
    "sp": "standard parametrization: init variance ∝ 1/fan_in, one learning rate",
    "ntk": "neural tangent parametrization: W = w/√fan_in, learning rate η on w",
    "mup": "maximal-update parametrization (Tensor Programs V, Table 3)",
    "default": "the model as its factory built it at every width, one learning rate",
}


@dataclass
class Parametrized:
    """A model at ``width`` under a parametrization: its parameter kinds, per-parameter init
    and learning-rate factors, and the places (attention scales) initlab could not change."""

    model: nn.Module
    param: str
    optimizer: str
    lr: float
    shapes: dict[str, ParamShape]
    init_factor: dict[str, float]
    lr_factor: dict[str, float]
    notes: list[str] = field(default_factory=list)
    readout: str | None = None
    """The model's output layer (:func:`initlab.layer_order.known_output_layer`; ``None``:
    the call order is unknown)."""

    def param_groups(self) -> list[dict[str, Any]]:
        """``torch.optim`` parameter groups, one per distinct learning rate, each with its
        ``lr`` and the ``names`` of its parameters."""
        groups: dict[float, dict[str, Any]] = {}
        for name, p in self.model.named_parameters():
            lr = self.lr * self.lr_factor.get(name, 1.0)
            group = groups.setdefault(lr, {"params": [], "lr": lr, "names": []})
            group["params"].append(p)
            group["names"].append(name)
        return list(groups.values())


def init_factor(param: str, shape: ParamShape, readout_zero_init: bool) -> float | None:
    """The factor on the parameter's base rms (0: zero it): variance base/m_in for hidden
    weights and SP/NTK output weights; muP's output weights 0 (``readout_zero_init``) or
    base/m_in² (Table 3's 1/fan_in²); base for everything else. ``None`` under
    ``"default"``: the parameter is left as built."""
    if param == AS_BUILT:
        return None
    if shape.kind == "output" and param == "mup":
        return 0.0 if readout_zero_init else 1 / shape.m_in
    if shape.kind in ("hidden", "output"):
        return 1 / math.sqrt(shape.m_in)
    return 1.0


def lr_factor(param: str, optimizer: str, shape: ParamShape) -> float:
    """The learning-rate factor of docs/scaling.md's table."""
    kind = shape.kind
    if param in ("sp", AS_BUILT) or kind == "fixed":
        return 1.0
    if kind in ("input", "vector"):
        return shape.m_out if (param == "mup" and optimizer == "sgd") else 1.0
    if param == "ntk":
        return 1 / shape.m_in if optimizer == "sgd" else 1 / math.sqrt(shape.m_in)
    if kind == "hidden" and optimizer == "sgd":
        return 1.0
    return 1 / shape.m_in


def _attention(model: nn.Module, base: nn.Module, param: str) -> list[str]:
    """Set ``attn_scale`` attributes to √d_base/d under muP (d = 1/attn_scale², the head
    dimension a 1/√d scale implies); name the attention initlab cannot change."""
    notes = []
    base_modules = dict(base.named_modules())
    for name, module in model.named_modules():
        label = name or "(model)"
        if isinstance(module, nn.MultiheadAttention):
            notes.append(
                f"`{label}` (nn.MultiheadAttention) scales attention logits by 1/√d inside "
                "torch; muP needs 1/d — initlab cannot change it from outside"
            )
        scale = getattr(module, ATTN_ATTRIBUTE, None)
        if isinstance(scale, float) and param == "mup" and scale > 0:
            base_scale = float(getattr(base_modules[name], ATTN_ATTRIBUTE))
            d, d_base = scale**-2, base_scale**-2
            setattr(module, ATTN_ATTRIBUTE, math.sqrt(d_base) / d)
            notes.append(
                f"`{label}.{ATTN_ATTRIBUTE}` set to √d_base/d = {math.sqrt(d_base) / d:.4g}"
            )
    return notes


def parametrized(
    factory: Factory,
    param: str,
    *,
    width: int,
    base_width: int,
    optimizer: str = "adam",
    lr: float = 1e-3,
    kwargs: Mapping[str, Any] | None = None,
    seed: int | None = None,
    readout_zero_init: bool = True,
    width_arg: str = "width",
) -> Parametrized:
    """``factory(width=width, **kwargs)`` under ``param`` (see the module docs). The base
    model (whose rms the rules scale) and the model are built from the same ``seed``
    (default: one draw from the global RNG). ``width_arg``: the factory's own keyword for the
    width (``"n_embd"``, ``"dim"``) when it is not ``width``."""
    if param not in PARAMETRIZATIONS:
        raise UnknownNameError("parametrization", param, PARAMETRIZATIONS)
    if optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer for scaling", optimizer, OPTIMIZERS)
    lr = learning_rate(lr)
    for name, value in (("width", width), ("base_width", base_width)):  # 0: a ZeroDivisionError
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InitlabError(f"{name} must be a whole number of units >= 1, got {value!r}")
    if seed is not None:
        check_number("seed", seed)
    kwargs = dict(kwargs or {})
    refuse_built(
        factory, "factory", "it builds the model at width and base_width", "lambda width: ..."
    )
    factory = renamed(factory, width_arg)
    shapes = infer_shapes(factory, width=width, base_width=base_width, kwargs=kwargs)
    if seed is None:  # one draw from the caller's RNG, as building a model would take
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = build(factory, base_width, kwargs, "cpu")
        torch.manual_seed(seed)
        model = build(factory, width, kwargs, "cpu")
    readout = known_output_layer(model)  # None: the call order is unknown (no fx trace)
    is_readout = (lambda n: True) if readout is None else (lambda n: _owner(n) == readout)
    inits = {
        n: init_factor(param, s, readout_zero_init and is_readout(n)) for n, s in shapes.items()
    }
    if param == "mup" and readout_zero_init:
        inits |= {name: 0.0 for name in readout_biases(shapes, readout)}
    ratios = rescale_ratios(model, base, inits)
    changed = changed_beyond_noise(model, base, ratios)
    rescale(model, ratios)
    lrs = {n: lr_factor(param, optimizer, s) for n, s in shapes.items()}
    notes = rescale_note(changed, shapes, param, (width, base_width))
    notes += [] if param == AS_BUILT else tie_notes(shapes, param)
    notes += _attention(model, base, param)
    notes += interior_output_notes(shapes, readout, param, readout_zero_init)
    factors = {n: 1.0 if f is None else f for n, f in inits.items()}
    return Parametrized(model, param, optimizer, lr, shapes, factors, lrs, notes, readout)


def tie_hint(shape: ParamShape, param: str = "mup") -> str:
    """Why a name of a tied tensor does not get its own module's rule ("" when it does);
    what muP would need for a tied readout only under ``param`` mup."""
    if not shape.own_kind:
        return ""
    rule = shape.tied[0]
    text = (
        f"`{shape.name}` is the same tensor as `{rule}` (tied), parametrized once by "
        f"`{rule}`'s {shape.kind} rule, not as {shape.own_kind}"
    )
    if shape.own_kind == "output" and param == "mup":
        text += (
            "; muP for a tied readout needs a 1/width multiplier on its input in the model's "
            "forward (mup's MuSharedReadout), which initlab cannot add"
        )
    return text


def tie_notes(shapes: Mapping[str, ParamShape], param: str) -> list[str]:
    """One line per tensor shared by several names: the rule it follows, the names whose own
    module would give them another kind and, under muP, what a tied readout lacks."""
    notes = []
    for name, shape in shapes.items():
        if not shape.tied or shape.tied[0] != name:
            continue
        names = " and ".join(f"`{n}`" for n in shape.tied)
        note = f"{names} are one tensor (tied), parametrized once by `{name}`'s {shape.kind} rule"
        others = [shapes[n] for n in shape.tied[1:] if shapes[n].own_kind]
        if others:
            alone = ", ".join(f"`{s.name}` alone would be {s.own_kind}" for s in others)
            note += f" ({alone})"
        readout = next((s.name for s in others if s.own_kind == "output"), None)
        if param == "mup" and readout is not None:
            module = readout.rpartition(".")[0] or readout
            note += (
                f"; muP's readout rule (zero init, lr η/width) cannot apply to it: without a "
                "1/width multiplier on the readout's input in the model's forward (mup's "
                f"MuSharedReadout; initlab cannot add one) expect `{module}` and the logits "
                "to move with width"
            )
        notes.append(note)
    return notes


def _owner(name: str) -> str:
    """The module that owns the parameter ``name`` (``"head.weight"`` → ``"head"``)."""
    return name.rpartition(".")[0]


def readout_biases(shapes: Mapping[str, ParamShape], readout: str | None) -> list[str]:
    """The ``fixed`` parameters (biases) of the readout (the model's output layer, when its
    weight is an output weight; every output weight's module when ``readout`` is ``None``,
    the call order unknown): zeroed with it, so muP's logits start at exactly 0."""
    owners = {_owner(n) for n, s in shapes.items() if s.kind == "output"}
    if readout is not None:
        owners &= {readout}
    return [n for n, s in shapes.items() if s.kind == "fixed" and _owner(n) in owners]


def interior_output_notes(
    shapes: Mapping[str, ParamShape], readout: str | None, param: str, zero: bool
) -> list[str]:
    """One line naming the output-kind weights (width in, a fixed size out) that are not the
    model's readout: muP zero-initializes only the readout (mup's ``MuReadout``); zeroing a
    bottleneck inside the network would switch its branch off. With ``readout`` unknown
    (``None``: torch.fx could not trace the model) every one of them was zeroed: said so."""
    outputs = [n for n, s in shapes.items() if s.kind == "output"]
    if param != "mup" or not zero:
        return []
    if readout is None and len(outputs) > 1:
        return [
            f"{', '.join(f'`{n}`' for n in outputs)}: width in, a fixed size out, all zeroed "
            "as muP's readout: which one is the model's output layer is unknown (torch.fx "
            "could not trace the model, or the last layer is used inside a module it does not "
            "open), and a bottleneck among them switches its branch off"
        ]
    inner = [n for n in outputs if readout is not None and _owner(n) != readout]
    if not inner:
        return []
    names = ", ".join(f"`{n}`" for n in inner)
    return [
        f"{names}: width in, a fixed size out, but not the model's readout "
        f"(`{readout}`): muP's output rule (init std ∝ 1/width, lr η/width) without the "
        "readout's zero init"
    ]


def parametrize(
    factory: Factory,
    param: str = "mup",
    *,
    base_width: int,
    width: int | None = None,
    optimizer: str = "adam",
    lr: float = 1e-3,
    seed: int | None = None,
    readout_zero_init: bool = True,
    width_arg: str = "width",
    **kwargs: Any,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """``(model, param_groups)`` of ``factory`` at ``width`` (default ``base_width``) under
    ``"sp"``, ``"ntk"`` or ``"mup"`` (``"default"``: the model as built, one learning rate)
    for ``optimizer`` ``"sgd"`` or ``"adam"``: pass the groups to ``torch.optim.SGD``/
    ``Adam`` (each carries its ``lr``). ``base_width``: the width every rule is normalized
    at, where all parametrizations are the model as built, trained at ``lr``; away from it,
    with ``m_in = fan_in / base fan_in``, a hidden weight's (and an SP or NTK readout's) rms
    is rescaled to ``base_rms / √m_in`` (variance ∝ 1/fan_in).
    ``lr``: the base learning rate; each group gets ``lr · lr_factor`` (muP with Adam: ``lr
    / m_in`` for hidden and output weights; :func:`lr_factor`, docs/scaling.md's table).
    ``seed``: the seed the base-width model and the model are both built from (default: one
    draw from torch's global RNG). ``readout_zero_init``: under muP, the readout's weight
    and bias start at 0 (mup's ``MuReadout``); ``False``: its weight at ``base_rms / m_in``
    (Tensor Programs V, Table 3: variance ∝ 1/fan_in²). ``width_arg``: the
    factory's own keyword for the width (``"dim"``); ``kwargs`` go to the factory. A tied
    tensor whose names would get different rules is parametrized once; it, an
    ``nn.MultiheadAttention`` whose 1/√d initlab cannot change and width-in/fixed-out
    weights that are not the readout are warned about (``Parametrized.notes``; attention
    written by hand, ``q @ k.T / sqrt(d)``, cannot be seen from outside the model). See
    docs/scaling.md for the table and :func:`parametrized`."""
    result = parametrized(
        factory,
        param,
        width=base_width if width is None else width,
        base_width=base_width,
        optimizer=optimizer,
        lr=lr,
        kwargs=kwargs,
        seed=seed,
        readout_zero_init=readout_zero_init,
        width_arg=width_arg,
    )
    for text in result.notes:  # ties, attention it cannot rescale, readout-like weights
        note(text)
    return result.model, result.param_groups()


def tie_hints(shapes: Mapping[str, ParamShape], param: str) -> dict[str, str]:
    """Parameter name → why it does not get its own module's rule (tied weights), and
    ``"(logits)"`` → the same for a tied readout: what the verdicts' sentences say."""
    hints = {name: hint for name, s in shapes.items() if (hint := tie_hint(s, param))}
    readout = next((hints[n] for n in hints if shapes[n].own_kind == "output"), "")
    return hints | ({"(logits)": readout} if readout else {})
