"""What every initializer is made of: a :class:`Sampler` wrapped in an :class:`Initializer`.

A *scheme* (``he_normal``, ``orthogonal``, ...) is registered once as a factory; calling the
factory with the scheme's parameters gives a :class:`Sampler` (the code that draws numbers),
and the registry wraps it in an :class:`Initializer`, which carries the scheme's name, resolved
parameters, origin and formula and fills tensors in place.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from initlab.errors import InitlabError
from initlab.initializers.fans import Fans, as_fans, fans_of_tensor

Shape = tuple[int, ...]


class Sampler:
    """How one scheme fills a tensor (the numbers), without its name or documentation.

    Subclasses implement :meth:`fill`, which is called under ``torch.no_grad()`` with the
    tensor, the generator to draw from (``None``: PyTorch's global generator) and the fans
    to scale by, and :meth:`std` where the entries have one common distribution.
    """

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        """Overwrite ``tensor`` in place."""
        raise NotImplementedError

    def std(self, fans: Fans, shape: Shape | None = None) -> float | None:
        """Std of one entry's distribution when all entries share it; ``None`` otherwise."""
        return None


FillFn = Callable[[Tensor, "torch.Generator | None", Fans], object]


class FunctionSampler(Sampler):
    """A :class:`Sampler` around a plain ``fill(tensor, generator, fans)`` function."""

    def __init__(self, fn: FillFn) -> None:
        self.fn = fn

    def fill(self, tensor: Tensor, generator: torch.Generator | None, fans: Fans) -> None:
        """Call the wrapped function; a tensor it returns (if not ``tensor``) is copied in."""
        out = self.fn(tensor, generator, fans)
        if isinstance(out, Tensor) and out is not tensor:
            tensor.copy_(out)


class Initializer:
    """A named, parametrized initializer: ``init(tensor, generator, fans=...)`` fills in place.

    ``name`` is the registry name, ``params`` the parameters that define it (defaults
    resolved), ``origin`` the framework whose semantics it follows and ``formula`` a one-line
    statement of the distribution. ``repr(init)`` is a spec that :func:`initlab.initializers.parse`
    turns back into an equal initializer. Two initializers are equal when their names and
    parameters are.
    """

    name: str
    params: dict[str, Any]
    origin: str
    formula: str
    sampler: Sampler

    def __init__(
        self,
        name: str,
        params: Mapping[str, Any],
        *,
        origin: str,
        formula: str,
        sampler: Sampler,
    ) -> None:
        self.name = name
        self.params = dict(params)
        self.origin = origin
        self.formula = formula
        self.sampler = sampler

    def __call__(
        self,
        tensor: Tensor,
        generator: torch.Generator | None = None,
        *,
        fans: Fans | tuple[int, int] | None = None,
    ) -> Tensor:
        """Fill ``tensor`` in place under ``torch.no_grad()`` and return it.

        ``generator`` is the only source of randomness when given (the global RNG is not
        touched). ``fans`` overrides :func:`fans_of_tensor` (the apply code passes fans derived
        from the module, see :func:`fans_of_module`).
        """
        if not isinstance(tensor, Tensor):
            raise InitlabError(f"{self.name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InitlabError(
                f"{self.name}: generator must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        if not tensor.is_floating_point():
            raise InitlabError(f"{self.name}: cannot fill a tensor of dtype {tensor.dtype}")
        if tensor.numel() == 0:  # like torch.nn.init: initializing an empty tensor is a no-op
            return tensor
        fans = as_fans(fans) if fans is not None else fans_of_tensor(tensor)
        with torch.no_grad():
            try:
                self.sampler.fill(tensor, generator, fans)
            except InitlabError as err:
                raise InitlabError(_prefixed(self.name, err)) from err
        return tensor

    def std(
        self, fans: Fans | tuple[int, int], *, shape: Sequence[int] | None = None
    ) -> float | None:
        """Std of the distribution each entry is drawn from, for a weight with these fans.

        ``None`` when the entries do not share one distribution (identity, dirac,
        delta_orthogonal). ``shape`` makes the answer exact where fans alone do not determine it
        (orthogonal on a conv kernel, whose std is ``gain / sqrt(max(rows, cols))``).
        """
        value = self.sampler.std(as_fans(fans), tuple(shape) if shape is not None else None)
        return None if value is None else float(value)

    def __repr__(self) -> str:
        if not self.params:
            return self.name
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        return (self.name, self.params) == (other.name, other.params)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))


def _prefixed(name: str, err: Exception) -> str:
    message = str(err)
    return message if message.startswith(f"{name}: ") else f"{name}: {message}"


Formula = str | Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Scheme:
    """A registry entry: a factory of samplers plus what the registry says about it.

    ``factory(**params)`` returns a :class:`Sampler` (or a plain ``fill(tensor, generator,
    fans)`` function); its keyword parameters and their defaults are the scheme's parameters.
    ``formula`` is a one-line statement, either a ``str.format`` template over the parameters
    or a function of them. ``doc`` defaults to the factory's docstring.
    """

    name: str
    factory: Callable[..., Sampler | FillFn]
    origin: str
    formula: Formula
    doc: str | None = None
    pytorch_equivalent: str | None = None
    keras_equivalent: str | None = None
    jax_equivalent: str | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """The parameters, in signature order, with their defaults."""
        signature = inspect.signature(self.factory)
        return {p.name: p.default for p in signature.parameters.values()}

    def formula_for(self, params: Mapping[str, Any]) -> str:
        """The formula with these parameter values."""
        if callable(self.formula):
            return self.formula(params)
        return self.formula.format(**params)

    @property
    def summary(self) -> str:
        """The first paragraph of the documentation, on one line."""
        text = self.doc if self.doc is not None else inspect.getdoc(self.factory) or ""
        return " ".join(text.strip().split("\n\n")[0].split())

    def build(self, params: Mapping[str, Any]) -> Sampler:
        """Call the factory; wrap a plain function in a :class:`FunctionSampler`."""
        made = self.factory(**params)
        if isinstance(made, Sampler):
            return made
        if callable(made):
            return FunctionSampler(made)
        raise InitlabError(
            f"{self.name}: its factory returned {type(made).__name__}, "
            "expected a Sampler or a fill(tensor, generator, fans) function"
        )
