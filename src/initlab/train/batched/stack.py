"""Stacked parameters: M same-shaped MLPs held as tensors with a leading model axis.

Layout (chosen by measurement, see ``benchmarks/README.md``): a linear layer of model ``m``
is ``weight[m]`` of shape ``[in, out]`` — ``nn.Linear.weight`` transposed, so the forward
``Z = X W + b`` is a plain (non-transposed) ``baddbmm``, the fastest form of the product with
MKL's AVX-512 kernels (``[M, out, in]`` was 10% slower per step), and the fused SGD update
``W += X^T (-lr dZ)`` is one ``baddbmm_`` writing a contiguous ``[M, in, out]`` tensor — and
``bias[m]`` of shape ``[1, out]`` (broadcast over the examples of a ``[M, B, out]``
activation). Batch-norm ``gamma``/``beta`` and running statistics
are ``[M, 1, width]`` too.

The initial values come from :func:`initlab.train.build_initialized_model` for each config, so
they are bit-identical to the single engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.models.mlp import MLP
from initlab.train.run import build_initialized_model


@dataclass(frozen=True)
class LayerSpec:
    """One linear layer of the stack: indices into :attr:`StackedMLP.params` / ``buffers``.

    ``hidden`` blocks have an activation (and optionally batch norm, dropout and a residual
    connection); the last layer is the plain output layer. ``gamma``/``beta`` index the
    batch-norm affine parameters, ``mean``/``var`` its running statistics (``None``: no norm).
    """

    weight: int
    bias: int
    hidden: bool
    residual: bool = False
    gamma: int | None = None
    beta: int | None = None
    mean: int | None = None
    var: int | None = None
    name: str = ""


@dataclass
class StackedMLP:
    """The parameters of M MLPs of one architecture, stacked along a leading model axis.

    ``params`` are the trainable tensors (``[M, in, out]`` weights, ``[M, 1, out]`` biases and
    batch-norm affines), ``buffers`` the batch-norm running statistics, ``layers`` how they
    fit together. ``steps`` counts the optimizer steps taken (``num_batches_tracked``).
    """

    params: list[Tensor]
    buffers: list[Tensor]
    layers: list[LayerSpec]
    activation: str
    dropout: float
    steps: int = 0
    widths: tuple[int, ...] = field(default=())

    @property
    def size(self) -> int:
        """The number of models M."""
        return int(self.params[0].shape[0])

    @property
    def batch_norm(self) -> bool:
        return any(spec.gamma is not None for spec in self.layers)

    def select(self, index: Tensor) -> StackedMLP:
        """The models ``index`` (a 1-D long tensor) as a new, compact stack."""
        return StackedMLP(
            [p.index_select(0, index) for p in self.params],
            [b.index_select(0, index) for b in self.buffers],
            self.layers,
            self.activation,
            self.dropout,
            self.steps,
            self.widths,
        )

    def state_dict(self, m: int) -> dict[str, Tensor]:
        """Model ``m``'s parameters under :class:`~initlab.models.MLP`'s names (views, but
        weights are contiguous ``[out, in]`` copies, as ``nn.Linear`` holds them).

        ``MLP(...).load_state_dict(stack.state_dict(m))`` rebuilds model ``m``.
        """
        out: dict[str, Tensor] = {}
        for spec in self.layers:
            out[f"{spec.name}.weight"] = self.params[spec.weight][m].t().contiguous()
            out[f"{spec.name}.bias"] = self.params[spec.bias][m, 0]
            if spec.gamma is not None:
                norm = spec.name.replace(".linear", ".norm")
                out[f"{norm}.weight"] = self.params[spec.gamma][m, 0]
                out[f"{norm}.bias"] = self.params[spec.beta][m, 0]
                out[f"{norm}.running_mean"] = self.buffers[spec.mean][m, 0]
                out[f"{norm}.running_var"] = self.buffers[spec.var][m, 0]
                out[f"{norm}.num_batches_tracked"] = torch.tensor(self.steps)
        return out


def _stack(tensors: Sequence[Tensor], row: bool) -> Tensor:
    """Stack per-model tensors along a new axis 0: vectors become ``[M, 1, n]`` rows,
    ``[out, in]`` matrices ``[M, in, out]``."""
    stacked = torch.stack([t.detach() for t in tensors])
    return stacked.unsqueeze(1).contiguous() if row else stacked.transpose(1, 2).contiguous()


def stack_modules(models: Sequence[MLP]) -> StackedMLP:
    """Stack M :class:`~initlab.models.MLP` instances of one architecture (copies)."""
    first = models[0]
    params: list[Tensor] = []
    buffers: list[Tensor] = []
    layers: list[LayerSpec] = []

    def add(items: list[Tensor], tensors: Sequence[Tensor], row: bool) -> int:
        items.append(_stack(tensors, row))
        return len(items) - 1

    for k, block in enumerate(first.blocks):
        blocks = [model.blocks[k] for model in models]
        spec = dict(
            weight=add(params, [b.linear.weight for b in blocks], False),
            bias=add(params, [b.linear.bias for b in blocks], True),
            hidden=True,
            residual=block.residual,
            name=f"blocks.{k}.linear",
        )
        if block.norm is not None:
            norms: list[nn.BatchNorm1d] = [b.norm for b in blocks]  # type: ignore[misc]
            spec.update(
                gamma=add(params, [n.weight for n in norms], True),
                beta=add(params, [n.bias for n in norms], True),
                mean=add(buffers, [n.running_mean for n in norms], True),
                var=add(buffers, [n.running_var for n in norms], True),
            )
        layers.append(LayerSpec(**spec))
    out = [model.output for model in models]
    weight = add(params, [o.weight for o in out], False)
    layers.append(LayerSpec(weight, add(params, [o.bias for o in out], True), False, name="output"))
    widths = (first.input_size, *first.hidden, first.num_classes)
    return StackedMLP(params, buffers, layers, first.activation, first.dropout, 0, widths)


def stack_configs(configs: Sequence[RunConfig], data: Dataset) -> StackedMLP:
    """Build each config's initialized model exactly as the single engine does (the dataset
    is passed on for data-dependent schemes such as LSUV), then stack."""
    models = [
        build_initialized_model(c, data.input_shape, data.num_classes, data=data) for c in configs
    ]
    return stack_modules(models)  # type: ignore[arg-type]
