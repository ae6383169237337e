"""Fan-in and fan-out: from a tensor's shape (PyTorch's rule) or from a module (initlab's rule).

The two rules agree for ``nn.Linear`` and ungrouped ``ConvNd``; they differ for grouped
convolutions (fan_out) and for every transposed convolution (fans swapped, pytorch#7865).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from initlab.errors import InitlabError
from initlab.initializers.checks import check_choice

FAN_MODES = ("fan_in", "fan_out", "fan_avg")

CONV_LAYERS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
"""Every convolution whose fans come from its kernel (grouped and transposed included)."""
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHT_LAYERS = (nn.Linear, *CONV_LAYERS)
"""The weight layers :func:`initlab.initialize` acts on."""


@dataclass(frozen=True)
class Fans:
    """The number of inputs (``fan_in``) and outputs (``fan_out``) a weight's units see.

    ``fan_avg = (fan_in + fan_out) / 2`` is the Glorot/Keras ``mode="fan_avg"`` denominator.
    ``groups``: a grouped convolution's groups (:func:`fans_of_module`), whose blocks of rows
    never mix, so the orthogonal schemes draw each block on its own; 1 everywhere else.
    """

    fan_in: int
    fan_out: int
    groups: int = 1

    def __post_init__(self) -> None:
        for field in ("fan_in", "fan_out"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InitlabError(f"Fans.{field} must be an integer >= 0, got {value!r}")
        groups = self.groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise InitlabError(f"Fans.groups must be an integer >= 1, got {groups!r}")

    @property
    def fan_avg(self) -> float:
        """``(fan_in + fan_out) / 2``."""
        return (self.fan_in + self.fan_out) / 2

    def fan(self, mode: str) -> float:
        """``fan_in``, ``fan_out`` or ``fan_avg`` as selected by ``mode``."""
        check_choice("mode", mode, FAN_MODES)
        return float(getattr(self, mode))


def as_fans(fans: Fans | Sequence[int]) -> Fans:
    """Accept a :class:`Fans` or an ``(fan_in, fan_out)`` pair."""
    if isinstance(fans, Fans):
        return fans
    if isinstance(fans, Sequence) and len(fans) == 2:
        return Fans(*fans)
    raise InitlabError(f"fans must be initlab.initializers.Fans or (fan_in, fan_out), got {fans!r}")


def fans_of_tensor(tensor_or_shape: Tensor | Sequence[int]) -> Fans:
    """Fans of a weight in PyTorch's layout ``[out, in/groups, *k]`` (the tensor rule).

    For ``d >= 2`` dimensions, with receptive field ``r = prod(shape[2:])``:
    ``fan_in = shape[1] * r`` and ``fan_out = shape[0] * r`` — exactly
    ``torch.nn.init._calculate_fan_in_and_fan_out``. PyTorch raises for fewer than two
    dimensions; initlab uses Keras' rule there: a 1-D shape ``[n]`` has
    ``fan_in = fan_out = n`` and a scalar has ``fan_in = fan_out = 1``.

    This rule reads a ``ConvTranspose`` weight ``[in, out/groups, *k]`` as if it were a
    convolution's, so its fans come out swapped, and for grouped convolutions ``fan_out``
    counts all ``out`` channels instead of ``out/groups``: use :func:`fans_of_module`
    where the module is known.
    """
    if isinstance(tensor_or_shape, Tensor):
        shape = tuple(tensor_or_shape.shape)
    elif isinstance(tensor_or_shape, (Sequence, torch.Size)) and not isinstance(
        tensor_or_shape, str
    ):
        shape = tuple(tensor_or_shape)
    else:
        raise InitlabError(f"expected a tensor or a shape, got {tensor_or_shape!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
        raise InitlabError(f"a shape is a sequence of integers >= 0, got {list(shape)}")
    if len(shape) == 0:
        return Fans(1, 1)
    if len(shape) == 1:
        return Fans(shape[0], shape[0])
    receptive = math.prod(shape[2:])
    return Fans(shape[1] * receptive, shape[0] * receptive)


def fans_of_module(module: nn.Module) -> Fans:
    """Fans of a layer's weight computed from the layer itself (the module rule).

    - ``nn.Linear``: ``fan_in = in_features``, ``fan_out = out_features``.
    - ``ConvNd`` and ``ConvTransposeNd``, with ``k = prod(kernel_size)``:
      ``fan_in = (in_channels // groups) * k`` and ``fan_out = (out_channels // groups) * k``:
      each output unit sums over ``in/groups`` channels and each input unit feeds
      ``out/groups`` channels, through ``k`` taps each.

    Differences from :func:`fans_of_tensor` (the rule ``torch.nn.init`` and Keras apply):

    - ConvTranspose: the weight is stored ``[in, out/groups, *k]``, so the tensor rule gives
      ``fan_in = (out/groups)·k`` and ``fan_out = in·k`` — swapped (pytorch#7865,
      tensorflow#31192). Here ``fan_in = (in/groups)·k`` and ``fan_out = (out/groups)·k``.
    - Grouped Conv: the tensor rule's ``fan_out = out·k`` overcounts by ``groups``; here it is
      ``(out/groups)·k``. ``fan_in`` agrees. ``groups`` is kept (:attr:`Fans.groups`).
    - Strided transposed convolutions: an output pixel sums only the taps that land on it,
      ``K / S`` per input channel on average (``S = prod(stride)``: exactly one tap of a
      2×2 kernel at stride 2), so ``fan_in = round((in/groups)·K / S)`` (at least 1); with
      ``(in/groups)·K``, He's std on a ``ConvTranspose2d(…, 2, stride=2)`` was half what keeps
      the signal, and a decoder lost a factor 2 of std at each up-sampling. ``fan_out`` (each
      input feeds ``(out/groups)·K`` outputs) and ordinary strided convolutions are counted
      as the frameworks count them, so that ``mode="fan_out"`` matches torchvision's
      ResNets.

    Raises :class:`InitlabError` for any other module (pass ``fans=`` yourself) and for lazy
    modules whose weight is not materialized yet.
    """
    weight = getattr(module, "weight", None)
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise InitlabError(
            f"{type(module).__name__} is a lazy module whose weight is not materialized yet: "
            "run one forward pass before computing its fans"
        )
    if isinstance(module, nn.Linear):
        return Fans(int(module.in_features), int(module.out_features))
    if isinstance(module, CONV_LAYERS):
        k = math.prod(module.kernel_size)
        groups = int(module.groups)
        fan_in = module.in_channels // groups * k
        if isinstance(module, TRANSPOSED) and (stride := math.prod(module.stride)) > 1:
            fan_in = max(1, round(fan_in / stride))  # each output sums K/S taps on average
        return Fans(fan_in, module.out_channels // groups * k, groups)
    known = "nn.Linear, nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d"
    raise InitlabError(
        f"cannot compute the fans of {type(module).__name__}: initlab knows {known}; "
        "pass fans=Fans(fan_in, fan_out) explicitly"
    )
