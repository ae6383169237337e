"""``resnet-depth``: deep residual networks without normalization train only with a
residual-aware init (Zhang, Dauphin & Ma 2019, "Fixup initialization: residual learning
without normalization", ICLR; De & Smith 2020, SkipInit; Goyal et al. 2017).

Protocol: CIFAR-style ResNets (``initlab.models.resnet:resnet``, depth 6n+2, BasicBlocks, L
= (depth−2)/2 branches of m = 2 convolutions) on 32×32 images (Fashion-MNIST padded 28→32,
one channel: :mod:`initlab.studies.resnet_depth_data`). Without normalization: He normal with
no residual rule, ``fixup``, ``skipinit``, ``zero_last_layer``; with batch norm: He normal
with and without ``zero_last_norm``. SGD with momentum 0.9, lr 0.05, batch 32, a fixed budget
of examples. Recorded: the rms of every block's output at init and the gradient of the stem
(:func:`~initlab.studies.resnet_depth_checks.init_profile`), and the training loss after the
budget.

Scales (timings in docs/studies/resnet-depth.md): ``tiny`` depth 8 for tests; ``default``
depths 8 / 20 / 44, width 8, 2,560 images (80 steps), one epoch; ``full`` the paper's depths
20 / 56 / 110, width 16, 10,000 images, 5 epochs, 3 seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.resnet_depth_checks import (
    bn_zero_last_norm_harmless,
    fixup_trains_deepest,
    plain_fails_deepest,
    profile_figure,
    rule_table,
    signal_grows_with_depth,
)
from initlab.sweep.spec import Axis, Spec

MODEL = "initlab.models.resnet:resnet"
DATA = "initlab.studies.resnet_depth_data:fashion32"
SCHEMES = (
    (False, "none"),
    (False, "fixup"),
    (False, "skipinit"),
    (False, "zero_last_layer"),
    (True, "none"),
    (True, "zero_last_norm"),
)
"""(batch norm?, residual rule) of every arm; the per-layer init is he_normal throughout."""


@dataclass(frozen=True, kw_only=True)
class ResnetDepthProtocol:
    """What changes with the scale."""

    depths: tuple[int, ...]
    width: int
    limit_train: int
    epochs: int
    seeds: int


PROTOCOLS = {
    "tiny": ResnetDepthProtocol(depths=(8,), width=4, limit_train=256, epochs=1, seeds=1),
    "default": ResnetDepthProtocol(
        depths=(8, 20, 44), width=8, limit_train=2560, epochs=1, seeds=1
    ),
    "full": ResnetDepthProtocol(
        depths=(20, 56, 110), width=16, limit_train=10_000, epochs=5, seeds=3
    ),
}


@register
class ResnetDepth(Study):
    name = "resnet_depth"
    title = "Deep ResNets without normalization need a residual-aware init"
    paper = (
        "Zhang, Dauphin & Ma, Fixup initialization: residual learning without normalization, "
        "ICLR 2019; De & Smith, Batch normalization biases residual blocks towards the "
        "identity function in deep networks (SkipInit), NeurIPS 2020"
    )
    claim = (
        "Without normalization, a deep ResNet with a standard init (He) has a forward signal "
        "that grows with depth and fails to train at a learning rate that works with batch "
        "norm; rescaling or gating the residual branches (Fixup, SkipInit, zeroing the last "
        "layer) makes it train. With batch norm, zeroing the last norm scale of each branch "
        "does no harm."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "model": MODEL,
            "dataset": DATA,
            "init": "he_normal",
            "output_init": None,
            "bias": "zeros",
            "optimizer": "momentum",
            "momentum": 0.9,
            "lr": 0.05,
            "batch_size": 32,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "val_size": 256,
            "track": "off",
            "model_args": {"width": p.width, "in_channels": 1, "num_classes": 10},
        }
        axes = (
            Axis(("model_args.depth",), tuple((d,) for d in p.depths)),
            Axis(("model_args.norm", "residual_init"), SCHEMES),
        )
        return Spec(
            name=f"study-resnet-depth-{scale}",
            fixed=fixed,
            axes=axes,
            seeds=tuple(range(p.seeds)),
            group_by=("model_args.depth", "model_args.norm", "residual_init"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        table = rule_table(ctx)
        return [
            signal_grows_with_depth(table),
            plain_fails_deepest(table),
            fixup_trains_deepest(table),
            bn_zero_last_norm_harmless(table),
        ]

    def figures(self, ctx: StudyContext) -> list[Image]:
        table = rule_table(ctx)
        return [profile_figure(table)] if not table.empty else []
