"""``initlab doctor``: diagnose a model as it is, apply a per-layer plan, diagnose again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.outputs import WEIGHT_FILES, check_output_dir, check_output_file
from initlab.cli.parsing import one_scheme, split_list
from initlab.cli.tables import print_frame
from initlab.config import RunConfig
from initlab.console import stderr_console, stdout_console
from initlab.errors import InitlabError, check_positive, some_names
from initlab.notes import note

if TYPE_CHECKING:
    from torch import nn

    from initlab.doctor import Plan
    from initlab.doctor.candidates import Candidate
    from initlab.doctor.evidence import Evidence
    from initlab.doctor.trials import Budget, Schedule
    from initlab.doctor.workflow import Examination
    from initlab.probe import Diagnosis
    from initlab.probe.batch import Probe

out = stdout_console()
err = stderr_console()

# How the trials train: `initlab compare`'s names, defaults, checks and help texts, marked
# "--trials:" as the doctor's other trial options are (--batch is the probe batch's size).
Optimizer = Annotated[str, typer.Option(help="--trials: sgd, momentum, adam, adamw")]
LearningRate = Annotated[float, typer.Option(help="--trials: learning rate")]
BatchSize = Annotated[
    int, typer.Option(help="--trials: examples per training step (--batch: the probe's)")
]


DEFAULT_BUDGET = "10m"
TRAINING = ("optimizer", "lr", "batch_size")
"""The options of how the trials train (compare's): only with ``--trials``."""


@app.command()
@opt.target_options()
def doctor(
    ctx: typer.Context,
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
    embedding_init: opt.EmbeddingInit = "default",
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
    trials: Annotated[
        int | None,
        typer.Option(help="then train the candidates with N init × N data-order seeds"),
    ] = None,
    budget: Annotated[
        str,
        typer.Option(help="--trials: time for the trials (90s, 10m), or steps per run (2000steps)"),
    ] = DEFAULT_BUDGET,
    candidates: Annotated[
        str,
        typer.Option(
            help="--trials: auto, or a list (default, plan, plan+depth_scaled, orthogonal_plan, "
            "he_normal)"
        ),
    ] = "auto",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="--trials: where to write the evidence")
    ] = None,
    optimizer: Optimizer = "sgd",
    lr: LearningRate = 0.01,
    batch_size: BatchSize = 32,
    given: dict[str, Any] | None = None,
) -> None:
    """Diagnose a model, recommend a scheme per layer, apply it, and show what changed.

    With --trials, train the candidates and recommend one with evidence."""
    from initlab.atomic_files import write_error
    from initlab.doctor.workflow import examine, starting_init
    from initlab.probe.batch import prepare_probe
    from initlab.sweep.values import check_setting
    from initlab.weights import save_weights

    check_positive("--batch", batch)
    opt.check_mlp_shape(depth, width)  # as diagnose checks them (-1 ran with exit 0)
    target = given or {}
    opt.refuse_mlp_options(ctx, target, ("depth", "width", "activation"))
    start = starting_init(_one_init(init), target.get("model"))
    training = [f"--{n.replace('_', '-')}" for n in TRAINING if opt.typed_option(ctx, n)]
    spend = check_trials(trials, budget, out_dir, candidates, start, training)
    check_output_file(save, WEIGHT_FILES, "--save")
    settings = _training(optimizer, lr, batch_size)
    with opt.as_options(["embedding_init"]):
        tables = check_setting("embedding_init", one_scheme("--embedding-init", embedding_init))
    config = RunConfig(
        hidden=(width,) * depth, activation=activation, init=start, seed=seed, **settings,
        embedding_init=tables, **target,
    )  # fmt: skip
    where = str(data_dir) if data_dir else None
    with opt.default_data_named(target, config.dataset, "doctor"):
        probe = prepare_probe(config, batch, where, err.status, trains=trials is not None)
    exam = examine(probe, start, family, seed)
    plan = exam.plan
    print_frame(plan.to_frame(), out, title="the plan: a scheme per layer")
    if line := plan.rule_line():
        out.print(line, soft_wrap=True, markup=False, highlight=False)
    note_as_built(exam.model, config.embedding_init)
    _print_comparison(exam.before, exam.after)
    if save is not None:
        try:
            written = save_weights(exam.model.cpu(), save)
        except OSError as exc:
            raise write_error(exc, f"{save} is as it was") from None
        out.print(
            f"wrote {written} (load it with initlab.weights.load_weights(model, path))",
            soft_wrap=True, markup=False, highlight=False,
        )  # fmt: skip
    if trials is not None:
        run_trials(probe, exam, start, trials, spend, candidates, out_dir, out)
    else:
        hint = apply_hint(plan, family, config.embedding_init)
        out.print(hint, soft_wrap=True, markup=False, highlight=False)


