"""The options the commands share, and parsing of their values.

Every command that trains or probes a model takes the same *target* options: ``--model``
(``mlp``, ``cnn``, ``module:function``, ``path/to/file.py:function``), ``--model-arg
key=value`` (repeatable), ``--data`` (``--dataset`` is its hidden old name), ``--task``,
``--device`` and ``--precision``. They default to ``None`` ("not given"), so that a sweep
overrides only what was given and the other commands fall back to :class:`RunConfig`'s
defaults. ``--model`` and ``--data`` import and run the user's code.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from initlab.cli.parsing import parse_model_args
from initlab.config import output_scheme as output_scheme  # --output-init: "same" is None
from initlab.errors import InitlabError

# Options shared by several commands (Typer's Annotated style).
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="mlp, cnn, module:function or path/to/file.py:function returning an nn.Module "
        "(imports and runs that code; default: mlp)",
    ),
]
ModelArgs = Annotated[
    list[str] | None,
    typer.Option(
        "--model-arg",
        metavar="KEY=VALUE",
        help="a keyword argument for the model's factory, repeatable (e.g. --model-arg width=64);"
        " values are read as int, float, true/false or text",
    ),
]
Data = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="fashion-mnist, mnist, digits, mnist1d, synthetic, module:function, "
        "file.py:function, file.npz or file.pt (default: fashion-mnist)",
    ),
]
PlanModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="required: module:function or path/to/file.py:function returning an nn.Module "
        "(imports and runs that code); the built-in mlp and cnn are refused: see initlab "
        "diagnose --model mlp for their layers",
    ),
]
PlanData = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="inputs to run the model on: fashion-mnist, digits, module:function, file.npz, "
        "... (default: none; a model torch.fx cannot trace then has its residual branches "
        "guessed from module names)",
    ),
]
DatasetAlias = Annotated[str | None, typer.Option("--dataset", hidden=True, help="= --data")]
Task = Annotated[
    str | None,
    typer.Option(help="auto (from the targets), classification, regression, sequence"),
]
Within = Annotated[
    str | None,
    typer.Option(
        help="rank and test the groups apart within each value of these settings, e.g. "
        "model_args.width (the inits at each width)"
    ),
]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps (default: auto)")]
Precision = Annotated[str | None, typer.Option(help="fp32 or bf16 (autocast; default: fp32)")]
GpusPerTrial = Annotated[
    float | None,
    typer.Option("--gpus-per-trial", help="--backend ray: GPUs each Ray task reserves (e.g. 0.5)"),
]
TARGET_OPTIONS: dict[str, Any] = {
    "model": Model,
    "model_arg": ModelArgs,
    "data": Data,
    "dataset": DatasetAlias,
    "task": Task,
    "device": Device,
    "precision": Precision,
}
"""The target options, by parameter name (``dataset`` is ``data``'s hidden old name)."""
Command = TypeVar("Command", bound=Callable[..., Any])


def target_options(*names: str, **own_help: Any) -> Callable[[Command], Command]:
    """Give a command the target options ``names`` (default: all of :data:`TARGET_OPTIONS`;
    ``data`` brings ``--dataset`` along) after its own; the command receives the settings
    they gave as its ``given`` argument (see :func:`target_settings`). ``own_help`` replaces
    an option's annotation for this command (``data=PlanData``: another default)."""
    chosen = [
        n
        for n in TARGET_OPTIONS
        if n in (names or TARGET_OPTIONS)
        or (n == "dataset" and "data" in (names or TARGET_OPTIONS))
    ]

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "given"]
        added = [
            inspect.Parameter(
                n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=own_help.get(n, a)
            )
            for n, a in TARGET_OPTIONS.items()
            if n in chosen
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in chosen}
            given["model_args"] = given.pop("model_arg", None)
            return command(*args, given=target_settings(**given), **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


ResidualInit = Annotated[
    str | None,
    typer.Option(
        "--residual-init",
        help="residual rule after the init: none, zero_last_layer (zero), zero_last_norm, "
        "skipinit, fixup, depth_scaled (see docs/residual.md)",
    ),
]
CompareResidualInit = Annotated[
    str | None,
    typer.Option(
        "--residual-init",
        help="residual rule after the init: none, zero_last_layer (zero), zero_last_norm, "
        "skipinit, fixup, depth_scaled (see docs/residual.md); a comma list (none,fixup) "
        "trains every init under each rule",
    ),
]


OutputInit = Annotated[
    str, typer.Option(help="the output layer's scheme; 'same' = as the hidden layers")
]
Bias = Annotated[str, typer.Option(help="zeros, keep, torch_default or a number")]
EmbeddingInit = Annotated[
    str,
    typer.Option(
        help="every nn.Embedding table's scheme: default (as built: PyTorch N(0, 1)), "
        "normal(std=0.02) (GPT-2), lecun_normal (N(0, 1/dim)), random_uniform (Keras)"
    ),
]


Hidden = Annotated[
    str, typer.Option(help="hidden widths, e.g. 300,100 ('' or none: no hidden layer)")
]
Activation = Annotated[str, typer.Option(help="relu, tanh, sigmoid, ... (see `initlab list`)")]
BatchNorm = Annotated[bool, typer.Option("--batch-norm/--no-batch-norm")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="where to look for dataset files first")
]
Seeds = Annotated[str, typer.Option(help="a count (3) or explicit seeds (0,5,7 or 10-14)")]
LrSchedule = Annotated[
    str, typer.Option(help="constant, linear or cosine (decay to 0 by the last step)")
]
WarmupSteps = Annotated[
    int, typer.Option(help="optimizer steps of linear warmup from lr/N to lr (0: none)")
]
ClipNorm = Annotated[
    float | None,
    typer.Option(help="clip each model's gradient norm to at most this (unset: no clipping)"),
]

