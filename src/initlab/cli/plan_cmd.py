"""``initlab plan``: what an init and a residual rule do to every parameter of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from initlab.atomic_files import write_file
from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.outputs import check_output_file
from initlab.cli.parsing import parse_bias
from initlab.console import stdout_console
from initlab.errors import InitlabError, check_positive
from initlab.jsonsafe import dumps

out = stdout_console()


@app.command()
@opt.target_options("model", "model_arg", "data", "task", model=opt.PlanModel, data=opt.PlanData)
def plan(
    init: Annotated[str, typer.Option(help="the per-layer scheme; default: as built")] = "default",
    output_init: opt.OutputInit = "glorot_uniform",
    embedding_init: opt.EmbeddingInit = "default",
    bias: opt.Bias = "zeros",
    residual_init: opt.ResidualInit = None,
    seed: Annotated[int, typer.Option(help="seed of the construction and the init")] = 0,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="also write the plan as JSON here")
    ] = None,
    given: dict[str, Any] | None = None,
) -> None:
    """A residual-aware init plan for --model: each parameter's role, rule and std.

    Every parameter of --model: its role in the residual structure (branch k, layer j of
    m, skip projection, norm, output, embedding), the rule applied, rms and std before → after.
    With --data, a model torch.fx cannot trace is run on two of its inputs to find its
    residual branches (otherwise they are guessed from module names)."""
    import torch

    from initlab.models import build_user_model
    from initlab.residual import canonical_rule
    from initlab.residual.plan import plan as make_plan
    from initlab.sweep.values import check_setting
    from initlab.train.seeding import make_generator
    from initlab.usercode.specs import is_user_spec

    target = given or {}
    spec = target.get("model")
    check_output_file(out_path, (".json",), "--out")
    check_positive("--seed", seed, allow_zero=True)
    if not is_user_spec(spec):
        why = (
            f"; --model {spec} is built in: for its layers, initlab diagnose --model {spec}"
            if spec
            else ""
        )
        raise InitlabError(
            "initlab plan needs --model module:function (e.g. initlab.models.resnet:resnet)" + why
        )
    rule = canonical_rule(residual_init or "none")
    dataset = _load(target.get("dataset"), target.get("task") or "auto")
    torch.manual_seed(seed)
    model = build_user_model(spec, target.get("model_args"))
    example = _example(model, dataset)
    generator = make_generator(seed, "init")  # as a run draws its init: not the build's
    init = check_setting("init", init)  # 'Default', 'default()': one spelling, "default"
    output = check_setting("output_init", opt.output_scheme(output_init))
    output = None if init == "default" else output  # the model as built, output layer too
    embedding = check_setting("embedding_init", embedding_init)
    result = make_plan(
        model, init, residual_init=rule, generator=generator, data=example,
        output_init=output, bias=parse_bias(bias), embedding_init=embedding,
    )  # fmt: skip
    print_plan(result.to_json(), out, requested=rule)
    if out_path is not None:
        try:
            text = dumps(result.to_json(), indent=1) + "\n"
            write_file(out_path, lambda p: p.write_text(text))
        except OSError as exc:
            raise InitlabError(f"--out {out_path}: cannot write ({exc.strerror})") from None
        out.print(f"wrote {out_path}", soft_wrap=True)


def _load(data: str | None, task: str) -> Any:
    """``--data`` loaded (``None`` without it; ``task``: ``--task``, for targets whose task
    cannot be inferred)."""
    if data is None:
        return None
    from initlab.data import load

    return load(data, task=task)


def _example(model: Any, dataset: Any) -> Any:
    """Two training inputs of ``dataset`` (``None`` without it), once ``model`` has run on
    them as ``compare`` checks it (:func:`initlab.train.preflight.probe_forward`: token ids
    inside its embedding, then one forward pass; one line and exit 2 if it cannot run on
    them). Data-dependent schemes use them, and the residual structure of a model fx cannot
    trace is recorded from a run on them (docs/residual.md). The model is left as it was
    (:func:`initlab.preserve.preserved`)."""
    if dataset is None:
        return None
    from initlab.preserve import preserved
    from initlab.train.preflight import probe_forward

    with preserved(model, "eval"):
        probe_forward(model, dataset)
    return dataset.x_train[:2]


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def print_plan(data: dict[str, Any], console: Console, requested: str = "none") -> None:
    """The parameter table and the residual structure's summary; ``requested``: the rule
    asked for, named with "changed nothing" when the plan applied none."""
    table = Table(title="the plan: every parameter")
    for column in (
        "parameter",
        "shape",
        "role",
        "rule",
        "rms before → after",
        "std before → after",
    ):
        table.add_column(column)
    for row in data["parameters"]:
        table.add_row(
            row["name"],
            "×".join(map(str, row["shape"])) or "scalar",
            row["role"],
            row["rule"],
            f"{_num(row['rms_before'])} → {_num(row['rms_after'])}",
            f"{_num(row['std_before'])} → {_num(row['std_after'])}",
        )
    console.print(table)
    res = data["residual"] or {}
    console.print(
        f"residual structure ({res.get('method')}): L = {res.get('depth')} branches; "
        f"rule {res.get('rule')}"
        + (f" ({requested} changed nothing)" if res.get("rule") != requested else ""),
        soft_wrap=True,
    )
    for branch in res.get("branches", []):
        end = f", ends in {branch['last_norm']}" if branch["last_norm"] else ""
        skip = f", skip projection {', '.join(branch['skip'])}" if branch["skip"] else ""
        console.print(
            f"  branch {branch['index'] + 1} in {branch['block'] or '(model)'}: "
            f"{' → '.join(branch['layers'])}{end}{skip}",
            soft_wrap=True,
        )
    for note in res.get("notes", []):
        console.print(f"  note: {note}", soft_wrap=True)
