"""Find the nonlinearity that follows each Linear/Conv layer, by watching one forward pass.

A ``TorchFunctionMode`` sees every torch function call — modules (``nn.ReLU``) and functional
code (``F.gelu(x)``, ``x.tanh()``) alike. Each layer's output tensor is tagged with the
layer's name; shape-only or normalizing functions (batch/layer norm, dropout, pooling,
reshapes) pass the tag on; the first recognized activation applied to a tagged tensor is that
layer's activation. A tagged tensor that reaches the next Linear/Conv (or the model's output)
without one is ``"linear"``; one consumed by anything else is ``"unknown"``. A gate written by
hand, ``x * sigmoid(x)`` (in either order), is the activation it computes: ``silu``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from initlab.activations import LEAKY_RELU_SLOPE

ACTIVATION_FUNCTIONS = {
    "relu": "relu",
    "relu_": "relu",
    "leaky_relu": "leaky_relu",
    "leaky_relu_": "leaky_relu",
    "tanh": "tanh",
    "tanh_": "tanh",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "selu": "selu",
    "selu_": "selu",
    "elu": "elu",
    "elu_": "elu",
    "gelu": "gelu",
    "silu": "silu",
    "softplus": "softplus",
    "softsign": "softsign",
}
"""torch function name → initlab activation name."""

GATED = {"sigmoid": "silu"}
"""``phi(x) * x`` written by hand → the activation it computes (swish = SiLU)."""

MULTIPLY_FUNCTIONS = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"})

TRANSPARENT_FUNCTIONS = frozenset(
    {
        "batch_norm",
        "layer_norm",
        "group_norm",
        "instance_norm",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool1d_with_indices",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "view",
        "reshape",
        "flatten",
        "contiguous",
        "clone",
        "__getitem__",
    }
)
"""Functions that do not change which nonlinearity a layer's output meets next."""

LAYER_FUNCTIONS = frozenset(
    {
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    }
)


class _ActivationTracer(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[int, str] = {}
        self.keep: list[Tensor] = []  # keep tagged tensors alive so their ids stay unique
        self.found: dict[str, str] = {}
        self.slopes: dict[str, float] = {}
        self.gates: dict[int, str] = {}  # id(phi(x)) → x's layer, for phi in GATED

    def tag(self, tensor: Tensor, layer: str) -> None:
        self.tags[id(tensor)] = layer
        self.keep.append(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        tensors = _tensors(args, kwargs)
        if name in MULTIPLY_FUNCTIONS:
            self._close_gate(tensors)
        tagged = [self.tags[id(a)] for a in tensors if id(a) in self.tags]
        for layer in tagged:
            self._observe(layer, name, args, kwargs, out)
        return out

    def _close_gate(self, factors: list[Tensor]) -> None:
        """``phi(x) * x`` for a layer output x whose activation so far is a GATED ``phi``."""
        for gate in factors:
            layer = self.gates.get(id(gate))
            others = [f for f in factors if f is not gate]
            if layer is not None and any(self.tags.get(id(f)) == layer for f in others):
                self.found[layer] = GATED.get(self.found[layer], self.found[layer])

    def _observe(self, layer: str, name: str, args, kwargs, out) -> None:
        if layer in self.found:
            return
        if name in ACTIVATION_FUNCTIONS:
            self.found[layer] = ACTIVATION_FUNCTIONS[name]
            if self.found[layer] in GATED and isinstance(out, Tensor):
                self.gates[id(out)] = layer
                self.keep.append(out)
            if self.found[layer] == "leaky_relu":
                slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else None)
                self.slopes[layer] = float(slope) if slope is not None else LEAKY_RELU_SLOPE
        elif name in LAYER_FUNCTIONS:
            self.found[layer] = "linear"
        elif name in TRANSPARENT_FUNCTIONS and isinstance(out, Tensor):
            self.tag(out, layer)
        elif name not in ("dim", "size", "__get__", "__len__", "add_"):
            self.found[layer] = "unknown"


def _tensors(args, kwargs) -> list[Tensor]:
    flat = list(args) + list(kwargs.values())
    out = []
    for item in flat:
        if isinstance(item, Tensor):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            out.extend(x for x in item if isinstance(x, Tensor))
    return out


def find_activations(
    model: nn.Module, inputs: Tensor, layers: Sequence[tuple[str, nn.Module]]
) -> tuple[dict[str, str], dict[str, float]]:
    """For each ``(name, layer)``: the activation its output meets (``"linear"`` when none,
    ``"unknown"`` when something initlab cannot classify consumes it), and the negative slope
    of each ``leaky_relu`` found. The model's mode and parameters are not changed."""
    tracer = _ActivationTracer()
    names = {id(m): n for n, m in layers}

    def hook(module: nn.Module, _args, out: Tensor) -> None:
        tracer.tag(out, names[id(module)])

    handles = [m.register_forward_hook(hook) for _, m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tracer:
            model(inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    found = {n: tracer.found.get(n, "linear") for n, _ in layers}
    return found, tracer.slopes
