"""``initlab diagnose``: per-layer statistics and findings of a network at initialization."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from initlab.atomic_files import write_error, write_files
from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.outputs import check_output_dir
from initlab.cli.parsing import one_scheme, parse_bias, parse_widths, split_list
from initlab.cli.tables import print_frame
from initlab.config import RunConfig
from initlab.console import stderr_console, stdout_console
from initlab.errors import InitlabError, check_positive
from initlab.jsonsafe import dumps
from initlab.notes import note
from initlab.usercode.specs import is_user_spec

if TYPE_CHECKING:
    from initlab.probe import Diagnosis
    from initlab.probe.batch import Probe

out = stdout_console()
err = stderr_console()
DEFAULT_INIT = "he_normal"
COLUMN_NOTE = (
    "z: pre-activation, act: phi(z). z msq = mean(z²); q (MF): its mean-field prediction. "
    "sat, dead: fractions of saturated values / dead units. same W: units whose incoming "
    "weights equal another's. dL/dz std: back-propagated gradient. All columns: --out."
)


@app.command()
@opt.target_options()
def diagnose(
    ctx: typer.Context,
    depth: Annotated[int, typer.Option(help="number of hidden layers")] = 5,
    width: Annotated[int, typer.Option(help="units per hidden layer")] = 256,
    hidden: Annotated[
        str | None,
        typer.Option(help="hidden widths of the built-in MLP, e.g. 300,100 (for --depth/--width)"),
    ] = None,
    activation: opt.Activation = "relu",
    init: Annotated[
        str | None,
        typer.Option(
            help="comma-separated initializer specs, overlaid (default he_normal; with a "
            "--model factory: default, the model as built)"
        ),
    ] = None,
    output_init: opt.OutputInit = "glorot_uniform",
    embedding_init: opt.EmbeddingInit = "default",
    batch_norm: opt.BatchNorm = False,
    bias: opt.Bias = "zeros",
    residual_init: opt.ResidualInit = None,
    batch: Annotated[int, typer.Option(help="examples in the probe batch")] = 512,
    seed: Annotated[int, typer.Option(help="seed of the weights and of the batch")] = 0,
    data_dir: opt.DataDir = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="write layers.csv, findings.json and the figures here"),
    ] = None,
    given: dict[str, Any] | None = None,
) -> None:
    """Look inside a network at init: per-layer statistics, findings, suggestions."""
    from initlab.probe.batch import prepare_probe
    from initlab.sweep.values import check_setting
    from initlab.train.device import check_precision, resolve_device

    check_positive("--batch", batch)
    opt.check_mlp_shape(depth, width)
    check_output_dir(out_dir)  # the files in it: once the inits are known, below
    target = given or {}
    opt.refuse_mlp_options(ctx, target, ("depth", "width", "hidden", "activation", "batch_norm"))
    user = is_user_spec(target.get("model"))
    widths = _hidden_widths(ctx, hidden, depth, width)
    if target.get("model_args") and not user:
        raise InitlabError(
            f"--model-arg is for a model factory (module:function); the built-in "
            f"'{target.get('model', 'mlp')}' takes --hidden (e.g. 300,100) or --depth and "
            "--width, --activation and --batch-norm"
        )
    if init is not None and not init.strip(" ,"):
        raise InitlabError("--init is empty: name at least one init (e.g. --init he_normal)")
    inits = split_list(init, "--init") if init else ["default" if user else DEFAULT_INIT]
    config = RunConfig(
        hidden=widths,
        activation=activation,
        batch_norm=batch_norm,
        init=inits[0],
        output_init=opt.output_scheme(one_scheme("--output-init", output_init)),
        embedding_init=check_setting("embedding_init", embedding_init),
        bias=parse_bias(bias),
        seed=seed,
        residual_init=residual_init or "none",
        **target,
    )
    labels = {scheme: scheme if init or not user else config.model for scheme in inits}
    if not user and not widths and config.output_init is not None:  # --depth 0: no hidden
        note(
            f"no hidden layer: {', '.join(inits)} set no layer here; the output layer takes "
            f"--output-init ({config.output_init})"
        )
    check_output_dir(out_dir, files=output_names(list(labels.values())))
    check_precision(config.precision, resolve_device(config.device))  # not the data's fault
    with opt.default_data_named(target, config.dataset, "diagnose"):
        probe = prepare_probe(config, batch, str(data_dir) if data_dir else None, err.status)
    diagnoses: dict[str, Diagnosis] = {}
    for scheme, label in labels.items():
        diagnoses[label] = _diagnose(probe, scheme, label)
        _print(diagnoses[label], len(probe.x), config.dataset)
    if out_dir is not None:
        try:
            paths = write_outputs(
                diagnoses, out_dir, dataset=config.dataset, batch=len(probe.x), seed=seed
            )
        except OSError as exc:
            raise write_error(exc, f"the findings are above; {out_dir} is as it was") from None
        out.print("wrote " + ", ".join(str(p) for p in paths), soft_wrap=True)


def _hidden_widths(
    ctx: typer.Context, hidden: str | None, depth: int, width: int
) -> tuple[int, ...]:
    """The built-in MLP's hidden widths: ``--hidden`` (the lab's 300,100), else ``--depth``
    layers of ``--width``; one line when both are typed."""
    if hidden is None:
        return (width,) * depth
    typed = [n for n in ("depth", "width") if opt.typed_option(ctx, n)]
    if typed:
        raise InitlabError(
            f"--hidden gives every hidden width: leave out --{' and --'.join(typed)}"
        )
    widths = parse_widths(hidden)
    opt.check_mlp_shape(len(widths), max(widths, default=1))
    return widths


def _diagnose(probe: Probe, scheme: str, label: str) -> Diagnosis:
    from initlab.probe import diagnose as run_probe
    from initlab.train.device import autocast

    net = probe.build(scheme)
    try:
        with autocast(probe.config.precision, probe.device):
            return run_probe(net, probe.x, probe.y, loss=probe.loss, label=label)
    except (RuntimeError, IndexError, MemoryError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        memory = isinstance(exc, MemoryError) or "memory" in first or "allocate" in first
        smaller = max(1, len(probe.x) // 8)
        hint = f"; give a smaller probe batch, e.g. --batch {smaller}" if memory else ""
        raise InitlabError(
            f"the model failed on a batch of shape {tuple(probe.x.shape)}: {first}{hint}"
        ) from None


def _print(diag: Diagnosis, batch: int, dataset: str) -> None:
    title = f"{diag.label}: per-layer statistics on {batch} {dataset} examples"
    print_frame(diag.table(), out, title=title)
    out.print(COLUMN_NOTE)
    if len(diag.recurrent):
        from initlab.probe.recurrent import LEGEND

        print_frame(diag.recurrent_table(), out, title=f"{diag.label}: recurrent layers")
        out.print(LEGEND)
    if diag.unseen:
        out.print(diag.unseen_note, highlight=False)
    if diag.healthy:  # as text: a label's [v2] or :fire: is part of a path, not markup
        out.print(Text(f"{diag.label}: no findings — healthy", style="green"))
    for finding in diag.findings:
        line = Text.assemble((finding.name, "bold red"), f": {finding.message}")
        out.print(line, highlight=False)
        if finding.suggestion:
            out.print(Text(f"  suggestion: {finding.suggestion}"), highlight=False)
    for caution in diag.cautions:
        out.print(Text.assemble(("caution", "yellow"), f": {caution}"), highlight=False)
    out.print()


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "model"


FILES = ("layers.csv", "findings.json", "profiles.png")
"""What ``--out`` gets, with one ``histograms_<init>.png`` per init (:func:`output_names`)."""


def output_names(labels: list[str]) -> list[str]:
    """The files :func:`write_outputs` writes for the diagnoses of ``labels``."""
    return [*FILES, *(f"histograms_{_slug(label)}.png" for label in labels)]


def write_outputs(
    diagnoses: dict[str, Diagnosis], directory: Path, **details: object
) -> list[Path]:
    """``layers.csv`` (one row per init × layer), ``findings.json``
    (``{"findings": [...], "details": [...]}``), ``profiles.png`` and one
    ``histograms_<init>.png`` per init: all or nothing
    (:func:`~initlab.atomic_files.write_files`), and the histograms of the inits an earlier
    ``findings.json`` there named but these diagnoses do not are deleted (they belong to
    the set these files replace)."""
    import pandas as pd

    from initlab.probe.plots import plot_histograms, plot_profiles

    frames = [d.layers.assign(init=label) for label, d in diagnoses.items()]
    table = pd.concat(frames, ignore_index=True)
    table = table[["init", *[c for c in table.columns if c != "init"]]]
    document = {
        "findings": [
            {"init": label, **f.to_dict()} for label, d in diagnoses.items() for f in d.findings
        ],
        "details": [
            {**{k: v for k, v in d.to_dict().items() if k != "findings"}, "init": label, **details}
            for label, d in diagnoses.items()
        ],
    }
    text = dumps(document, indent=2) + "\n"
    writers: dict[str, Callable[[Path], object]] = {
        "layers.csv": lambda p: table.to_csv(p, index=False),
        "findings.json": lambda p: p.write_text(text),
        "profiles.png": lambda p: plot_profiles(diagnoses, p),
    }
    for label, diag in diagnoses.items():
        writers[f"histograms_{_slug(label)}.png"] = partial(plot_histograms, diag)
    return write_files(directory, writers, remove=_earlier_histograms(directory))


def _earlier_histograms(directory: Path) -> list[str]:
    """The ``histograms_<init>.png`` of the inits ``directory``'s ``findings.json`` (from
    an earlier diagnose) names; none when it cannot be read."""
    try:
        document = json.loads((directory / "findings.json").read_text())
        labels = [str(d["init"]) for d in document["details"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f"histograms_{_slug(label)}.png" for label in labels]
