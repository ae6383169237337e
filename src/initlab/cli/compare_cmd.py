"""``initlab compare``: the reference initialization lab, several seeds per scheme.

A preset of ``initlab sweep``: the same spec machinery, store, resume and executors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.options import (
    AddressOption,
    BackendOption,
    EngineOption,
    WorkersOption,
)
from initlab.cli.parsing import one_scheme, parse_bias, parse_seeds, parse_widths, split_list
from initlab.config import DEFAULT_INITS
from initlab.console import stderr_console, stdout_console

err = stderr_console()
out = stdout_console()


@app.command()
@opt.target_options()
def compare(
    ctx: typer.Context,
    inits: Annotated[
        str | None,
        typer.Option(
            help="comma-separated initializer specs; 'default' = the model as built "
            f"(unset: {', '.join(DEFAULT_INITS)}, after 'default' for your own --model)",
            show_default=False,
        ),
    ] = None,
    seeds: opt.Seeds = "3",
    epochs: int = 5,
    batch_size: int = 32,
    lr: Annotated[float, typer.Option(help="learning rate")] = 0.01,
    optimizer: Annotated[str, typer.Option(help="sgd, momentum, adam, adamw")] = "sgd",
    lr_schedule: opt.LrSchedule = "constant",
    warmup_steps: opt.WarmupSteps = 0,
    clip_norm: opt.ClipNorm = None,
    hidden: opt.Hidden = "300,100",
    activation: opt.Activation = "relu",
    batch_norm: opt.BatchNorm = False,
    dropout: float = 0.0,
    output_init: opt.OutputInit = "glorot_uniform",
    embedding_init: opt.EmbeddingInit = "default",
    bias: opt.Bias = "zeros",
    residual_init: opt.CompareResidualInit = None,
    limit_train: Annotated[
        int | None,
        typer.Option(
            help="keep N training examples (the first N of MNIST-like files, else a seeded "
            "sample, class-balanced for class labels)"
        ),
    ] = None,
    track: Annotated[
        str,
        typer.Option(
            help="per-layer statistics during training: epoch (after each), off, or every N "
            "steps; off saves a probe pass per record (most of a tiny run's time)"
        ),
    ] = "epoch",
    data_dir: opt.DataDir = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="keep the results store (initlab.db) and summary.csv, epochs.csv, "
            "by_group.csv, curves.png and (unless --track off) layer_stats.csv here; "
            "running again with the same --out resumes",
        ),
    ] = None,
    backend: BackendOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    engine: EngineOption = "auto",
    gpus_per_trial: opt.GpusPerTrial = None,
    given: dict[str, Any] | None = None,
) -> None:
    """Train a model with each init scheme and several seeds; compare them fairly."""
    from initlab.cli.runs import run_checked
    from initlab.compare import comparison_spec
    from initlab.sweep.grid import expand

    settings = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        warmup_steps=warmup_steps,
        clip_norm=clip_norm,
        hidden=parse_widths(hidden),
        activation=activation,
        batch_norm=batch_norm,
        dropout=dropout,
        output_init=opt.output_scheme(one_scheme("--output-init", output_init)),
        embedding_init=one_scheme("--embedding-init", embedding_init),
        bias=parse_bias(bias),
        limit_train=limit_train,
        track=int(track) if track.isdigit() else track,
        **({"residual_init": residual_init} if residual_init else {}),
        **(given or {}),
    )
    names = None if inits is None else split_list(inits, "--inits")
    with opt.as_options(settings):  # not those of --model-arg and the other target options
        spec = comparison_spec(names, parse_seeds(seeds), **settings)
    configs = expand(spec)
    title = f"test accuracy by {' / '.join(spec.group_by)}"
    run_checked(spec, configs, out_dir, title=title, ctx=ctx, console=out, err=err)