def note_as_built(model: nn.Module, tables: str = "default") -> None:
    """A note naming the embeddings and bare parameters the plan leaves as the factory built
    them (:func:`initlab.coverage.untouched_weights`): nn.Embedding's N(0, 1) is itself a
    choice, often the one that matters most in a language model. ``tables``: the
    ``--embedding-init`` scheme, which set the tables (``default``: as built)."""
    from initlab.coverage import own_embeddings, untouched_weights
    from initlab.model_notes import embedding_scales, plural

    if tables != "default":
        note(
            f"{some_names(own_embeddings(model), 4)}: {tables} (--embedding-init), before "
            "the plan and in every trial"
        )
    if not (untouched := untouched_weights(model, embeddings=tables != "default")):
        return
    verb = "keep" if plural(untouched) else "keeps"
    text = f"the plan sets weight layers only: {some_names(untouched, 4)} {verb} the "
    text += "factory's initialization"
    if any("Embedding" in u for u in untouched):
        stds, mismatch = embedding_scales(model)
        text += (
            f" (after the plan: {stds}; nn.Embedding's own default is N(0, 1))"
            + (f"; {mismatch}" if mismatch else "")
            + "; --embedding-init 'normal(std=0.02)' (here, in plan and compare; "
            "initlab.initialize(model, plan, embedding_init=...)) sets the tables too"
        )
    note(text)


def apply_hint(plan: Plan, family: str, tables: str = "default") -> str:
    """The Python that applies this plan to the user's model (its tables drawn from
    ``tables``, the ``--embedding-init``, as above), and how to test it."""
    kind = "" if family == "variance" else f', family="{family}"'
    data = ", data=x" if plan.needs_data else ""
    rule = f', residual_init="{plan.residual_rule}"' if plan.residual_rule != "none" else ""
    rule += f", embedding_init={tables!r}" if tables != "default" else ""
    return (
        f"in Python: plan = initlab.recommend(model, x{kind}); initlab.initialize(model, "
        f"plan{data}{rule}) (x: a batch of inputs); --trials 3 --out DIR tests it by training"
    )


def _one_init(init: str | None) -> str | None:
    """``--init``: the one scheme the doctor starts from; a list of several (``he_normal,
    glorot_normal``) is refused pointing at ``--candidates``, which compares them."""
    names = split_list(init, "--init") if init and init.strip() else []
    if len(names) > 1:
        raise InitlabError(
            f"doctor's --init takes one scheme (the model's starting point), got {len(names)}: "
            f"{', '.join(names)}; to compare several, train them with --trials 3 --out DIR "
            f"--candidates {','.join(names)}"
        )
    return init


