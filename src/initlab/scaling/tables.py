"""``--embedding-init`` for the coordinate check: the embedding tables of every model it
builds drawn from one scheme, as ``compare --embedding-init`` sets them.

``nn.Embedding`` draws N(0, 1): a language model's token and position vectors then have
norm √D and swamp what the blocks add to the stream, whose rows stay flat at every width
whatever the blocks do. With a scheme, each model is built by its factory, then its tables
(a readout tied to one included) are drawn from the scheme with fan_in = D
(:mod:`initlab.embedding_init`), from the global random state the factory drew from, so a
seed gives the same tables at every call. The parametrization comes after: ``sp``, ``ntk``
and ``mup`` rescale a table to the rms it has at the base width (a vocabulary's tables are
``input`` weights, whose init does not change with width), ``default`` keeps the scheme's
own law at every width (``lecun_normal``'s std 1/√D shrinks with the width).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from torch import nn

from initlab.config import AS_BUILT
from initlab.coverage import own_embeddings
from initlab.errors import InitlabError, option
from initlab.scaling.shapes import Factory, build_for_shapes


def with_tables(
    factory: Factory, scheme: str, width: int, kwargs: Mapping[str, Any]
) -> tuple[Factory, str]:
    """``(factory whose models get every embedding table drawn from scheme, the note saying
    which)``: ``initialize(model, "default", embedding_init=scheme)`` after each build;
    ``(factory, "")`` for ``default`` (as built). :class:`InitlabError` (one line) for a
    scheme ``compare`` refuses, or a model without an embedding table (the model at
    ``width``), where it would change nothing. A model built on the meta device (shape
    inference) is returned as built: it holds no values."""
    from initlab.sweep.values import check_setting

    scheme = check_setting("embedding_init", scheme)
    if scheme == AS_BUILT:
        return factory, ""
    note = _tables_note(factory, scheme, width, kwargs)

    @functools.wraps(factory)  # the signature too: check_factory reads the width keyword
    def call(**kw: Any) -> nn.Module:
        from initlab.apply import initialize

        model = factory(**kw)
        if isinstance(model, nn.Module) and not any(p.is_meta for p in model.parameters()):
            initialize(model, AS_BUILT, embedding_init=scheme)
        return model

    return call, note


def _tables_note(factory: Factory, scheme: str, width: int, kwargs: Mapping[str, Any]) -> str:
    """Which tables ``scheme`` sets; :class:`InitlabError` when there are none."""
    tables = own_embeddings(build_for_shapes(factory, width, kwargs))
    flag = option("--embedding-init", "embedding_init")
    if not tables:
        raise InitlabError(f"{flag} '{scheme}' would change nothing: the model has no "
                           "nn.Embedding table")  # fmt: skip
    return (
        f"embedding tables {', '.join(tables)}: {scheme} ({flag}) at every width, then the "
        "parametrization's rule"
    )
