"""How ``initialize(..., embedding_init=scheme)`` sets a model's embedding tables.

An ``nn.Embedding``/``nn.EmbeddingBag`` weight ``[V, D]`` is a lookup table: row ``v`` is the
vector token ``v`` maps to. Its fans are the tensor rule's, fan_in = D and fan_out = V, so a
``fan_in`` scheme gives each entry variance ∝ 1/D and each row a squared norm of order 1
(``lecun_normal``: E‖e_v‖² = 1, the scale Flax's ``Embed`` draws, N(0, 1/D)). What the
frameworks do by default: PyTorch N(0, 1) (E‖e_v‖² = D), Keras U(±0.05) (``random_uniform``),
GPT-2 N(0, 0.02²) (``normal(std=0.02)``). A ``padding_idx`` row is zeroed afterwards, as
``nn.Embedding`` does. A table tied to a weight layer (``head.weight = embed.weight``, a
language model's readout) is an embedding table too: a scheme leaves it to this rule
(:func:`readouts_of_tables`), so tokens and positions keep one scale; only a plan that names
the readout draws it as that layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import initlab.initializers as initializers
from initlab.config import AS_BUILT
from initlab.errors import InitlabError, option
from initlab.init_record import InitRecord, layer_row, set_bias
from initlab.initializers import Initializer
from initlab.initializers.basic import Constant
from initlab.notes import note

EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
TABLE_ROW = "embedding table "
"""How a tied readout's record row begins (:func:`table_readout_row`): its weight is that
table's, set by the embedding rule."""


def init_embeddings(
    model: nn.Module,
    init: Initializer,
    generator: torch.Generator | None,
    set_by_layers: set[int],
) -> list[dict[str, Any]]:
    """Fill every embedding table of ``model`` not in ``set_by_layers`` (``id`` of tensors a
    weight layer's init set in this call) with ``init``; return one record row per table. A
    table tied to a readout is filled too, with a note (:func:`readouts_of_tables`)."""
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
        if sharing:
            note(f"embedding scheme {init!r} sets {name}, and so {sharing[0]}, tied to it")
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
            f"embedding scheme {init!r} leaves {', '.join(tied)} alone: the plan names the "
            "weight layer tied to it, whose entry sets it"
        )
    return rows


def record_embeddings(
    model: nn.Module,
    init: Initializer | None,
    generator: torch.Generator | None,
    record: InitRecord,
    set_now: set[int],
) -> None:
    """Set the embedding tables no weight layer set (``set_now``: the ``id`` of each tensor a
    weight layer's init just set) with ``init`` (``None``/``default``: keep them), add their
    rows to ``record``, take them off its skipped list, and give each readout tied to one
    (:func:`table_readout_row`) the std the table has now."""
    if init is None or init.name == AS_BUILT:
        return
    rows = init_embeddings(model, init, generator, set_now)
    done = {row["layer"] for row in rows}
    record.rows += rows
    record.skipped = [s for s in record.skipped if s["layer"] not in done]
    modules = dict(model.named_modules())
    for row in record.rows:
        if str(row["scheme"]).startswith(TABLE_ROW):
            row["std"] = float(modules[row["layer"]].weight.detach().std())


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


def readouts_of_tables(
    model: nn.Module, plan: dict[str, Initializer | None], said: bool = True
) -> dict[str, str]:
    """``{layer: table}`` for each layer ``plan`` would draw whose weight is an embedding
    table's (a language model's tied readout, ``head.weight = tok.weight``), with a note
    each unless ``said`` is false (an embedding scheme sets the table, and
    :func:`init_embeddings` says so). A scheme leaves that tensor to the embedding rule
    (``embedding_init``; as built without one): drawn as the readout, the token table took
    the readout's scale (Glorot on ``[V, D]``: std ≈ sqrt(2/V)) while the position table
    kept its own (PyTorch's N(0, 1)), and tokens entered at a small fraction of the
    positions' variance, whatever the scheme under study. A plan (a mapping) that names the
    readout draws it."""
    owned = {}
    for layer, init in plan.items():
        if init is None or init.name == AS_BUILT or not (tables := tied_tables(model, layer)):
            continue
        owned[layer] = tables[0]
        if said:
            note(
                f"{layer}.weight is {tables[0]}.weight (tied): kept as built with the model's "
                f"other embedding tables, not drawn by {init!r} ({option('--embedding-init')} "
                "sets them all)"
            )
    return owned


def table_readout_row(
    name: str,
    module: nn.Module,
    table: str,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """The record of readout ``name`` whose weight is embedding ``table``'s
    (:func:`readouts_of_tables`): the weight is left to the embedding rule, the layer's own
    bias gets ``bias_init``."""
    fans = initializers.fans_of_module(module)
    bias_text = set_bias(module, bias_init, generator, fans)
    return layer_row(name, module, f"{TABLE_ROW}{table}", fans, None, bias_text)


def note_planned_tables(model: nn.Module, plan: dict[str, Initializer | None]) -> None:
    """A note for each layer a plan (a mapping) draws whose weight is an embedding table's:
    the token table takes that layer's scheme and scale, apart from the model's other
    tables; filled with one value (``zeros``), every token enters as the same vector. (A
    scheme leaves such a readout to the embedding rule: :func:`readouts_of_tables`.)"""
    for layer, init in plan.items():
        if init is None or init.name == AS_BUILT:
            continue
        for table in tied_tables(model, layer):
            what = (
                "every token enters as the same vector"
                if isinstance(init.sampler, Constant)
                else "the token table takes that layer's scale, apart from the other tables"
            )
            note(f"{init!r} also sets {table}.weight, tied to {layer}.weight: {what}")


def zero_tied_padding(model: nn.Module, set_by_layers: set[int]) -> None:
    """Zero the ``padding_idx`` row of every table a weight layer's init just set (a tied
    readout), as ``nn.Embedding`` and :func:`init_embeddings` do for the tables they set."""
    for module in model.modules():
        padding = getattr(module, "padding_idx", None)
        tied = isinstance(module, EMBEDDINGS) and id(module.weight) in set_by_layers
        if tied and padding is not None:
            with torch.no_grad():
                module.weight[padding].zero_()