# How `initlab compare`, `sweep` and `study` run.
BackendOption = Annotated[
    str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster)")
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster address for --backend ray (default: start a local Ray)"),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(help="parallel workers (default: one per core, 1 for tiny sweeps; 1 = inline)"),
]
EngineOption = Annotated[str, typer.Option(help="training engine: auto, single or batched")]


def target_settings(
    *,
    model: str | None = None,
    model_args: list[str] | None = None,
    data: str | None = None,
    dataset: str | None = None,
    task: str | None = None,
    device: str | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """The :class:`~initlab.config.RunConfig` settings the target options gave: ``model``,
    ``model_args`` (parsed ``--model-arg``), ``dataset`` (``--data``, or its old name
    ``--dataset``), ``task``, ``device``, ``precision``; options not given are left out.
    Each is checked (:func:`initlab.sweep.values.check_setting`; the device as spec files
    and ``RunConfig`` read it, :func:`initlab.ranges.check_device`), nothing is imported
    yet."""
    from initlab.sweep.values import check_setting  # the registries: only when used

    if data is not None and dataset is not None and data != dataset:
        raise InitlabError("give --data or --dataset (its old name), not both")
    given = {
        "model": model,
        "dataset": data if data is not None else dataset,
        "task": task,
        "device": device,
        "precision": precision,
    }
    settings = {k: check_setting(k, v) for k, v in given.items() if v is not None}
    if model_args:
        settings["model_args"] = check_setting("model_args", parse_model_args(model_args))
    return settings


@contextlib.contextmanager
def as_options(settings: Iterable[str]) -> Iterator[None]:
    """An error inside the block that starts with one of ``settings`` names it as its
    option (``batch_size must be`` → ``--batch-size must be``): the checks name settings as
    specs and Python spell them (:func:`initlab.sweep.values.check_setting`, whose callers
    add the context), and the command line gave these as options."""
    try:
        yield
    except InitlabError as exc:
        said = str(exc)
        name = next((n for n in settings if said.startswith((f"{n} ", f"{n}=", f"{n}:"))), None)
        if name is not None:  # the same error, its type kept (as sweep.preflight does)
            exc.args = (f"--{name.replace('_', '-')}{said[len(name) :]}", *exc.args[1:])
        raise


@contextlib.contextmanager
def default_data_named(target: dict[str, Any], dataset: str, command: str) -> Iterator[None]:
    """An error inside the block (loading the data, running the model on it) says which
    data ``command`` fell back to when a model factory (``--model file.py:f``) came without
    ``--data``: the default dataset is a guess its inputs rarely fit."""
    from initlab.usercode.specs import is_user_spec, load_callable

    if is_user_spec(target.get("model")):
        load_callable(target["model"])  # a factory that cannot load is not the data's fault
    try:
        yield
    except InitlabError as exc:
        if not is_user_spec(target.get("model")) or target.get("dataset") is not None:
            raise
        raise InitlabError(
            f"{exc} (no data given: {command} ran the model on {dataset}, its default; pass "
            "--data with your model's inputs, e.g. --data file.npz or module:function)"
        ) from None


def refuse_mlp_options(ctx: typer.Context, given: dict[str, Any], names: tuple[str, ...]) -> None:
    """With a user's factory (``--model module:function``), one line for the built-in MLP's
    options ``names`` the user typed (``--depth``, ``--width``...): the factory builds its
    own layers, so they would be ignored, as ``compare`` says for ``--hidden``."""
    from initlab.config_checks import unused_line
    from initlab.models import check_factory_args, model_arg_option
    from initlab.usercode.specs import is_data_file, is_user_spec

    model = given.get("model")
    if not is_user_spec(model) or is_data_file(model):
        return
    check_factory_args(model, given.get("model_args"))  # a typo in the name is said first
    typed = [n for n in names if typed_option(ctx, n)]
    if typed:
        shown = ", ".join(_typed(n, ctx.params[n]) for n in typed)
        fix = f"pass your factory's own settings as {model_arg_option()}"
        raise InitlabError(unused_line(shown, model, len(typed), fix))


_DEFAULTS = ("DEFAULT", "DEFAULT_MAP")
"""Click's sources of a value the user did not type."""


def typed_option(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed the option ``name`` (not a default)."""
    source = ctx.get_parameter_source(name)  # an enum of the Click Typer uses (maybe vendored)
    return getattr(source, "name", "DEFAULT") not in _DEFAULTS


def _typed(name: str, value: Any) -> str:
    """``--width 3``, ``--batch-norm``: an option as the user typed it."""
    flag = "--" + name.replace("_", "-")
    return flag if value is True else f"{flag} {value}"


MAX_MLP_DEPTH = 10_000
"""The most hidden layers ``--depth`` builds (as ``initlab theory --depth`` prints)."""
MAX_MLP_WEIGHTS = 10**9
"""The most hidden weights ``--depth × --width²`` may make (4 GB of float32)."""


def check_mlp_shape(depth: int, width: int) -> None:
    """``diagnose``/``doctor``'s ``--depth`` and ``--width`` without ``--model``: one line for
    a negative or zero value, a depth above :data:`MAX_MLP_DEPTH` (10**8 layers hung) or a
    net of more than :data:`MAX_MLP_WEIGHTS` weights (10**20 units raised a C++ traceback)."""
    from initlab.errors import check_positive

    check_positive("--width", width)
    check_positive("--depth", depth, allow_zero=True)
    if depth > MAX_MLP_DEPTH:
        raise InitlabError(f"--depth must be at most {MAX_MLP_DEPTH:,} hidden layers, got {depth}")
    if depth * width * width > MAX_MLP_WEIGHTS:
        raise InitlabError(
            f"--depth {depth} × --width {width}² is {depth * width * width:.3g} weights, more "
            f"than {MAX_MLP_WEIGHTS:.0e} (4 GB); give a smaller --width or --depth"
        )
