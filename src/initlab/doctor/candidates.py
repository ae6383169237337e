"""The candidates the doctor's trials compare, each expressed as settings of a run.

A :class:`Candidate` is a name and the :class:`~initlab.config.RunConfig` fields that make
its initialization (``init``, ``output_init``, ``residual_init``, or a model wrapped by
:func:`planned_model`), so every candidate trains through the one engine like any run.

``auto`` picks from the model's structure and activations:

- ``default``: the model as its factory built it (PyTorch's own init);
- the user's starting init (``--init``), when one was given;
- ``plan``: the doctor's analytic per-layer plan (:func:`initlab.doctor.recommend`);
- the variance-scaling preset that fits the most common activation (He for the ReLU family,
  Glorot for tanh/sigmoid, LeCun for SELU), applied to every hidden layer;
- ``orthogonal_plan``: the orthogonal-family plan (per-layer gains, delta-orthogonal
  convolutions; ``orthogonal`` alone is the initializer, as everywhere else);
- ``lsuv``: orthonormal start, then every layer's output variance fixed on a data batch;
- ``plan+<rule>`` for each residual rule that adds no parameters (``skipinit`` and ``fixup``
  add gates and biases, which change the model the snippet is made for), when the model has
  residual branches.

A plan whose hidden layers share one scheme becomes ``init`` + ``output_init``; any other
plan is applied by :func:`planned_model`, a factory that builds the user's model and
initializes it layer by layer (from the run's ``"construct"`` random stream, under which
:func:`initlab.train.build.build_architecture` calls every factory).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn

from initlab.apply import initialize
from initlab.config import RunConfig
from initlab.coverage import initializable_layers, weight_layers
from initlab.data.dataset import first_look
from initlab.doctor.plan import COMPOUND_ACTIVATIONS, GLOROT_FAMILY, HE_FAMILY, Plan, plan_for
from initlab.errors import InitlabError, UnknownNameError, option
from initlab.layer_order import output_layer_name
from initlab.residual import ADDS_PARAMETERS, RESIDUAL_RULES, canonical_rule, find_structure
from initlab.residual.structure import Branch, Structure
from initlab.train.build import INIT_BATCH  # LSUV entries of a plan see what runs see
from initlab.usercode.specs import is_user_spec

PLANNED = "initlab.doctor.candidates:planned_model"
"""The factory spec that applies a per-layer plan to a user's model."""
DEFAULT = "default"
WHY_DEFAULT = "the model as built (its own init; PyTorch's defaults where it sets none)"
"""Why ``default`` is a candidate: the reference every other init must beat."""
ORTHOGONAL_PLAN = "orthogonal_plan"
NAMED = (DEFAULT, "plan", ORTHOGONAL_PLAN)
"""Candidate names of ``--candidates`` that are not initializer specs."""
PLAN_WITH = "plan+"
"""``plan+<rule>``: the plan, then a residual rule (as ``auto`` names its candidates)."""
AUTO = "default, your {init} if given, plan, the activation's preset, orthogonal_plan, lsuv"
"""What ``--candidates auto`` (the default) trains, in words (``{init}``: the option that
gives a starting init, `auto_in_words`)."""


def auto_in_words() -> str:
    """:data:`AUTO` naming the starting init as the user's surface does (``--init``)."""
    return AUTO.format(init=option("--init"))


@dataclass(frozen=True)
class Candidate:
    """One initialization under trial: ``settings`` are the run fields that make it;
    ``schemes`` maps each Linear/Conv layer to its scheme (for the snippet)."""

    name: str
    settings: dict[str, Any]
    schemes: dict[str, str] = field(default_factory=dict)
    why: str = ""

    def config(self, base: RunConfig) -> RunConfig:
        return base.replace(**self.settings)


def family_scheme(activation: str) -> str | None:
    """The variance-scaling preset for ``activation`` (None when no preset fits)."""
    if activation in ("relu", "leaky_relu", *HE_FAMILY):
        return "he_normal"
    if activation in GLOROT_FAMILY:
        return "glorot_normal"
    if activation == "selu":
        return "lecun_normal"
    return None


