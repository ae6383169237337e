"""The coordinate check end to end: data → coordinate table → verdicts → files.

>>> result = coord_check("initlab.models.scalable:mlp", widths=(64, 128, 256), param="sp")
>>> result.flagged_modules()          # modules whose size moves with width
>>> result.write("results/scaling")   # coords.csv, verdicts.json, coords.png
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from initlab.arguments import check_progress
from initlab.atomic_files import check_output_dir, write_files
from initlab.config import AS_BUILT, plain
from initlab.data import load
from initlab.errors import InitlabError, option
from initlab.jsonsafe import dumps
from initlab.scaling.coords import (
    CoordSettings,
    DataMismatch,
    Progress,
    batch_source,
    check_memory,
    coord_data,
    preflight,
)
from initlab.scaling.datacheck import check_data
from initlab.scaling.evidence import (
    FLAT_BOUND,
    blowups,
    explain_finite_width,
    explain_rescaled_readout,
    finite_width_note,
    inconclusive,
    not_judged,
    readout_init_note,
    readout_scale,
    rescaled_note,
    seed_pooling_note,
)
from initlab.scaling.inputs import (
    BUILT_IN,
    DEFAULT_DATA,
    check_model_args,
    fit_builtin,
    learning_rate,
    parse_sizes,
    resolve_factory,
    whole_number,
)
from initlab.scaling.parametrize import tie_hints
from initlab.scaling.readout_law import readout_weight_law
from initlab.scaling.roles import LayerRoles, depth_roles, roles_note
from initlab.scaling.sentences import (
    MUP_READOUT_INIT,
    explain_readout_init,
    rescaled_readout_hint,
    with_sentences,
)
from initlab.scaling.shapes import ParamShape, check_factory, infer_shapes, renamed
from initlab.scaling.tables import with_tables
from initlab.scaling.unmeasured import unmeasured_modules, unmeasured_note
from initlab.scaling.verdicts import Verdict, depth_verdicts, width_verdicts
from initlab.sweep.seeds import seed_list
from initlab.train.device import resolve_device
from initlab.train.stack import rng_devices
from initlab.train.tasks import resolve_task
from initlab.usercode.inprocess import data_spec

PRIMARY = ("l1", "std", "update")
"""The metrics a module's summary sentence prefers (``aligned``/``aligned_out`` otherwise)."""
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
SCALING_FILES = ("coords.csv", "verdicts.json", "coords.png")
"""What :meth:`ScalingResult.write` writes."""


