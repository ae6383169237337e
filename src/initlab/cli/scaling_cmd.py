"""``initlab scaling``: the coordinate check over widths (and depths), with verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.outputs import check_output_dir
from initlab.cli.parsing import one_scheme, parse_model_args, parse_seeds
from initlab.console import stderr_console, stdout_console
from initlab.progress_display import CountedProgress

if TYPE_CHECKING:
    from initlab.scaling.check import ScalingResult

err = stderr_console()
out = stdout_console()


@app.command()
def scaling(
    model: Annotated[
        str,
        typer.Option(
            help="mlp, cnn, gpt, module:function or file.py:function taking a 'width' keyword "
            "(and 'depth' with --depths; other names: --width-arg, --depth-arg); imports "
            "and runs that code"
        ),
    ] = "mlp",
    model_arg: opt.ModelArgs = None,
    width_arg: Annotated[
        str, typer.Option(help="the factory's keyword for the width (e.g. n_embd, d_model)")
    ] = "width",
    depth_arg: Annotated[
        str, typer.Option(help="the factory's keyword for the depth (e.g. n_layer)")
    ] = "depth",
    widths: Annotated[str, typer.Option(help="increasing widths")] = "64,128,256,512,1024",
    param: Annotated[
        str, typer.Option(help="sp, ntk, mup, or default (the model as built) (docs/scaling.md)")
    ] = "sp",
    depths: Annotated[
        str | None, typer.Option(help="depths to fit against, e.g. 2,4,8 (factory 'depth')")
    ] = None,
    optimizer: Annotated[str, typer.Option(help="sgd or adam")] = "adam",
    lr: Annotated[float | None, typer.Option(help="learning rate (sgd 0.1, adam 1e-3)")] = None,
    steps: Annotated[int, typer.Option(help="optimizer steps per width")] = 5,
    seeds: opt.Seeds = "3",
    batch_size: int = 64,
    base_width: Annotated[
        int | None, typer.Option(help="where all parametrizations agree (default: smallest)")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="a dataset or user data spec (default: digits; tokens for gpt)"),
    ] = None,
    task: opt.Task = None,
    embedding_init: opt.EmbeddingInit = "default",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps")] = "auto",
    out_dir: Annotated[
        Path, typer.Option("--out", help="coords.csv, verdicts.json, coords.png go here")
    ] = Path("results/scaling"),
) -> None:
    """Coordinate check: do activations and updates stay the same size as width grows?"""
    from initlab.atomic_files import write_error
    from initlab.scaling.check import SCALING_FILES, coord_check
    from initlab.scaling.inputs import parse_sizes

    check_output_dir(out_dir, files=SCALING_FILES)
    progress = CheckProgress(err)
    try:
        with opt.as_options(["embedding_init"]):
            result = coord_check(
                model,
                widths=parse_sizes("--widths", widths),
                param=param,
                optimizer=optimizer,
                lr=lr,
                steps=steps,
                seeds=parse_seeds(seeds),
                depths=parse_sizes("--depths", depths) if depths else (),
                data=data,
                task=task or "auto",
                device=device,
                batch_size=batch_size,
                base_width=base_width,
                model_args=parse_model_args(model_arg),
                width_arg=width_arg,
                depth_arg=depth_arg,
                progress=progress,
                embedding_init=one_scheme("--embedding-init", embedding_init),
            )
    finally:
        progress.stop()
    try:
        _print(result)  # the verdict first: a file that cannot be written does not lose it
    except OSError:  # stdout closed (`| head`): the files all the same
        result.write(out_dir)
        raise
    try:
        paths = result.write(out_dir)
    except OSError as exc:
        raise write_error(exc, f"the verdict is above; {out_dir} is as it was") from None
    out.print(f"wrote {', '.join(str(p) for p in paths.values())}", highlight=False)


class CheckProgress:
    """The check's progress on stderr, fed by ``coord_check(progress=...)``
    (:class:`~initlab.progress_display.CountedProgress` in models measured of depths ×
    widths × seeds; the bar is gone when done)."""

    def __init__(self, console: Console) -> None:
        self.shown = CountedProgress(console, "models", transient=True)

    def __call__(self, done: int, total: int) -> None:
        if done == 0:
            self.shown.console.print(
                f"measuring {total} model(s) (depths × widths × seeds)…", highlight=False
            )
            self.shown.start(total, "measuring")
        else:
            self.shown.advance(done - self.shown.done, finished=f"measured {done} of {total}")

    def stop(self) -> None:
        self.shown.stop()


def _print(result: ScalingResult) -> None:
    from initlab.scaling.evidence import FLAT_BOUND, blowup_line, inconclusive_line

    s = result.settings
    kinds = Table(title=f"parameter kinds (base width {s.base})", show_lines=False)
    kinds.add_column("parameter")
    kinds.add_column("kind")
    for name, kind in result.kinds.items():
        kinds.add_row(name, kind)
    out.print(kinds)
    for note in result.notes:
        out.print(Text.assemble(("note:", "yellow"), f" {note}"), highlight=False)
    summary = result.summary()
    head = f"{s.param} with {s.optimizer}, lr {s.lr:g}, widths {list(s.widths)}"
    if summary:
        moving = (f"✘ {len(summary)} module(s) move with width", "red")
        out.print(Text.assemble(moving, f" ({head}):"), highlight=False)
        for v in summary:
            out.print(f"  • {v.sentence}", highlight=False, markup=False)
    elif not result.judged():
        out.print(
            Text.assemble(
                ("? nothing judged", "yellow"),
                f" ({head}): no width fit could be made, so this says nothing about how the "
                "model scales",
            ),
            highlight=False,
        )
    if result.judged() and (unsure := result.inconclusive()):
        out.print(Text(f"? {inconclusive_line(unsure)}", style="yellow"), highlight=False)
    if result.caveat and result.outcome != "flat":  # the flat line says it in its own words
        said = f" initlab could not set the attention to muP's 1/d: {result.caveat}"
        out.print(Text.assemble(("note:", "yellow"), said), highlight=False)
    if result.outcome == "flat":
        out.print(flat_line(head, FLAT_BOUND, result.caveat), highlight=False)
    elif result.outcome == "unmeasured":
        names = ", ".join(m["module"] for m in result.unmeasured)
        said = f"? nothing measured moves with width ({head}), but {names} carries width "
        out.print(Text(said + "unmeasured: see the note", style="yellow"), highlight=False)
    _print_not_judged(result, flagged=bool(summary))
    if result.blowups:
        out.print(Text(f"! {blowup_line(result.blowups)}", style="red"), highlight=False)
    depth = [v for v in result.flagged() if v.axis != "width"]
    if depth:
        out.print(f"{len(depth)} depth fit(s) flagged, e.g.:", highlight=False)
        for v in depth[:5]:
            out.print(f"  • {v.sentence}", highlight=False, markup=False)


def flat_line(head: str, bound: float, caveat: str) -> Text:
    """The green "✔ nothing moves with width" line; with a ``caveat``
    (:attr:`~initlab.scaling.check.ScalingResult.caveat`: attention initlab could not set to
    muP's 1/d) it holds at these widths only, and says why."""
    if not caveat:
        return Text.assemble(
            ("✔ nothing moves with width", "green"),
            f" ({head}): every fit's 95% CI within ±{bound:g}",
        )
    return Text.assemble(
        ("✔ nothing moves with width at these widths", "green"),
        f" ({head}): every fit's 95% CI within ±{bound:g}, but initlab could not set the "
        f"attention to muP's 1/d: {caveat}; with 1/√d, attention logits grow with width once "
        "training aligns q and k, which a few steps at small widths may not show "
        "(docs/scaling.md §1)",
    )


def _print_not_judged(result: ScalingResult, *, flagged: bool, shown: int = 5) -> None:
    """The width fits that could not be made (the first ``shown``), so that a missing verdict
    never reads as a pass."""
    missing = result.not_judged
    if not missing:
        return
    lead = "" if flagged or not result.judged() else "no module flagged, but "
    unjudged = (f"? {lead}{len(missing)} fit(s) could not be judged", "yellow")
    out.print(
        Text.assemble(unjudged, ' (not in verdicts; verdicts.json "not_judged"):'),
        highlight=False,
    )
    for m in missing[:shown]:
        where = "" if m["at"] is None else f" at depth {m['at']}"
        name = "the model logits" if m["module"] == "(logits)" else f"`{m['module']}`"
        text = f"  • {name} {m['metric']} at step {m['step']}{where}: {m['reason']}"
        out.print(text, highlight=False, markup=False)
    if len(missing) > shown:
        out.print(f"  … and {len(missing) - shown} more", highlight=False)