def plan_candidate(name: str, plan: Plan, base: RunConfig, why: str) -> Candidate:
    """``plan`` as run settings: ``init``/``output_init`` when the hidden layers (RNNs and
    attention included) share a scheme and none is drawn per row span (a fused projection,
    :meth:`Plan.specs`), else the user's model wrapped by
    :func:`planned_model`; with the plan's residual rule (``residual_init``). The output
    layer is ``plan.output`` (else the last Linear/Conv entry)."""
    schemes = plan.specs()  # a fused projection's spans written in: drawn per span
    output = next(
        (
            e
            for e in reversed(plan.entries)
            if (e.layer == plan.output if plan.output else e.activation not in COMPOUND_ACTIVATIONS)
        ),
        None,
    )
    hidden = {e.scheme for e in plan.entries if e is not output}
    last = output.scheme if output is not None else None
    ruled = {"residual_init": plan.residual_rule} if plan.residual_rule != "none" else {}
    if len(hidden) <= 1 and last is not None and not plan.spans:
        init = hidden.pop() if hidden else last
        return Candidate(name, {"init": init, "output_init": last, **ruled}, schemes, why)
    if not is_user_spec(base.model):
        raise InitlabError(f"cannot train the {name} of a built-in {base.model}: its layers differ")
    args = {
        "spec": base.model,
        "args": json.dumps(base.model_args, sort_keys=True),
        "plan": json.dumps(schemes),
        "data": base.dataset if plan.needs_data else "",
        "task": base.task,
    }
    tables = {}
    if base.embedding_init != DEFAULT:  # drawn with the plan: before its LSUV layers
        args["tables"], tables = base.embedding_init, {"embedding_init": DEFAULT}
    settings = {"model": PLANNED, "model_args": args, "init": DEFAULT, **ruled, **tables}
    return Candidate(name, settings, schemes, why)


def planned_model(
    spec: str, args: str, plan: str, data: str = "", task: str = "auto", tables: str = DEFAULT
) -> nn.Module:
    """The model ``spec(**json.loads(args))`` initialized by the per-layer ``plan`` (JSON
    ``{layer: scheme}``) from the global random state, its embedding tables by ``tables``
    (the trials' ``embedding_init``, drawn before any LSUV layer measures the forward);
    LSUV layers see :data:`INIT_BATCH` training examples of ``data``, as runs do
    (:func:`first_look`)."""
    from initlab.models import build_user_model

    model = build_user_model(spec, json.loads(args), checked=False)
    batch = _first_batch(data, task) if data else None
    initialize(model, json.loads(plan), data=batch, embedding_init=tables)
    return model


@lru_cache(maxsize=4)
def _first_batch(data: str, task: str) -> Tensor:
    from initlab.data import load

    return first_look(load(data, task=task), INIT_BATCH)[0]


def auto_candidates(
    base: RunConfig, model: nn.Module, inputs: Tensor, plan: Plan, start: str | None
) -> list[Candidate]:
    """The ``auto`` candidates for ``model`` (see the module docstring), de-duplicated by
    their settings (the first name wins)."""
    found = [
        Candidate(DEFAULT, {"init": DEFAULT}, why=WHY_DEFAULT),
    ]
    if start and start != DEFAULT:
        found.append(
            Candidate(start, {"init": start}, why=f"your starting init ({option('--init')})")
        )
    planned = plan_candidate("plan", plan, base, "the doctor's analytic plan")
    found.append(planned)
    common = Counter(e.activation for e in plan.entries[:-1]).most_common(1)
    preset = family_scheme(common[0][0]) if common else None
    if preset:
        found.append(
            Candidate(preset, {"init": preset}, why=f"the preset for {common[0][0]} layers")
        )
    ortho = plan_for(model, inputs, "orthogonal")
    found.append(plan_candidate(ORTHOGONAL_PLAN, ortho, base, "orthogonal, per-layer gains"))
    found.append(Candidate("lsuv", {"init": "lsuv"}, why="LSUV: variances fixed on data"))
    for rule in residual_rules(plan.residual or find_structure(model, inputs)):
        settings = {**planned.settings, "residual_init": rule}
        why = f"the plan, residual {rule}"
        found.append(Candidate(f"plan+{rule}", settings, dict(planned.schemes), why))
    return unique(found, base)