@dataclass(repr=False)
class ScalingResult:
    """A coordinate check's table, verdicts, parameter kinds and notes."""

    settings: CoordSettings
    coords: pd.DataFrame
    verdicts: list[Verdict]
    kinds: dict[str, str]
    notes: list[str] = field(default_factory=list)
    not_judged: list[dict] = field(default_factory=list)
    """Width fits that could not be made (:func:`~initlab.scaling.verdicts.not_judged`)."""
    blowups: list[dict] = field(default_factory=list)
    """Series that grow ≥ 100-fold across widths or steps
    (:func:`~initlab.scaling.evidence.blowups`)."""
    caveat: str = ""
    """Under muP, the attention initlab could not set to 1/d (""
    when none; :func:`~initlab.scaling.datacheck.attention_caveat`): a flat outcome holds at
    these widths only."""
    unmeasured: list[dict] = field(default_factory=list)
    """Modules that change with width but have no coordinate rows, ``{module, type,
    parameters}`` (:func:`~initlab.scaling.unmeasured.unmeasured_modules`): no verdict covers
    them, so the outcome is never ``"flat"``."""

    def flagged(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.flagged]

    def __repr__(self) -> str:
        """The outcome, the design and one sentence per flagged module (a notebook shows
        this, not the dataclass's fields: the coords table alone ran to thousands of
        characters); the tables are :attr:`coords` and :attr:`verdicts`."""
        s = self.settings
        widths = ", ".join(map(str, s.widths))
        head = (
            f"ScalingResult: {self.outcome} (widths {widths}; {len(s.seeds)} seeds, "
            f"{s.steps} steps, param {s.param}, {s.optimizer} lr {s.lr:g}; "
            f"{len(self.verdicts)} fits, {len(self.flagged())} flagged)"
        )
        lines = [f"  {v.sentence}" for v in self.summary()[:5]]
        more = len(self.summary()) - len(lines)
        lines += [f"  ... and {more} more flagged modules"] if more > 0 else []
        return "\n".join([head, *lines, *(f"  note: {n}" for n in self.notes[:3])])

    def inconclusive(self) -> list[Verdict]:
        """The judged width fits, not flagged, whose 95% CI is not inside ±½
        (:func:`~initlab.scaling.evidence.inconclusive`): they cannot be told from a material
        slope, so they do not count as "nothing moves"."""
        return inconclusive(self.verdicts)

    @property
    def outcome(self) -> str:
        """What the check says about width, the first that holds: ``"flagged"`` (a width
        verdict flagged), ``"blow-up"`` (:attr:`blowups`: evidence of a problem, as a flag
        is, even where no fit could be made), ``"nothing judged"`` (no width fit),
        ``"inconclusive"`` (:meth:`inconclusive`), ``"incomplete"`` (fits that could not be
        made), ``"unmeasured"`` (:attr:`unmeasured`: modules no fit covers), else ``"flat"``:
        every judged fit's CI inside ±½."""
        checks = [
            ("flagged", any(v.axis == "width" for v in self.flagged())),
            ("blow-up", bool(self.blowups)),
            ("nothing judged", not self.judged()),
            ("inconclusive", bool(self.inconclusive())),
            ("incomplete", bool(self.not_judged)),
            ("unmeasured", bool(self.unmeasured)),
        ]
        return next((name for name, holds in checks if holds), "flat")

    def judged(self) -> bool:
        """Whether any width fit was made (a verdict, flagged or not)."""
        return any(v.axis == "width" for v in self.verdicts)

    def flagged_modules(self) -> list[str]:
        """Modules with at least one flagged width verdict, in model order."""
        found = {v.module for v in self.flagged() if v.axis == "width"}
        return [m for m in dict.fromkeys(self.coords["module"]) if m in found]

    def summary(self) -> list[Verdict]:
        """Per flagged module one width verdict: at init (step 0) when that is flagged (the
        first cause: updates measured after it inherit its scale), else the one with the
        largest |slope| among l1/std/update (the aligned metrics only for a module flagged
        by them alone)."""
        best: dict[str, Verdict] = {}
        for v in self.flagged():
            if v.axis != "width":
                continue
            old = best.get(v.module, v)
            rank = (v.step == 0, v.metric in PRIMARY, abs(v.slope))
            old_rank = (old.step == 0, old.metric in PRIMARY, abs(old.slope) - 1e-12)
            if rank >= old_rank:
                best[v.module] = v
        return [best[m] for m in self.flagged_modules()]

    def write(self, out: str | Path) -> dict[str, Path]:
        """``coords.csv``, ``verdicts.json`` and ``coords.png`` (:data:`SCALING_FILES`) in
        ``out``, all or nothing (:func:`~initlab.atomic_files.write_files`: never a mix with
        the files of another check). A directory or a read-only file where one goes is
        refused (:class:`InitlabError`) before anything is written; an ``OSError`` while
        writing (a full disk) leaves the files of before as they were."""
        from initlab.scaling.plots import plot_coords

        out = Path(out)
        check_output_dir(out, "--out", SCALING_FILES)
        document = {
            "settings": vars(self.settings),  # tuples and kwargs made JSON by dumps
            "outcome": self.outcome,
            "kinds": self.kinds,
            "notes": self.notes,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "not_judged": self.not_judged,
            "flat_bound": FLAT_BOUND,
            "inconclusive": [_key(v) for v in self.inconclusive()],
            "blowups": self.blowups,
            "caveat": self.caveat or None,
            "unmeasured": self.unmeasured,
        }
        text = dumps(document, indent=1)
        s = self.settings
        title = f"{s.param} with {s.optimizer}, lr {s.lr:g}"
        writers: dict[str, Callable[[Path], object]] = {
            "coords.csv": lambda p: self.coords.assign(optimizer=s.optimizer, lr=s.lr).to_csv(
                p, index=False
            ),
            "verdicts.json": lambda p: p.write_text(text),
            "coords.png": lambda p: plot_coords(self.coords, p, flagged=self.marked(), title=title),
        }
        return {p.name: p for p in write_files(out, writers)}

    def marked(self) -> list[tuple[str, int]]:
        """``(module, step)`` of every flagged width verdict, whatever its metric, at the depth
        ``coords.png`` draws (the smallest): the lines drawn thick."""
        depth = int(self.coords["depth"].min()) if len(self.coords) else None
        return [
            (v.module, v.step)
            for v in self.flagged()
            if v.axis == "width" and v.at in (None, depth)
        ]


def _key(v: Verdict) -> dict[str, Any]:
    """An inconclusive fit in ``verdicts.json``: what it is and its CI."""
    return {
        k: getattr(v, k) for k in ("module", "step", "metric", "at", "slope", "ci_low", "ci_high")
    }