def check_trials(
    trials: int | None,
    budget: str,
    out_dir: Path | None,
    names: str = "auto",
    start: str = "",
    training: Sequence[str] = (),
) -> Budget | None:
    """The budget (``None`` without ``--trials``); refuses (one line) bad ``--trials``,
    ``--budget``, ``--out`` and ``--candidates`` (unknown names, fewer than two with the
    references ``default`` and ``start``), and the options of how the trials train
    (``training``: those the user typed) without ``--trials``, before anything is loaded
    or trained."""
    from initlab.doctor.candidates import check_listed
    from initlab.doctor.evidence import EVIDENCE_FILES
    from initlab.doctor.trials import parse_budget

    if trials is None:
        given = [o for o, on in (("--out", out_dir), ("--budget", budget != DEFAULT_BUDGET),
                                 ("--candidates", names.strip() != "auto")) if on]  # fmt: skip
        given += list(training)  # accepted and ignored: nothing trains without --trials
        if given:
            raise InitlabError(f"{', '.join(given)}: for the trials; add --trials N (3 or more)")
        return None
    from initlab.doctor.trials import Design

    Design.square(trials)  # its range (1..100), before any work
    if out_dir is None:
        raise InitlabError("--trials writes its evidence to a directory: add --out DIR")
    check_output_dir(out_dir, files=EVIDENCE_FILES)
    spend = parse_budget(budget)
    if names.strip() != "auto":
        check_listed(split_list(names, "--candidates"), start)
    return spend


def _training(optimizer: str, lr: float, batch_size: int) -> dict[str, Any]:
    """``--optimizer``, ``--lr``, ``--batch-size`` as run settings, checked as compare's."""
    from initlab.sweep.values import check_setting

    given = {"optimizer": optimizer, "lr": lr, "batch_size": batch_size}
    with opt.as_options(given):
        return {key: check_setting(key, value) for key, value in given.items()}


def _print_comparison(before: Diagnosis, after: Diagnosis) -> None:
    import pandas as pd

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
        out.print(f"went away: {', '.join(gone)}", style="green")
    if before.healthy:
        out.print("as it is: no findings", style="green")
    if after.unseen:  # a recurrent cell the probe does not unroll: no table shows it
        out.print(after.unseen_note, highlight=False)
    if after.healthy:
        out.print("after the plan: no findings — healthy", style="green")
    for caution in after.cautions:
        out.print(Text.assemble(("caution", "yellow"), f": {caution}"), highlight=False)
    for finding in after.findings:
        how = "remains" if finding.name in before.names else "appeared with the plan"
        line = Text.assemble((finding.name, "red"), f" {how}: {finding.message}")
        out.print(line, highlight=False)
        if finding.suggestion:
            out.print(Text(f"  suggestion: {finding.suggestion}"), highlight=False)


def run_trials(
    probe: Probe,
    exam: Examination,
    start: str,
    trials: int,
    spend: Budget,
    names: str,
    out_dir: Path,
    console: Console,
) -> None:
    """The trials after the plan: candidates, estimate, progress bar, verdict, files."""
    from initlab.doctor.evidence import snippet_source
    from initlab.doctor.workflow import candidate_names, choose_candidates, reference_of

    found = choose_candidates(
        probe, exam, start, candidate_names(names),
        lambda line: console.print(line, style="yellow", highlight=False),
    )  # fmt: skip
    timing = "; timing a short trial…" if spend.steps is None else ""  # steps: no trial
    console.print(f"candidates: {', '.join(c.name for c in found)}{timing}")
    plan = exam.plan
    if plan.residual is not None and plan.residual.branches:
        console.print(
            "(fixup and skipinit add parameters, so no snippet could set them on your model: "
            "initlab compare --residual-init fixup,skipinit trains them)",
            soft_wrap=True, markup=False, highlight=False,
        )  # fmt: skip
    reference = reference_of(found, start)
    evidence = _gather_shown(found, probe, reference, trials, spend, out_dir, console)
    _print_evidence(evidence, console)
    evidence.plan, evidence.snippet = plan, snippet_source(evidence, probe.config, probe.data)
    _write_evidence(evidence, out_dir, console)


