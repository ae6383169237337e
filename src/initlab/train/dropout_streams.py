"""Each model's own dropout masks, whatever shares its stack.

``nn.Dropout(p)`` in training returns ``x * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)``
elementwise (``F.dropout``). In a stack, model m draws its masks from its own
``torch.Generator`` on the device (:class:`DropoutStreams`, seeded from its run's
``"dropout"`` stream), whether the stack runs its leaves stacked (:class:`StackedDropout`:
one draw per model on its slice of ``[M, B, ...]``) or the models one after the other
(:class:`ModelDropout` in each model's module). Model m thus sees the same masks trained
alone (M = 1), in any stack and under either strategy: its numbers do not depend on which
runs share its stack, nor on which strategy the stack's timed trial chose.

The stack's global generator (seeded from its first model) still draws what these modules
do not cover: dropout inside ``MultiheadAttention`` (on attention weights), ``F.dropout``
called in a ``forward``, other dropout modules (``Dropout2d``, ``AlphaDropout``...), and
every dropout of a stack that runs under ``vmap`` (a ``vmap``-ed forward cannot tell one
model from another). Those masks are still each model's own, independent of the others',
but they depend on the stack's make-up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropoutStreams:
    """One generator per model on ``device``; model m's is seeded with ``seeds[m]``."""

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def states(self) -> list[Tensor]:
        """Every generator's state (to continue it later with :meth:`set_states`)."""
        return [g.get_state() for g in self.generators]

    def set_states(self, states: Sequence[Tensor]) -> None:
        for generator, state in zip(self.generators, states, strict=True):
            generator.set_state(state.cpu())

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Leave the generators as they were (a trial forward draws no model's masks)."""
        states = self.states()
        try:
            yield
        finally:
            self.set_states(states)


def scaled_mask(out: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Fill ``out`` with ``Bernoulli(1 - p) / (1 - p)`` drawn from ``generator``, in place;
    ``0 <= p < 1``."""
    return out.bernoulli_(1 - p, generator=generator).div_(1 - p)


class _Dropout(nn.Module):
    """``nn.Dropout(p)``'s cases (identity in evaluation or at p = 0, zeros at p = 1);
    :meth:`masked` draws the masks."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x * 0 if self.p == 1 else self.masked(x)

    def masked(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ModelDropout(_Dropout):
    """``nn.Dropout(p)`` of one model, its masks drawn from its own ``generator``."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__(p)
        self.generator = generator

    def masked(self, x: Tensor) -> Tensor:
        return x * scaled_mask(torch.empty_like(x), self.p, self.generator)


class StackedDropout(_Dropout):
    """M ``nn.Dropout(p)`` on ``[M, B, ...]``: model m's slice masked from ``streams``'
    generator m (the same draw as its :class:`ModelDropout`); without ``streams``,
    ``F.dropout`` on the whole stack (the global generator)."""

    def __init__(self, p: float, streams: DropoutStreams | None = None) -> None:
        super().__init__(p)
        self.streams = streams

    def masked(self, x: Tensor) -> Tensor:
        if self.streams is None:
            return F.dropout(x, self.p, True)
        noise = torch.empty_like(x)
        for m, generator in enumerate(self.streams.generators):
            scaled_mask(noise[m], self.p, generator)
        return x * noise


def use_model_dropout(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Replace every ``nn.Dropout`` in ``module`` (in place) by a :class:`ModelDropout`
    drawing from ``generator``; returns ``module``."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                parent._modules[name] = ModelDropout(child.p, generator)
    return module
