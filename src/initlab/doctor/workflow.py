"""The doctor's path from a model to a recommendation with evidence, shared by
``initlab doctor`` and :func:`trials` (its Python form).

1. :func:`examine`: diagnose the model as it starts, :func:`~initlab.doctor.recommend` a
   scheme per layer, apply it, diagnose again (and add the depth-scaled residual rule when
   the plan alone leaves a residual stack exploding: :mod:`.residual_fix`);
2. :func:`choose_candidates`: ``auto`` or the listed candidates that build on the data;
3. :func:`~initlab.doctor.evidence.gather`: train them all with seeds crossed with data
   orders in a time budget and name a winner only when a paired test supports it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from initlab.config import RunConfig
from initlab.doctor.candidates import Candidate
from initlab.doctor.plan import Plan, recommend
from initlab.errors import InitlabError
from initlab.notes import note
from initlab.probe import Diagnosis, diagnose
from initlab.probe.batch import Probe
from initlab.usercode.specs import is_user_spec

if TYPE_CHECKING:
    from initlab.doctor.trials import Budget, Schedule

Notify = Callable[[str], None]
"""Shows one line to the user (a console's print; :func:`initlab.notes.note` in Python)."""


@dataclass
class Examination:
    """What :func:`examine` found: the plan, the model it initialized, and the diagnoses
    of the model before and after it."""

    plan: Plan
    model: nn.Module
    before: Diagnosis
    after: Diagnosis


def examine(probe: Probe, start: str, family: str, seed: int) -> Examination:
    """Diagnose ``probe``'s model built with ``start``, recommend a plan of ``family``,
    apply it from the run's ``"init"`` stream of ``seed`` and diagnose the result."""
    from initlab.doctor.residual_fix import with_residual_rule

    net = probe.build(start)
    before = diagnose(net, probe.x, probe.y, loss=probe.loss, label="as it is")
    plan = recommend(net, probe.x, family=family)  # notes frozen layers it would re-draw
    net, after = apply_plan(probe, net, plan, seed)
    plan, ruled, after = with_residual_rule(plan, after, lambda p: apply_plan(probe, None, p, seed))
    return Examination(plan, ruled if ruled is not None else net, before, after)


def apply_plan(
    probe: Probe, net: nn.Module | None, plan: Plan, seed: int
) -> tuple[nn.Module, Diagnosis]:
    """``(model, its diagnosis)``: ``plan`` applied to ``net`` (a fresh build of the
    starting model when ``None``), from the run's ``"init"`` stream."""
    from initlab.apply import initialize
    from initlab.train.seeding import make_generator

    net = probe.build(probe.config.init) if net is None else net
    net.cpu()  # the schemes draw from a CPU generator
    initialize(net, plan, data=probe.x.cpu(), generator=make_generator(seed, "init"))
    net.to(probe.device)
    return net, diagnose(net, probe.x, probe.y, loss=probe.loss, label="after the plan")


def choose_candidates(
    probe: Probe, exam: Examination, start: str, names: Sequence[str] | None, notify: Notify
) -> list[Candidate]:
    """The candidates (``names``; ``None``: ``auto``) whose models build on the data, each
    one left out told to ``notify``; fewer than two is refused
    (:func:`~initlab.doctor.candidates.check_comparison`)."""
    from initlab.doctor.candidates import (
        auto_candidates,
        buildable,
        check_comparison,
        listed_candidates,
    )

    base, net, plan = probe.config, exam.model, exam.plan
    if names is None:
        found = auto_candidates(base, net, probe.x, plan, start)
    else:
        found = listed_candidates(names, base, net, probe.x, plan, start)
    built, notes = buildable(found, base, probe.data, references=[start] if start else [])
    for line in notes:
        notify(line)
    check_comparison(built, [c.name for c in found if c not in built])
    return built


def schedule_line(schedule: Schedule, runs: int, base: RunConfig) -> str:
    """What the trials are about to train, and how long that should take."""
    return (
        f"{runs} runs × {schedule.steps} steps ({schedule.epochs} epoch(s) × "
        f"{schedule.steps_per_epoch} steps) with {base.optimizer}, lr {base.lr:g}, "
        f"batch size {base.batch_size}"
        + (f", estimated {schedule.seconds:.0f} s" if math.isfinite(schedule.seconds) else "")
    )


def reference_of(candidates: Sequence[Candidate], start: str) -> str:
    """The candidate every other is tested against: the starting init when it trains,
    else ``default`` (the model as built)."""
    return start if any(c.name == start for c in candidates) else "default"


def candidate_names(candidates: str | Sequence[str]) -> list[str] | None:
    """``"auto"`` as ``None``; a comma-separated string or a list as its names."""
    from initlab.speclist import split_list

    if isinstance(candidates, str):
        return None if candidates.strip() == "auto" else split_list(candidates)
    if not isinstance(candidates, (list, tuple)) or not all(isinstance(n, str) for n in candidates):
        raise InitlabError(
            f"candidates takes 'auto' or names, e.g. ['default', 'plan', 'he_normal']; "
            f"got {candidates!r}"
        )
    return list(candidates)


def starting_init(init: str | None, model: str | None) -> str:
    """The scheme the doctor starts from: ``init`` when given, else the model as built
    (``default``) for a user's factory and ``random_normal`` for initlab's MLP."""
    return init or ("default" if is_user_spec(model) else "random_normal")


def trial_config(
    model: Any, data: Any, model_args: Any, start: str | None, settings: dict[str, Any]
) -> tuple[RunConfig, str]:
    """The trials' base config from :func:`trials`' keywords (each setting checked as
    :func:`initlab.compare` checks it), and the starting init."""
    from initlab.config_checks import check_architecture_settings
    from initlab.sweep.python_api import target_settings
    from initlab.sweep.values import check_keyword_settings, check_setting

    check_keyword_settings(settings)
    checked = {key: check_setting(key, value) for key, value in settings.items()}
    target = target_settings(model, data, model_args, checked.pop("dataset", None))
    start = starting_init(start, target.get("model"))
    config = RunConfig(**{**checked, **target, "init": check_setting("init", start)})
    check_architecture_settings(config)  # hidden=... on a factory that builds its own layers
    return config, start


def check_budget(budget: object) -> Budget:
    """``budget``: seconds (a positive number), text such as ``"90s"``, ``"10m"`` or
    ``"2000 steps"``, or a :class:`~initlab.doctor.trials.Budget`."""
    from initlab.doctor.trials import Budget, parse_budget

    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, str):
        return parse_budget(budget)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise InitlabError(
            f"budget takes seconds (> 0) or text like '90s', '10m', '2000 steps'; got {budget!r}"
        )
    return Budget(seconds=float(budget))