def _gather_shown(
    found: list[Candidate],
    probe: Probe,
    reference: str,
    trials: int,
    spend: Budget,
    out_dir: Path,
    console: Console,
) -> Evidence:
    """:func:`~initlab.doctor.evidence.gather` with the schedule line and the progress a
    sweep shows (:class:`~initlab.progress_display.CountedProgress`: a bar with elapsed time
    and ETA on a terminal, a line every while in a log); a Ctrl-C says what it leaves
    before "interrupted"."""
    from initlab.doctor.evidence import gather
    from initlab.doctor.trials import Design
    from initlab.doctor.workflow import schedule_line
    from initlab.progress_display import CountedProgress

    progress = CountedProgress(console, "model-epochs", transient=True)

    def on_schedule(schedule: Schedule, runs: int) -> None:
        console.print(schedule_line(schedule, runs, probe.config))
        progress.start(runs * schedule.epochs, "trials")

    try:
        return gather(
            found, probe.config, probe.data, Design.square(trials), spend,
            reference=reference,
            on_schedule=on_schedule, on_epoch=lambda c, r: progress.advance(1), out=out_dir,
        )  # fmt: skip
    except KeyboardInterrupt:  # what a stopped doctor leaves: said before "interrupted"
        progress.stop()
        err.print(
            f"the trials stopped before their verdict and are not resumable (run the doctor "
            f"again); {out_dir} is as it was",
            soft_wrap=True, highlight=False,
        )  # fmt: skip
        raise
    finally:
        progress.stop()


def _write_evidence(evidence: Evidence, out_dir: Path, console: Console) -> None:
    """The evidence files, after the verdict printed above: a failed write is one line
    naming where the runs are; every trial run failed is exit 1 after the files."""
    from initlab.atomic_files import write_error

    try:
        paths = evidence.write(out_dir)
    except OSError as exc:  # after the verdict, printed above: one line, no traceback
        saved = evidence.saved  # this run's, not an earlier run's left in place
        kept = f"the runs are in {saved}" if saved is not None else "the verdict is above"
        raise write_error(exc, kept) from None
    for path in paths:
        console.print(f"wrote {path}", soft_wrap=True)
    if (evidence.table["status"] == "failed").all():  # as compare: the files are written
        err.print(
            f"error: every one of the {len(evidence.table)} trial runs failed (see above)",
            soft_wrap=True, markup=False, highlight=False,
        )  # fmt: skip
        raise typer.Exit(1)


def _print_evidence(evidence: Evidence, console: Console) -> None:
    ranked = evidence.ranked
    shown = ranked[["rank", "candidate", "final", "final_low", "final_high", "area"]].round(4)
    # a run without a final loss (diverged, failed) never lets its candidate win
    failed = ranked["failed"] if "failed" in ranked else [0] * len(ranked)
    counts = list(zip(ranked["diverged"], failed, ranked["runs"], strict=True))
    shown["diverged"] = [f"{int(d - f)}/{int(n)}" if d - f else "" for d, f, n in counts]
    if any(f for _, f, _ in counts):
        shown["failed"] = [f"{int(f)}/{int(n)}" if f else "" for _, f, n in counts]
    print_frame(shown, console, title="validation loss after the budget (95% CI)")
    tests = evidence.tests[["candidate", "reference", "diff", "diff_low", "diff_high", "p_holm"]]
    title = "paired by seed, against the reference (95% CI of each difference alone; "
    title += "p_holm adjusted for every comparison: the verdict's test)"
    print_frame(tests.round(4), console, title=title)
    if not evidence.variance.empty:
        split = evidence.variance[["candidate", "init_seed", "data_order", "interaction"]]
        print_frame(split.round(3), console, title="where the seed noise comes from (shares)")
    verdict = evidence.verdict
    caveat = verdict.get("at_chance") or verdict.get("overfit")
    colour = "green" if verdict["winner"] and not caveat else "yellow"
    console.print(evidence.verdict["message"], style=colour, highlight=False)