def residual_rules(structure: Structure) -> list[str]:
    """The residual rules worth a trial on a model of this residual ``structure``: those
    that add no parameters and that change something (none without branches;
    ``zero_last_norm`` only where a branch ends in a norm, which a pre-norm transformer's
    do not; ``depth_scaled`` not where every branch does: the norm undoes its scaling in
    training, so its trial would train the plan again; a zero rule not where a ReLU follows
    the module it zeroes in every branch, which it then leaves as drawn: zeroed, relu(0) = 0
    and relu'(0) = 0 would never train; ``Branch.dead_if_zeroed``)."""
    branches = structure.branches
    rules = [r for r in RESIDUAL_RULES[1:] if r not in ADDS_PARAMETERS and branches]
    skipped = {"depth_scaled"} if all(b.last_norm for b in branches) else set()
    if not any(_zeroable(b, b.layers[-1]) for b in branches):
        skipped.add("zero_last_layer")
    if not any(_zeroable(b, b.last_norm) for b in branches):
        skipped.add("zero_last_norm")
    return [r for r in rules if r not in skipped]


def _zeroable(branch: Branch, module: str | None) -> bool:
    """Whether a zero rule zeroes ``module`` of ``branch``: there is one, and no ReLU follows
    it inside the branch (:attr:`~initlab.residual.structure.Branch.dead_if_zeroed`)."""
    return module is not None and module not in branch.dead_if_zeroed


def listed_candidates(
    names: Sequence[str],
    base: RunConfig,
    model: nn.Module,
    inputs: Tensor,
    plan: Plan,
    start: str | None = None,
) -> list[Candidate]:
    """Candidates named by the user: ``default``, ``plan``, ``plan+<rule>``,
    ``orthogonal_plan`` (the family plan) or any init spec; ``default`` and the starting
    init are always included (the references)."""
    found = [Candidate(DEFAULT, {"init": DEFAULT}, why=WHY_DEFAULT)]
    if start and start != DEFAULT:
        found.append(
            Candidate(start, {"init": start}, why=f"your starting init ({option('--init')})")
        )
    for name in names:
        if name == "plan":
            found.append(plan_candidate("plan", plan, base, "the doctor's analytic plan"))
        elif name.startswith(PLAN_WITH):
            planned = plan_candidate("plan", plan, base, "the doctor's analytic plan")
            rule = canonical_rule(name.removeprefix(PLAN_WITH))
            settings = {**planned.settings, "residual_init": rule}
            why = f"the plan, residual {rule}"
            found.append(Candidate(f"{PLAN_WITH}{rule}", settings, dict(planned.schemes), why))
        elif name == ORTHOGONAL_PLAN:
            ortho = plan_for(model, inputs, "orthogonal")
            found.append(plan_candidate(name, ortho, base, "orthogonal, per-layer gains"))
        elif name != DEFAULT:
            found.append(Candidate(name, {"init": name}, why="listed"))
    return unique(found, base, said=True)


def check_listed(names: Sequence[str], start: str | None = None) -> list[str]:
    """``--candidates`` checked before anything is built or trained: each name is
    ``default``, ``plan``, ``plan+<rule>`` (:func:`_check_plan_rule`), ``orthogonal_plan``
    or an initializer spec (an unknown one is refused with the closest valid name), and
    with the references (``default`` and the starting
    init, always trained) they make at least two distinct candidates. Returns the names
    in order, duplicates dropped."""
    from initlab.initializers import names as init_names
    from initlab.initializers import parse

    for name in names:
        if name in NAMED:
            continue
        if name.startswith(PLAN_WITH):
            _check_plan_rule(name.removeprefix(PLAN_WITH))
            continue
        try:
            parse(name)
        except UnknownNameError:
            raise UnknownNameError("candidate", name, {*NAMED, *init_names()}) from None
        except InitlabError as err:
            raise InitlabError(f"{option('--candidates')}: {err}") from None
    listed = list(dict.fromkeys(names))
    every = list(dict.fromkeys([DEFAULT, *([start] if start else []), *listed]))
    if len(every) < 2:
        given = option(f"--candidates {','.join(listed)}", f"candidates={listed!r}")
        example = option(f"--candidates {DEFAULT},plan", f"candidates=['{DEFAULT}', 'plan']")
        raise InitlabError(
            f"{given} leaves only {every[0]} to train: a comparison needs at least two "
            f"candidates; add one (e.g. {example}) or leave {option('--candidates')} out "
            f"(auto: {auto_in_words()})"
        )
    return listed


