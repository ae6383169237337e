"""Notes on a model before a comparison trains it, one line each: what the inits under
study leave as the factory built it, what they re-draw that never trains, and when they
cannot differ at all. Called once per model by :func:`initlab.sweep.preflight.preflight_configs`
(and :func:`note_frozen_plan` by :func:`initlab.recommend`)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import torch
from torch import Tensor, nn

from initlab.config import AS_BUILT, RunConfig
from initlab.coverage import INITIALIZABLE, untouched_weights, weight_layers
from initlab.errors import option, some_names
from initlab.notes import note
from initlab.probe.split import Spans
from initlab.usercode.inprocess import shown_spec


def note_untouched(model: nn.Module, name: str, configs: Sequence[RunConfig]) -> None:
    """Warn (one line) that the named inits leave ``model``'s embeddings or bare parameters
    as its factory built them: those runs differ only in the layers a scheme sets
    (:func:`initlab.coverage.untouched_weights`); embeddings are not named when an
    ``embedding_init`` sets them."""
    schemes = [i for i in dict.fromkeys(c.init for c in configs) if i != AS_BUILT]
    embeddings = any(c.embedding_init != AS_BUILT for c in configs)
    untouched = untouched_weights(model, embeddings=embeddings) if schemes else []
    if untouched:
        note(
            f"{', '.join(schemes)} set only the weight layers of {shown_spec(name)} (Linear, "
            f"Conv, RNN, attention); {some_names(untouched, 4)} "
            f"{'keep' if plural(untouched) else 'keeps'} the factory's initialization in "
            "every run"
        )


def plural(untouched: list[str]) -> bool:
    """Whether :func:`~initlab.coverage.untouched_weights`' names take a plural verb: several
    modules, or a model's own parameters (``pos, cls (Net's own parameters)``)."""
    return len(untouched) > 1 or untouched[0].endswith("own parameters)")


def note_fused(model: nn.Module, name: str, configs: Sequence[RunConfig], inputs: Tensor) -> None:
    """Note (one line) when a scheme under study draws a fused projection whole: a Linear
    whose output the forward cuts into pieces (nanoGPT's ``c_attn(x).split(d, 2)``:
    :attr:`~initlab.probe.trace.TracedLayer.spans`) holds one map per piece, and a whole
    draw gives each map the fans of all of them (Glorot's Var = 2/(d + 3d) where each
    ``d x d`` map wants 2/(d + d); ``orthogonal`` leaves each block mean squared singular
    value 1/3). Only the schemes whose draw differs per span are named; a doctor's plan
    draws each span with its own fans (docs/initializers.md, "Fused projections")."""
    schemes = [i for i in dict.fromkeys(c.init for c in configs) if i != AS_BUILT]
    fused = _fused_layers(model, inputs) if schemes else {}
    differ = [s for s in schemes if any(_differs(s, w, sp) for w, sp in fused.values())]
    if differ:
        note(
            f"{', '.join(differ)} draw {some_names(list(fused), 3)} of {shown_spec(name)} "
            f"whole, though the forward cuts {'it' if len(fused) == 1 else 'each'} into pieces "
            "(a fused projection: one map per piece), so each map gets the fans of all of "
            "them; a plan of `initlab doctor` draws each piece with its own (docs/"
            "initializers.md, 'Fused projections')"
        )


def _fused_layers(model: nn.Module, inputs: Tensor) -> dict[str, tuple[tuple, Spans]]:
    """``{layer: (weight shape, row spans)}`` of the Linears a forward pass on ``inputs``
    cuts into several pieces (the model's train/eval mode restored; no gradients)."""
    from initlab.probe.trace import trace

    mode = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            layers, _ = trace(model, inputs)
    except Exception:  # a note only: the preflight already ran this model
        return {}
    finally:
        model.train(mode)
    return {t.name: (tuple(t.module.weight.shape), t.spans) for t in layers if t.spans}


def _differs(scheme: str, shape: tuple, spans: Spans) -> bool:
    """Whether ``scheme`` draws a weight of ``shape`` otherwise per row span: another std
    with the span's fans, or an orthogonal scheme (a whole matrix, not one per span)."""
    from initlab.compound_layers import span_fans
    from initlab.initializers.fans import fans_of_tensor
    from initlab.initializers.registry import parse

    init = parse(scheme)
    if "orthogonal" in init.name:
        return True
    whole = init.std(fans_of_tensor(shape), shape=shape)
    parts = [
        init.std(f, shape=(b - a, *shape[1:]))
        for f, (a, b) in zip(span_fans(shape, spans), spans, strict=True)
    ]
    return any(
        p is None or whole is None or not math.isclose(p, whole, rel_tol=1e-9) for p in parts
    )


def note_output_only(model: nn.Module, configs: Sequence[RunConfig]) -> None:
    """Note (one line) when the schemes of ``configs`` (runs of ``model``) set none of its
    layers: its only weight layer is the output layer, which ``output_init`` sets in every
    run whatever ``init`` names (``default`` excepted: it keeps the model as built), so the
    inits compared give identical runs. ``output_init="same"`` gives that layer each scheme."""
    layers = weight_layers(model)
    if len(layers) != 1 or not isinstance(layers[0][1], INITIALIZABLE):
        return
    overridden = [c for c in configs if c.init != AS_BUILT and c.output_init is not None]
    schemes = list(dict.fromkeys(c.init for c in overridden))
    if not schemes:
        return
    outputs = " or ".join(f"'{o}'" for o in dict.fromkeys(c.output_init for c in overridden))
    model_name = shown_spec(configs[0].model)
    result = "these inits give identical runs" if len(schemes) > 1 else "the init has no effect"
    note(
        f"{', '.join(schemes)} set no layer of {model_name}: its only layer "
        f"({layers[0][0] or 'the model'}) is the output layer, which output_init={outputs} sets "
        f"in every run, so {result}; pass {option('--output-init same')} to give it the "
        "scheme under study"
    )


def frozen_parameters(model: nn.Module, layers: Collection[str] | None = None) -> list[str]:
    """``layer.parameter`` of each frozen (``requires_grad=False``) parameter of ``model``'s
    weight layers (only of those named in ``layers`` when given): what a scheme re-draws
    that never trains."""
    return [
        f"{layer}.{pname}" if layer else pname
        for layer, module in weight_layers(model)
        if layers is None or layer in layers
        for pname, p in module.named_parameters(recurse=False)
        if not p.requires_grad
    ]


def frozen_subject(frozen: Sequence[str], owner: str) -> str:
    """``0.weight, 0.bias of OWNER are frozen (requires_grad=False)``: the start of a note on
    the parameters ``frozen`` (:func:`frozen_parameters`)."""
    verb = "is" if len(frozen) == 1 else "are"
    return f"{some_names(list(frozen), 4)} of {owner} {verb} frozen (requires_grad=False)"


def note_frozen(model: nn.Module, name: str, configs: Sequence[RunConfig]) -> None:
    """Note (one line) when the inits under study re-draw parameters of weight layers that
    ``model`` freezes (``requires_grad=False``): those never train, so each such run keeps a
    random frozen layer where ``default`` keeps the factory's (a pretrained backbone, say),
    and the ranking measures that as much as the init."""
    schemes = [i for i in dict.fromkeys(c.init for c in configs) if i != AS_BUILT]
    frozen = frozen_parameters(model)
    if not schemes or not frozen:
        return
    one = len(frozen) == 1
    note(
        f"{frozen_subject(frozen, shown_spec(name))}: {', '.join(schemes)} re-draw "
        f"{'it' if one else 'them'} and {'it never trains' if one else 'they never train'}, "
        "so those runs keep random frozen weights where default keeps the factory's "
        "(pretrained ones, say)"
    )


def note_frozen_plan(model: nn.Module, schemes: Mapping[str, str]) -> list[str]:
    """Note (one line) when a plan (``schemes``: layer → scheme, as
    :func:`initlab.recommend` made it) re-draws parameters ``model`` freezes: applied, it
    would replace weights kept fixed (pretrained ones, say) with random ones that never
    train, as :func:`note_frozen` says of a comparison's runs. Returns the layers named."""
    drawn = [layer for layer, scheme in schemes.items() if scheme != AS_BUILT]
    frozen = frozen_parameters(model, drawn)
    if not frozen:
        return []
    layers = [layer for layer in drawn if frozen_parameters(model, [layer])]
    one = len(frozen) == 1
    note(
        f"{frozen_subject(frozen, type(model).__name__)}: the plan re-draws "
        f"{'it' if one else 'them'} and {'it never trains' if one else 'they never train'}, "
        "so initialize(model, plan) leaves random frozen weights where the model had its own "
        f"(pretrained ones, say); {_keeping(layers, 'it' if one else 'them')}"
    )
    return layers


def _keeping(layers: Sequence[str], them: str) -> str:
    """How to apply the plan but keep ``layers`` as they are: map them to ``default``."""
    if layers == [""]:  # the model is the one weight layer
        return f"to keep {them}, leave the model as it is"
    keep = ", ".join(f"{layer!r}: {AS_BUILT!r}" for layer in layers[:3])
    keep = f"initialize(model, {{**plan, {keep}{', ...' if len(layers) > 3 else ''}}})"
    which = "its layer" if len(layers) == 1 else "their layers"
    return f"to keep {them}, map {which} to {AS_BUILT!r}: {keep}"


SCALE_MISMATCH = 3.0
"""Embedding tables of one width whose stds differ by more than this are named: where a
model adds them (token + position), the smaller one's variance is under 1/9 of the sum's."""


def embedding_scales(model: nn.Module) -> tuple[str, str]:
    """``(stds, mismatch)``: each embedding table's std as it is now (``wte std 0.21, wpe
    std 1.03``), and a sentence when tables of the same width differ by more than
    :data:`SCALE_MISMATCH` in std (``""`` otherwise). A GPT whose token table was drawn
    as its tied output layer (std 0.21) while its position table kept nn.Embedding's
    N(0, 1): added together, the tokens carried 1/25 of the positions' variance
    (``initialize`` leaves a tied table to the embedding rule; a factory may not)."""
    from initlab.embedding_init import EMBEDDINGS

    tables = {
        name: (int(m.weight.shape[-1]), float(m.weight.detach().float().std()))
        for name, m in model.named_modules()
        if isinstance(m, EMBEDDINGS) and m.weight.numel() > 1
    }
    stds = ", ".join(f"{name} std {std:.3g}" for name, (_, std) in tables.items())
    by_width: dict[int, list[tuple[str, float]]] = {}
    for name, (width, std) in tables.items():
        by_width.setdefault(width, []).append((name, std))
    for same in by_width.values():
        low, high = min(same, key=lambda t: t[1]), max(same, key=lambda t: t[1])
        if low[1] > 0 and high[1] / low[1] > SCALE_MISMATCH:
            ratio = high[1] / low[1]
            return stds, (
                f"{high[0]} (std {high[1]:.3g}) and {low[0]} (std {low[1]:.3g}) differ "
                f"{ratio:.3g}× in scale: where the model adds them (token + position), "
                f"{low[0]} carries 1/{ratio * ratio:.3g} of {high[0]}'s variance"
            )
    return stds, ""


def same_weights(first: nn.Module, second: nn.Module) -> bool:
    """Whether two builds hold exactly the same floating-point tensors (a factory that seeds
    torch's RNG itself builds one model whatever the run's seed)."""
    a, b = first.state_dict(), second.state_dict()
    floats = [k for k, v in a.items() if v.is_floating_point()]
    return bool(floats) and all(k in b and torch.equal(a[k], b[k]) for k in floats)


def note_seeded_factory(config: RunConfig, configs: Sequence[RunConfig], data: object) -> None:
    """A note when the user factory of ``config`` builds the same weights for the first two
    seeds its ``default`` runs have: they then differ only in their data order, and their
    spread (the ranking's seed-to-seed noise) understates what the init alone varies; the
    other inits draw each seed's own weights. (:func:`initlab.coverage` cannot see it: a
    build is needed per seed.)"""
    from initlab.train.build import build_architecture

    seeds = sorted({c.seed for c in configs if c.model == config.model and c.init == AS_BUILT})
    if len(seeds) < 2:
        return
    shape = tuple(data.x_train.shape[1:])
    a, b = (build_architecture(config.replace(seed=s), shape, data.num_classes) for s in seeds[:2])
    if same_weights(a, b):
        note(
            f"{shown_spec(config.model)} builds the same weights for seeds {seeds[0]} and "
            f"{seeds[1]} (does it call torch.manual_seed?): its 'default' runs differ only in "
            "their data order, so their spread understates the init's own and the ranking's "
            "tests against 'default' are too confident; remove that call (initlab seeds "
            "torch before it calls the factory, differently for each run)"
        )
