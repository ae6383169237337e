"""How ``initialize(..., embedding_init=scheme)`` sets a model's embedding tables.

An ``nn.Embedding``/``nn.EmbeddingBag`` weight ``[V, D]`` is a lookup table: row ``v`` is the
vector token ``v`` maps to. Its fans are the tensor rule's, fan_in = D and fan_out = V, so a
``fan_in`` scheme gives each entry variance ∝ 1/D and each row a squared norm of order 1
(``lecun_normal``: E‖e_v‖² = 1, the scale Flax's ``Embed`` draws, N(0, 1/D)). What the
frameworks do by default: PyTorch N(0, 1) (E‖e_v‖² = D), Keras U(±0.05) (``random_uniform``),
GPT-2 N(0, 0.02²) (``normal(std=0.02)``). A ``padding_idx`` row is zeroed afterwards, as
``nn.Embedding`` does. A table tied to a weight layer (``head.weight = embed.weight``) is set
by that layer's init, not here: ``--output-init`` sets a tied language model's table.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import initlab.initializers as initializers
from initlab.errors import InitlabError, option
from initlab.initializers import Initializer
from initlab.initializers.basic import Constant
from initlab.notes import note

EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def init_embeddings(
    model: nn.Module,
    init: Initializer,
    generator: torch.Generator | None,
    set_by_layers: set[int],
) -> list[dict[str, Any]]:
    """Fill every embedding table of ``model`` not in ``set_by_layers`` (``id`` of tensors a
    weight layer's init set in this call) with ``init``; return one record row per table. A
    table tied to a layer that was kept or left as built is filled too, with a note: the
    embedding scheme is the only one asked to set it."""
    if getattr(init.sampler, "data_dependent", False):
        raise InitlabError(
            f"'{init.name}' cannot set embeddings (it rescales layer outputs on data); give "
            "embeddings a distribution, e.g. normal(std=0.02) or lecun_normal"
        )
    rows, tied = [], []
    for name, module in model.named_modules():
        if isinstance(module, EMBEDDINGS) and id(module.weight) in set_by_layers:
            tied.append(name)
        if not isinstance(module, EMBEDDINGS) or id(module.weight) in set_by_layers:
            continue
        sharing = [n for n, p in model.named_parameters(remove_duplicate=False)
                   if p is module.weight and not n.startswith(f"{name}.")]  # fmt: skip
        if sharing:  # each note says when it holds: a comparison may say both (other inits)
            note(
                f"embedding scheme {init!r} sets {name}, and so {sharing[0]} tied to it, where "
                f"{sharing[0].rpartition('.')[0] or 'that layer'} is kept as built (init "
                f"default, or {option('--output-init')} keep)"
            )
        weight = module.weight
        fans = initializers.fans_of_tensor(weight)
        init(weight, generator, fans=fans)
        padding = getattr(module, "padding_idx", None)
        if padding is not None:
            weight.data[padding].zero_()
        rows.append(
            {
                "layer": name,
                "type": type(module).__name__,
                "shape": "x".join(map(str, weight.shape)),
                "scheme": repr(init) + (f", row {padding} = 0" if padding is not None else ""),
                "fan_in": fans.fan_in,
                "fan_out": fans.fan_out,
                "expected_std": init.std(fans, shape=weight.shape),
                "std": float(weight.detach().std()),
                "bias": "none",
            }
        )
    if tied:
        note(
            f"embedding scheme {init!r} leaves {', '.join(tied)} alone where the init draws "
            f"the weight layer tied to it: that layer's init sets it ({option('--output-init')}"
            " for a language model's readout)"
        )
    return rows


def tensors_set_by(model: nn.Module, rows: list[dict[str, Any]], kept: tuple[str, ...]) -> set[int]:
    """``id`` of every tensor of the layers in ``rows`` (an init record's) whose scheme set
    them: not those whose scheme starts with one of ``kept`` (kept, left as built)."""
    modules = dict(model.named_modules())
    names = [r["layer"] for r in rows if not str(r["scheme"]).startswith(kept)]
    return {id(p) for n in names if n in modules for p in modules[n].parameters(recurse=False)}


def tied_tables(model: nn.Module, layer: str) -> list[str]:
    """The embedding tables whose weight is ``layer``'s (``head.weight = tok.weight``)."""
    weight = getattr(model.get_submodule(layer), "weight", None)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, EMBEDDINGS) and weight is not None and module.weight is weight
    ]


def refuse_constant_tied(model: nn.Module, layer: str, init: Initializer | None) -> None:
    """One line, before any weight changes, for an ``output_init`` that fills the output
    ``layer`` with one value (``zeros``, muP's readout) when its weight is an embedding
    table's: every token would enter the model as the same vector."""
    if init is None or not isinstance(init.sampler, Constant):
        return
    tables = tied_tables(model, layer)
    if tables:
        raise InitlabError(
            f"{option('--output-init')} {init!r} would set {layer}.weight, which is tied to "
            f"{tables[0]}.weight: every token would enter as the same vector; untie the "
            "readout (give it its own nn.Parameter), or give it a random scheme"
        )


def note_constant_tied(model: nn.Module, plan: dict[str, Initializer | None]) -> None:
    """A note for each layer the scheme under study fills with one value (``zeros`` in the
    classic lab) whose weight is an embedding table's: every token enters as the same
    vector, part of what that scheme shows (an explicit ``output_init`` is refused:
    :func:`refuse_constant_tied`)."""
    for layer, init in plan.items():
        if init is None or not isinstance(init.sampler, Constant):
            continue
        for table in tied_tables(model, layer):
            note(
                f"{init!r} also sets {table}.weight, tied to {layer}.weight: every token "
                "enters as the same vector"
            )


def zero_tied_padding(model: nn.Module, set_by_layers: set[int]) -> None:
    """Zero the ``padding_idx`` row of every table a weight layer's init just set (a tied
    readout), as ``nn.Embedding`` and :func:`init_embeddings` do for the tables they set."""
    for module in model.modules():
        padding = getattr(module, "padding_idx", None)
        tied = isinstance(module, EMBEDDINGS) and id(module.weight) in set_by_layers
        if tied and padding is not None:
            with torch.no_grad():
                module.weight[padding].zero_()
