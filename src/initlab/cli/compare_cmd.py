"""``initlab compare``: the reference initialization lab, several seeds per scheme."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.options import parse_seeds, parse_widths, split_list
from initlab.cli.tables import print_frame
from initlab.compare import DEFAULT_INITS, comparison_configs, run_all
from initlab.results import REACH_FRACTION, ResultSet, format_summary
from initlab.train.run import load_data

err = Console(stderr=True)
out = Console()


@app.command()
def compare(
    dataset: opt.Dataset = "fashion-mnist",
    inits: Annotated[str, typer.Option(help="comma-separated initializer specs")] = ",".join(
        DEFAULT_INITS
    ),
    seeds: opt.Seeds = "3",
    epochs: int = 5,
    batch_size: int = 32,
    lr: Annotated[float, typer.Option(help="learning rate")] = 0.01,
    optimizer: Annotated[str, typer.Option(help="sgd, momentum, adam, adamw")] = "sgd",
    hidden: opt.Hidden = "300,100",
    activation: opt.Activation = "relu",
    batch_norm: opt.BatchNorm = False,
    dropout: float = 0.0,
    model: Annotated[str, typer.Option(help="mlp or cnn")] = "mlp",
    output_init: Annotated[
        str, typer.Option(help="the output layer's scheme; 'same' = as the hidden layers")
    ] = "glorot_uniform",
    bias: Annotated[str, typer.Option(help="zeros, keep, torch_default or a number")] = "zeros",
    limit_train: Annotated[
        int | None, typer.Option(help="use only the first N training examples")
    ] = None,
    data_dir: opt.DataDir = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="write summary.csv, epochs.csv, curves.png here")
    ] = None,
) -> None:
    """Train an MLP with each init scheme and several seeds; compare them fairly."""
    settings = dict(
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        hidden=parse_widths(hidden),
        activation=activation,
        batch_norm=batch_norm,
        dropout=dropout,
        model=model,
        output_init=None if output_init == "same" else output_init,
        bias=_parse_bias(bias),
        limit_train=limit_train,
    )
    init_list, seed_list = split_list(inits), parse_seeds(seeds)
    configs = comparison_configs(init_list, seed_list, **settings)
    with err.status(f"loading {dataset}"):
        data = load_data(configs[0], data_dir=str(data_dir) if data_dir else None)
    with _progress() as bar:
        task = bar.add_task("training", total=len(configs) * epochs)

        def report(config, record, result) -> None:
            if record is not None:
                bar.update(task, advance=1, description=f"{config.init} seed {config.seed}")
            elif result is not None and result.status == "diverged":
                bar.update(task, advance=config.epochs - len(result.epochs))

        results = run_all(configs, progress=report, dataset=data)
    _print_results(results, len(seed_list))
    if out_dir is not None:
        paths = results.save(out_dir)
        out.print("wrote " + ", ".join(str(p) for p in paths))


def _parse_bias(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("model-epochs"),
        TimeRemainingColumn(elapsed_when_finished=True),
        console=err,
        transient=False,
    )


def _print_results(results: ResultSet, n_seeds: int) -> None:
    print_frame(format_summary(results.summary()), out, title="test accuracy by init")
    out.print(
        f"test accuracy: mean ± std over {n_seeds} seed(s). epochs_to_90: first epoch whose "
        f"mean validation accuracy reaches {REACH_FRACTION:.0%} of the best group's final one. "
        "stuck: test accuracy below 1.5/classes; diverged: loss became NaN/inf."
    )
