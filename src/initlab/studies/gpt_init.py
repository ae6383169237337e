"""``gpt-init``: GPT-2's init for a small transformer, and its depth-scaled projections.

Radford et al. 2019 (GPT-2, §2.3) and nanoGPT: every Linear N(0, 0.02), biases 0, and each
residual output projection N(0, 0.02/sqrt(2·n_layer)) "to account for the accumulation on the
residual path with model depth". Compared with PyTorch's default (Linear: U(±1/sqrt(fan_in))),
on a small pre-norm GPT (``initlab.models.gpt:gpt``) at two depths, trained on characters of
Python's standard-library source (:mod:`initlab.studies.gpt_init_data`), and with muP
(:mod:`initlab.studies.gpt_init_models`: the same GPT under muP normalized at a base width,
its per-parameter learning rates folded in as multipliers).

Arms (the per-layer init applies to Linear layers; embeddings keep PyTorch's N(0, 1), see
docs/studies/gpt-init.md): ``default``, ``normal(std=0.02)``, ``normal(std=0.02)`` +
``depth_scaled``, and ``mup`` (model ``mup_gpt``, init as built). AdamW lr 1e-3, batch 16, a
fixed budget of windows. Recorded: the residual stream's rms after every block at init, and
the training loss after the budget.

Scales: ``tiny`` (tests) depths 1 / 2, width 16 (muP base 8); ``default`` depths 2 / 6, width
32 (muP base 16), 1,024 windows of 64 characters (64 steps of 16), one epoch; ``full`` depths
2 / 12, width 128 (muP base 32), every window, 3 epochs, 3 seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from initlab.report.model import Image
from initlab.studies.base import Expectation, Study, StudyContext, register
from initlab.studies.gpt_init_checks import (
    all_arms_learn,
    default_grows_more,
    depth_scaled_grows_less,
    depth_scaled_no_worse,
    gpt_table,
    mup_grows_with_depth,
    mup_loss_measured,
    stream_figure,
)
from initlab.studies.gpt_init_data import CONTEXT, VOCAB_SIZE
from initlab.sweep.spec import Axis, Spec

MODEL = "initlab.models.gpt:gpt"
DATA = "initlab.studies.gpt_init_data:stdlib_chars"
GPT2 = "normal(std=0.02)"
ARMS = (("default", "none"), (GPT2, "none"), (GPT2, "depth_scaled"))
"""(per-layer init, residual rule) of every arm on :data:`MODEL`."""
MUP_MODEL = "initlab.studies.gpt_init_models:mup_gpt"
MUP = "mup"
"""The muP arm's label in the table (its runs: :data:`MUP_MODEL`, init ``default``)."""


@dataclass(frozen=True, kw_only=True)
class GptInitProtocol:
    """What changes with the scale."""

    depths: tuple[int, ...]
    width: int
    heads: int
    limit_train: int | None
    epochs: int
    seeds: int
    base_width: int
    """muP's base width (a multiple of ``heads``): hidden learning rates × base/width."""


PROTOCOLS = {
    "tiny": GptInitProtocol(
        depths=(1, 2), width=16, heads=2, limit_train=256, epochs=1, seeds=1, base_width=8
    ),
    "default": GptInitProtocol(
        depths=(2, 6), width=32, heads=4, limit_train=1024, epochs=1, seeds=1, base_width=16
    ),
    "full": GptInitProtocol(
        depths=(2, 12), width=128, heads=4, limit_train=None, epochs=3, seeds=3, base_width=32
    ),
}


@register
class GptInit(Study):
    name = "gpt_init"
    title = "GPT-2's init and its depth-scaled residual projections"
    paper = (
        "Radford et al., Language models are unsupervised multitask learners (GPT-2), 2019, "
        "§2.3; Karpathy, nanoGPT (model.py: c_proj std 0.02/sqrt(2·n_layer))"
    )
    claim = (
        "Scaling each residual output projection by 1/sqrt(number of branches) keeps the "
        "residual stream from growing with depth at init, and a GPT trained from GPT-2's init "
        "learns at least as well as one trained from PyTorch's default."
    )

    def spec(self, scale: str) -> Spec:
        p = PROTOCOLS[scale]
        fixed = {
            "model": MODEL,
            "dataset": DATA,
            "task": "sequence",
            "output_init": None,
            "bias": "zeros",
            "optimizer": "adamw",
            "weight_decay": 0.0,
            "lr": 1e-3,
            "batch_size": 16,
            "epochs": p.epochs,
            "limit_train": p.limit_train,
            "val_size": 256,
            "track": "off",
            "model_args": {
                "vocab_size": VOCAB_SIZE,
                "width": p.width,
                "heads": p.heads,
                "context": CONTEXT,
            },
        }
        axes = (
            Axis(("model_args.depth",), tuple((d,) for d in p.depths)),
            Axis(("init", "residual_init"), ARMS),
        )
        mup = tuple(
            {
                "model": MUP_MODEL,
                "model_args.depth": d,
                "model_args.base_width": p.base_width,
                "init": "default",
                "residual_init": "none",
            }
            for d in p.depths
        )
        return Spec(
            name=f"study-gpt-init-{scale}",
            fixed=fixed,
            axes=axes,
            seeds=tuple(range(p.seeds)),
            include=mup,
            group_by=("model", "model_args.depth", "init", "residual_init"),
        )

    def check(self, ctx: StudyContext) -> list[Expectation]:
        table = gpt_table(ctx)
        return [
            depth_scaled_grows_less(table),
            default_grows_more(table),
            all_arms_learn(table),
            depth_scaled_no_worse(table),
            mup_grows_with_depth(table),
            mup_loss_measured(table),
        ]

    def figures(self, ctx: StudyContext) -> list[Image]:
        table = gpt_table(ctx)
        return [stream_figure(table)] if not table.empty else []