def trials(
    model: Any = None,
    data: Any = None,
    *,
    trials: int = 3,
    budget: str | float | Budget = "10m",
    candidates: str | Sequence[str] = "auto",
    init: str | None = None,
    family: str = "variance",
    model_args: dict[str, Any] | None = None,
    batch: int = 512,
    seed: int = 0,
    data_dir: str | None = None,
    out: str | Path | None = None,
    on_epoch: Callable[[RunConfig, dict], None] | None = None,
    **settings: Any,
):
    """``initlab doctor --trials`` in Python: recommend a scheme per layer of ``model`` on
    ``data``, then train the candidates with ``trials`` init seeds × ``trials`` data-order
    seeds within ``budget`` (``"90s"``, ``"10m"``, or seconds; ``"2000 steps"`` per run
    trains the same schedule on any machine) and return the
    :class:`~initlab.doctor.evidence.Evidence`: ``ranked``, ``tests``, ``verdict`` (a
    ``winner`` only when the paired test supports one), ``winner``, ``plan``, ``snippet``
    (the Python that sets the winner's weights) and ``write(out)``.

    ``model``, ``data``, ``model_args``, ``device``, ``precision``, ``task`` and the other
    run settings (``optimizer``, ``lr``, ``batch_size``, ...) are :func:`initlab.compare`'s,
    but for those the trials set themselves (:data:`initlab.doctor.keywords.OVERRIDDEN`:
    ``epochs`` by ``budget``, ``data_seed`` by ``trials``, ``track``), which are refused;
    ``limit_train`` keeps that many training examples (:func:`initlab.data.load`), of which
    the budget trains on as many as fit; ``init``: the starting scheme (default: the model as built,
    ``random_normal`` for initlab's MLP; several to compare go in ``candidates``);
    ``candidates``: ``"auto"`` or names (``default``, ``plan``, ``plan+<rule>``,
    ``orthogonal_plan``, any initializer); ``trials``: the number of init seeds and of
    data-order seeds (``seed``: the probe batch's); ``batch``: the probe batch's size;
    ``family``: the plan's family, as :func:`initlab.recommend` takes it (``"variance"``:
    a variance-scaling scheme per activation, He's Var(W) = 2/fan_in after a ReLU;
    ``"orthogonal"``: ``orthogonal(gain=g)``, ``delta_orthogonal(gain=g)`` for
    convolutions, with the activation's gain g); ``data_dir``: where to look for dataset
    files first, as in :func:`initlab.compare` (:func:`initlab.data.load`);
    ``on_epoch(config, record)``: called after every epoch of every trial run with its
    :class:`~initlab.config.RunConfig` and the epoch's record (``epoch``, ``train_loss``,
    ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``);
    ``out``: a directory for ``recommendation.json``, ``trials.csv``, ``curves.png`` and
    ``init_snippet.py``, written all or nothing (a set of an earlier run there is
    replaced whole). Every mistake raises :class:`~initlab.errors.InitlabError` before
    anything trains, ``out`` included (a file in the way, a directory that cannot be
    written, a directory or a read-only file where one of the four goes). Should writing
    fail after training all the same (a full disk), a note says why and the evidence is
    returned (``evidence.write(DIR)`` writes it elsewhere). The trials never look at the
    test set.
    """
    from initlab.arguments import check_out, check_progress
    from initlab.atomic_files import check_output_dir, write_error
    from initlab.doctor.candidates import check_listed
    from initlab.doctor.evidence import EVIDENCE_FILES, gather, snippet_source
    from initlab.doctor.keywords import check_one_init, check_trial_settings
    from initlab.doctor.trials import Design
    from initlab.probe.batch import prepare_probe

    design = Design.square(trials)
    check_progress(on_epoch, "on_epoch", ("config", "epoch_record"))
    check_out(out)
    check_trial_settings(settings, TRIAL_KEYWORDS, trials, budget)
    check_one_init(init)
    spend = check_budget(budget)
    names = candidate_names(candidates)
    check_output_dir(None if out is None else Path(out), "--out", EVIDENCE_FILES)
    base, start = trial_config(model, data, model_args, init, {**settings, "seed": seed})
    if names is not None:
        check_listed(names, start)
    probe = prepare_probe(base, batch, data_dir, trains=True)
    exam = examine(probe, start, family, seed)
    found = choose_candidates(probe, exam, start, names, note)
    evidence = gather(
        found, base, probe.data, design, spend, reference=reference_of(found, start),
        on_schedule=lambda schedule, runs: note(schedule_line(schedule, runs, base)),
        on_epoch=on_epoch, out=out,
    )  # fmt: skip
    evidence.plan, evidence.snippet = exam.plan, snippet_source(evidence, base, probe.data)
    if out is not None:
        try:
            evidence.write(out)
        except (OSError, InitlabError) as exc:  # after training: return the evidence
            why = write_error(exc) if isinstance(exc, OSError) else exc
            note(f"{why}; the evidence is returned: evidence.write(DIR) writes it")
    return evidence


TRIAL_KEYWORDS = tuple(k for k in inspect.signature(trials).parameters if k != "settings")
"""The keywords of :func:`trials` itself (an unknown one is told the closest of these first)."""
