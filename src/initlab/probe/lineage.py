"""Which tensors of one forward pass were computed from which layer outputs.

The activation tracer (:mod:`initlab.probe.trace`) takes an ``unknown`` layer's phi(z) from
the input of a later layer only when that input was computed from the layer's output: the
next layer called may read something else entirely (a ResNet's shortcut conv reads the
block's input, not the branch it is summed with). :class:`Lineage` answers that question:
:meth:`~Lineage.seed` marks tensors as layer ``k``'s, :meth:`~Lineage.spread` passes the
marks of a call's inputs on to its outputs (the tracer calls it for every torch function it
sees) and :meth:`~Lineage.of` reads them. A function the tracer does not see breaks the
chain: a tensor computed through one carries no mark, so it is never taken for phi(z).

Tensors are held by weak reference: the marks keep no activation alive, and a new tensor
that reuses a freed one's ``id`` carries none of its marks.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from torch import Tensor

NONE: frozenset[int] = frozenset()


def tensors_in(value: object) -> list[Tensor]:
    """``value`` itself if it is a tensor, the tensors in it if it is a list or tuple."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for t in value if isinstance(t, Tensor)]
    return []


class Lineage:
    """The layer indices each tensor of a forward pass was computed from (see the module)."""

    def __init__(self) -> None:
        self._marks: dict[int, tuple[weakref.ref, frozenset[int]]] = {}

    def of(self, x: object) -> frozenset[int]:
        """The layers ``x`` was computed from (empty for an unmarked tensor or a non-tensor)."""
        entry = self._marks.get(id(x))
        return entry[1] if entry is not None and entry[0]() is x else NONE

    def seed(self, k: int, tensors: Iterable[Tensor | None]) -> None:
        """Mark ``tensors`` (``None`` is skipped) as computed from layer ``k``'s output."""
        for t in tensors:
            if isinstance(t, Tensor):
                self._mark(t, frozenset({k}))

    def spread(self, inputs: Iterable[Tensor], out: object) -> None:
        """Every tensor in ``out`` is computed from whatever its call's ``inputs`` were."""
        if not self._marks:
            return
        marks = NONE.union(*(self.of(t) for t in inputs))
        if marks:
            for t in tensors_in(out):
                self._mark(t, marks)

    def _mark(self, t: Tensor, marks: frozenset[int]) -> None:
        self._marks[id(t)] = (weakref.ref(t), self.of(t) | marks)