def _check_plan_rule(rule: str) -> None:
    """``plan+<rule>``'s rule: a residual rule (the closest named otherwise) that adds no
    parameters (``skipinit`` and ``fixup`` add gates and biases: the snippet's model would
    not be the user's)."""
    canonical = canonical_rule(rule)  # UnknownNameError with the closest rule
    if canonical in ADDS_PARAMETERS or canonical == "none":
        usable = [r for r in RESIDUAL_RULES[1:] if r not in ADDS_PARAMETERS]
        given = option(f"--candidates plan+{rule}", f"candidates=['plan+{rule}']")
        compare = option(
            f"compare --residual-init {canonical}", f"compare(residual_init={canonical!r})"
        )
        raise InitlabError(
            f"{given}: the trials take plan+ with a rule that adds no parameters "
            f"({', '.join(usable)}); {compare} tries it"
        )


def check_comparison(found: Sequence[Candidate], left_out: Sequence[str] = ()) -> None:
    """Refuse (before training) trials with fewer than two distinct candidates left:
    ``left_out`` names those that could not be built; any other was the same run as one
    kept."""
    if len(found) >= 2:
        return
    left = found[0].name if found else "none"
    why = f"{', '.join(left_out)} could not be built" if left_out else "the others are the same run"
    raise InitlabError(
        f"only {left} is left to train ({why}): a comparison needs at least two "
        f"candidates; list others with {option('--candidates')} (auto: {auto_in_words()})"
    )


def unique(candidates: Sequence[Candidate], base: RunConfig, said: bool = False) -> list[Candidate]:
    """The first candidate of each distinct run (``base`` with its settings), in order;
    ``said``: a note for each one dropped under another name (names the user listed: one
    missing from the ranking without a word looked lost)."""
    from initlab.notes import note

    seen: dict[str, Candidate] = {}
    for c in candidates:
        kept = seen.setdefault(c.config(base).key(), c)
        if said and kept is not c and kept.name != c.name:  # --init X --candidates X: no news
            note(f"{c.name} is the same run as {kept.name} here: trained once, as {kept.name}")
    return list(seen.values())


def layer_schemes(
    candidate: Candidate, model: nn.Module, base: RunConfig, example: Tensor | None = None
) -> dict[str, str]:
    """Each weight layer's scheme under ``candidate`` (a plan's, or ``init`` for the hidden
    layers, RNNs and attention and ``output_init`` for the output layer, found as the
    trials' :func:`initlab.initialize` found it, with the ``example`` batch it got)."""
    if candidate.schemes:
        return dict(candidate.schemes)
    layers = [name for name, _ in initializable_layers(model)]
    every = [name for name, _ in weight_layers(model)]
    init = candidate.settings.get("init", DEFAULT)
    out = candidate.settings.get("output_init", base.output_init)
    if init == DEFAULT:
        return dict.fromkeys(every, DEFAULT)
    schemes = dict.fromkeys(every, init)
    if layers and out is not None and out != "keep":
        schemes[output_layer_name(model, example)] = out
    return schemes


def buildable(
    candidates: Sequence[Candidate], base: RunConfig, data, references: Sequence[str] = ()
) -> tuple[list[Candidate], list[str]]:
    """The candidates whose model builds and initializes on ``data`` (seed 0) into weights
    no earlier candidate already gave, and one note per candidate left out, saying why (e.g.
    LSUV on a layer no forward pass reaches, or ``plan+depth_scaled`` at one residual branch,
    which scales by 1/√1 and is ``plan`` again: training it twice would only spend budget).
    ``default`` and the ``references`` are always kept when they build."""
    from initlab.train.build import build_initialized_model

    kept, notes, built = [], [], []
    for c in candidates:
        try:
            model = build_initialized_model(
                c.config(base), data.input_shape, data.num_classes, data=data
            )
        except InitlabError as err:
            if c.name == DEFAULT:
                raise
            notes.append(f"{c.name} left out: {err}")
            continue
        state = model.state_dict()
        same = next((k.name for k, other in built if _same_state(state, other)), None)
        if same is not None and c.name not in (DEFAULT, *references):
            notes.append(f"{c.name} left out: on this model it gives the same weights as {same}")
            continue
        kept.append(c)
        built.append((c, state))
    return kept, notes


def _same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """Whether two models' parameters and buffers are the same (names, shapes, values):
    the same code path from the same seed gives the same bits."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a
    )