def coord_check(
    model: str | Callable = "mlp",
    *,
    widths: Sequence[int] = (64, 128, 256, 512, 1024),
    param: str = "sp",
    optimizer: str = "adam",
    lr: float | None = None,
    steps: int = 5,
    seeds: int | Sequence[int] = 3,
    depths: Sequence[int] = (),
    data: str | Callable | tuple | None = None,
    device: str = "auto",
    batch_size: int = 64,
    base_width: int | None = None,
    model_args: Mapping[str, Any] | None = None,
    task: str = "auto",
    width_arg: str = "width",
    depth_arg: str = "depth",
    progress: Progress | None = None,
    embedding_init: str = "default",
) -> ScalingResult:
    """Run the coordinate check of ``model`` (see :mod:`initlab.scaling.coords`) and fit its
    verdicts: per module, step and metric, the slope of ``log(value)`` on ``log(width)``,
    flagged when its Holm-adjusted p-value is below 5% and ``|slope| ≥ 0.1``
    (:mod:`initlab.scaling.verdicts`).

    ``model``: ``"mlp"``, ``"cnn"``, ``"gpt"`` (the built-in width-parametrized models), a
    ``module:function`` or ``file.py:function`` spec, or a factory taking ``width=`` (not a
    built model). ``widths``: the widths built (at least two, increasing). ``param``:
    ``"sp"``, ``"ntk"``, ``"mup"`` (:func:`initlab.parametrize`, normalized at
    ``base_width``) or ``"default"``: the model as built. ``optimizer``: ``"adam"`` or
    ``"sgd"``; ``lr``: its base learning rate (default 1e-3 for Adam, 0.1 for SGD), scaled
    per parameter by ``param``'s rule. ``steps``: the optimizer steps each model takes (1
    to 10,000); the coordinates are read at every forward ``t = 0 .. steps``. ``seeds``: a
    count (seeds ``0..n-1``) or explicit seeds, as in ``compare``. ``depths``: also check
    over depth at these depths, one law per series (exponential or power); ``()``: the
    factory's own depth only. ``data``: what ``compare`` takes (a dataset name, a spec, a
    function, or ``(x_train, y_train, x_test, y_test)`` tensors/arrays;
    :func:`initlab.usercode.inprocess.data_spec`); default: ``digits``, or the built-in ``gpt``'s
    Zipf token copies. ``device``: where the models run (``"auto"``: CUDA when available).
    ``batch_size``: the minibatch of every step (the same batches at every width).
    ``base_width``: the width the parametrization is normalized at (default: the smallest
    of ``widths``). ``model_args``: other keywords for the factory (not the width, nor the
    depth when ``depths`` are given: the check sets them). ``task``:
    ``"classification"``, ``"regression"`` or ``"sequence"``; ``"auto"``: the data's own.
    ``width_arg``/``depth_arg``: the factory's keywords for the width and depth
    (``n_embd``, ``n_layer``) when they are not named ``width``/``depth``.
    ``embedding_init``: every embedding table's scheme at every width, before the
    parametrization (:mod:`initlab.scaling.tables`; ``"default"``: as built).
    ``progress(done, total)``: called with 0 before the first model is measured and after
    each (``total`` = depths × widths × seeds models); silent when None.
    Every user mistake raises :class:`InitlabError` before any training (a model that cannot
    run at a width in between: when met, naming it)."""
    check_progress(progress, "progress", ("done", "total"))
    settings = coord_settings(
        (widths, depths, seeds, base_width),
        param=param,
        optimizer=optimizer,
        lr=learning_rate(DEFAULT_LR.get(optimizer, 1e-3) if lr is None else lr),
        steps=whole_number("steps", steps),
        batch_size=whole_number("batch_size", batch_size),
        kwargs=dict(model_args or {}),
        embedding_init=embedding_init,
    )
    the_device = resolve_device(device)
    check_model_args(settings.kwargs, width_arg, depth_arg, bool(settings.depths))
    factory = renamed(resolve_factory(model), width_arg, depth_arg)
    check_factory(factory, depth=bool(settings.depths))
    defaulted = data is None and not (isinstance(model, str) and model in BUILT_IN)
    if data is None:
        data = DEFAULT_DATA.get(model, "digits") if isinstance(model, str) else "digits"
    dataset = load(data_spec(data), task=task)  # a name, spec, function or arrays, as compare
    settings = fit_builtin(model, settings, dataset)
    kwargs = dict(settings.kwargs) | ({"depth": settings.depths[0]} if settings.depths else {})
    factory, tables = with_tables(factory, settings.embedding_init, settings.widths[0], kwargs)
    shapes = infer_shapes(
        factory, width=settings.widths[-1], base_width=settings.base, kwargs=kwargs
    )
    check_memory(factory, settings, shapes, the_device)
    batches = batch_source(dataset.x_train, dataset.y_train, settings.batch_size, the_device)
    the_task = resolve_task(task, dataset)
    targets = (the_task, dataset.y_train, dataset.num_classes)
    try:
        caveat = check_data(factory, settings, dataset)
        before = preflight(factory, settings, batches, the_device, targets)
    except DataMismatch as exc:
        if not defaulted:
            raise
        raise InitlabError(
            f"{exc} (no data given: the check ran on digits, 8×8 images [N, 1, 8, 8] with 10 "
            f"classes; pass {option('--data', 'data=')})"
        ) from None
    notes = before.notes + seed_pooling_note(len(settings.seeds)) + ([tables] if tables else [])
    with torch.random.fork_rng(devices=rng_devices(the_device)):  # its dropout seeds
        coords = coord_data(factory, settings, batches, the_task, the_device, progress)
    roles = depth_roles(factory, settings)
    notes += [roles_note(roles)] if roles else []
    as_built = settings.param == AS_BUILT  # the law explains only a factory's own readout
    law = readout_weight_law(factory, settings.widths, kwargs, shapes) if as_built else None
    verdicts = judge(coords, settings, shapes, roles, before.attention, (before.readout, law))
    verdicts, explained = explain(verdicts, coords, settings, before.readout)
    notes += explained
    kinds = {name: s.kind for name, s in shapes.items()}
    missing = unmeasured_modules(factory, settings, coords)
    notes += unmeasured_note(missing, coords)
    judged = (not_judged(coords), blowups(coords))
    return ScalingResult(settings, coords, verdicts, kinds, notes, *judged, caveat, missing)


