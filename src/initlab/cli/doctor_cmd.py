"""``initlab doctor``: diagnose a model as it is, apply a per-layer plan, diagnose again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console

from initlab.apply import initialize
from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.probing import prepare_probe
from initlab.cli.tables import print_frame
from initlab.config import RunConfig
from initlab.doctor import recommend
from initlab.errors import check_positive
from initlab.probe import Diagnosis, diagnose
from initlab.train.seeding import make_generator
from initlab.usercode import is_user_spec
from initlab.weights import save_weights

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


@app.command()
@opt.target_options()
def doctor(
    depth: Annotated[int, typer.Option(help="without --model: hidden layers of an MLP")] = 20,
    width: Annotated[int, typer.Option(help="without --model: units per hidden layer")] = 256,
    activation: opt.Activation = "tanh",
    init: Annotated[
        str | None,
        typer.Option(
            help="the initial (bad?) scheme: default random_normal for the MLP, "
            "default (as built) for a --model factory"
        ),
    ] = None,
    batch: Annotated[int, typer.Option(help="examples in the probe batch")] = 512,
    seed: Annotated[int, typer.Option(help="seed of the weights and of the batch")] = 0,
    family: Annotated[
        str, typer.Option(help="variance (He/LeCun/Glorot by activation) or orthogonal")
    ] = "variance",
    save: Annotated[
        Path | None,
        typer.Option(help="write the initialized weights (.safetensors, else torch.save)"),
    ] = None,
    data_dir: opt.DataDir = None,
    given: dict[str, Any] | None = None,
) -> None:
    """Diagnose a model, recommend a scheme per layer, apply it, and show what changed."""
    check_positive("--batch", batch)
    target = given or {}
    start = init or ("default" if is_user_spec(target.get("model")) else "random_normal")
    config = RunConfig(
        hidden=(width,) * depth, activation=activation, init=start, seed=seed, **target
    )
    probe = prepare_probe(config, batch, str(data_dir) if data_dir else None, err)
    net = probe.build(start)
    before = diagnose(net, probe.x, probe.y, loss=probe.loss, label="as it is")
    plan = recommend(net, probe.x, family=family)
    print_frame(plan.to_frame(), out, title="the plan: a scheme per layer")
    net.cpu()  # the schemes draw from a CPU generator
    initialize(net, plan, data=probe.x.cpu(), generator=make_generator(seed, "init"))
    net.to(probe.device)
    after = diagnose(net, probe.x, probe.y, loss=probe.loss, label="after the plan")
    _print_comparison(before, after)
    if save is not None:
        out.print(f"wrote {save_weights(net.cpu(), save)}", soft_wrap=True)


def _print_comparison(before: Diagnosis, after: Diagnosis) -> None:
    columns = {"post_std": "act std", "pre_grad_std": "dL/dz std"}
    left = before.layers.set_index("layer")[list(columns)].rename(columns=columns)
    right = after.layers.set_index("layer")[list(columns)].rename(columns=columns)
    side = left.add_suffix(" before").join(right.add_suffix(" after")).reset_index()
    print_frame(side, out, title="before → after")
    gone = sorted(set(before.names) - set(after.names))
    new = sorted(set(after.names) - set(before.names))
    rows = [
        {"finding": f.name, "before": "yes", "after": "yes" if f.name in after.names else "gone"}
        for f in before.findings
    ] + [{"finding": n, "before": "no", "after": "yes"} for n in new]
    if rows:
        print_frame(pd.DataFrame(rows), out, title="findings")
    if gone:
        out.print(f"[green]went away: {', '.join(gone)}[/green]")
    if after.healthy:
        out.print("[green]after the plan: no findings — healthy[/green]")
    for finding in after.findings:
        out.print(f"[red]{finding.name}[/red] remains: {finding.message}", highlight=False)
