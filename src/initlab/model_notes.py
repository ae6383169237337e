"""Notes on a model before a comparison trains it, one line each: what the inits under
study leave as the factory built it, what they re-draw that never trains, and when they
cannot differ at all. Called once per model by :func:`initlab.compare.preflight_configs`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from initlab.apply import AS_BUILT, INITIALIZABLE, untouched_weights, weight_layers
from initlab.config import RunConfig
from initlab.errors import option, some_names
from initlab.notes import note
from initlab.usercode import shown_spec


def note_untouched(model: nn.Module, name: str, configs: Sequence[RunConfig]) -> None:
    """Warn (one line) that the named inits leave ``model``'s embeddings or bare parameters
    as its factory built them: those runs differ only in the layers a scheme sets
    (:func:`initlab.apply.untouched_weights`); embeddings are not named when an
    ``embedding_init`` sets them."""
    schemes = [i for i in dict.fromkeys(c.init for c in configs) if i != AS_BUILT]
    embeddings = any(c.embedding_init != AS_BUILT for c in configs)
    untouched = untouched_weights(model, embeddings=embeddings) if schemes else []
    if untouched:
        note(
            f"{', '.join(schemes)} set only the weight layers of {shown_spec(name)} (Linear, "
            f"Conv, RNN, attention); {some_names(untouched, 4)} "
            f"{'keeps' if len(untouched) == 1 else 'keep'} the factory's initialization in "
            "every run"
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


def note_frozen(model: nn.Module, name: str, configs: Sequence[RunConfig]) -> None:
    """Note (one line) when the inits under study re-draw parameters of weight layers that
    ``model`` freezes (``requires_grad=False``): those never train, so each such run keeps a
    random frozen layer where ``default`` keeps the factory's (a pretrained backbone, say),
    and the ranking measures that as much as the init."""
    schemes = [i for i in dict.fromkeys(c.init for c in configs) if i != AS_BUILT]
    frozen = [
        f"{layer}.{pname}" if layer else pname
        for layer, module in weight_layers(model)
        for pname, p in module.named_parameters(recurse=False)
        if not p.requires_grad
    ]
    if not schemes or not frozen:
        return
    one = len(frozen) == 1
    note(
        f"{some_names(frozen, 4)} of {shown_spec(name)} {'is' if one else 'are'} frozen "
        f"(requires_grad=False): {', '.join(schemes)} re-draw {'it' if one else 'them'} and "
        f"{'it never trains' if one else 'they never train'}, so those runs keep random "
        "frozen weights where default keeps the factory's (pretrained ones, say)"
    )