def explain(
    verdicts: list[Verdict], coords: pd.DataFrame, settings: CoordSettings, readout: str | None
) -> tuple[list[Verdict], list[str]]:
    """The verdicts with a rescaled readout's fits explained
    (:func:`~initlab.scaling.evidence.explain_rescaled_readout`, at the first depth), and the
    notes on every fit left unflagged for a reason: the rescaled readout, the
    random-alignment floor, muP's readout at init."""
    notes, depth = [], settings.depths[0] if settings.depths else None
    if (scale := readout_scale(coords, readout, depth)) is not None and readout is not None:
        verdicts = explain_rescaled_readout(verdicts, scale, readout, depth)
        notes.append(rescaled_note(readout, scale))
    if count := sum(v.finite_width for v in verdicts):
        notes.append(finite_width_note(count))
    if count := sum(v.explained == MUP_READOUT_INIT for v in verdicts):
        notes.append(readout_init_note(count))
    return verdicts, notes


def coord_settings(sizes: tuple[Any, Any, Any, Any], **settings: Any) -> CoordSettings:
    """:class:`CoordSettings` from the user's ``(widths, depths, seeds, base_width)`` (numpy
    integers as ints, :func:`initlab.config.plain`; ``seeds`` a count or a list, as in
    ``compare``) and the other ``settings``."""
    widths, depths, seeds, base_width = plain(list(sizes))
    return CoordSettings(
        widths=parse_sizes("widths", widths),
        seeds=seed_list(seeds),
        depths=parse_sizes("depths", depths),
        base_width=None if base_width is None else whole_number("base_width", base_width),
        **settings,
    )


def judge(
    coords: pd.DataFrame,
    settings: CoordSettings,
    shapes: Mapping[str, ParamShape],
    roles: Mapping[int, LayerRoles],
    attention: bool,
    readout: tuple[str | None, float | None] = (None, None),
) -> list[Verdict]:
    """The width and depth verdicts of ``coords`` (each family judged by Holm, fits moving
    only through the random-alignment floor explained), the flagged ones with sentences
    (tied weights named unless the model is checked as built; attention named only when the
    model has it). ``readout``: the readout module (when the forward rescales its output,
    :func:`~initlab.scaling.sentences.rescaled_readout_hint` speaks for it and the logits)
    and the law of its weights (:func:`readout_weight_law`)."""
    verdicts = explain_finite_width(width_verdicts(coords) + depth_verdicts(coords, roles))
    ties = {} if settings.param == AS_BUILT else tie_hints(shapes, settings.param)
    depth = settings.depths[0] if settings.depths else None
    ties |= rescaled_readout_hint(readout[0], readout_scale(coords, readout[0], depth))
    kinds = {name: s.kind for name, s in shapes.items()}
    verdicts = explain_readout_init(verdicts, settings.param, kinds, readout[1])
    return with_sentences(verdicts, settings.param, settings.optimizer, kinds, ties, attention)
