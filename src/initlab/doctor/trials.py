"""Short trials: every candidate × init seeds × data-order seeds, trained many-at-once to fit
a time budget.

**Design.** ``--trials N`` trains each candidate with ``N`` init seeds crossed with ``N``
data-order seeds (``seed = i``, ``data_seed = j``): ``N²`` runs per candidate, all through
:func:`initlab.train.train_configs` (one stack per group of configs that can share one).
Run (i, j) of every candidate sees the same data order and draws from the same seed, so
candidates are compared *paired* by (i, j).

**Budget.** A timing trial trains every stack for ``1 +`` :data:`WARM_EPOCHS` epochs of
:data:`TIMING_STEPS` steps: the fastest warm epoch gives ``s``, the seconds per step of all
stacks together (a validation pass included), and the rest of its wall time ``f``
(building, initializing, first calls, the engine's choice of strategy, the final pass) is a
fixed cost.
``S = floor((budget - t - f) / s)`` steps per run, ``t`` the timing trial's own time (the
budget is for all of it); a budget below ``t + f + 10 s`` cannot give every candidate the
:data:`MIN_TRIAL_STEPS` steps that measure training rather than the loss at init, and is
refused, naming that minimum. A budget in steps (``--budget 2000steps``) gives ``S`` itself,
times nothing, and trains the same schedule on any machine. The ``S`` steps are cut
into ``E = clamp(S // TIMING_STEPS, 1, MAX_POINTS)`` epochs (the points of the loss curve) of
``P = ceil(S / E)`` steps over the first ``P × batch`` training examples (all of them, and
more epochs, when the training set is smaller): validation after each epoch costs no more per
step than in the timing trial as long as ``P >= TIMING_STEPS``.

The trials choose an initialization, so they never look at the test set: their test split is
a single validation example.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NoReturn

from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.data.dataset import sample_rows
from initlab.doctor.candidates import Candidate
from initlab.errors import InitlabError, option
from initlab.notes import note
from initlab.train import group_configs, train_configs
from initlab.train.result import RunResult
from initlab.train.schedule import steps_per_epoch

TIMING_STEPS = 4
WARM_EPOCHS = 2
"""Epochs timed after the first (which pays for first calls); ``s`` comes from the fastest:
a timed epoch of 16 small models lasts about 11 ms, so one pause of a busy machine in a
single timed epoch made ``s`` 30× too high and the trials 45 steps instead of 1,800."""
MAX_POINTS = 10
"""At most this many points (epochs) on each loss curve."""
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|steps?)?\s*$", re.IGNORECASE)

EpochHook = Callable[[RunConfig, dict], None]


@dataclass(frozen=True)
class Budget:
    """What the trials may spend: ``seconds`` of wall time for all of them (the timing trial
    included), fitted to this machine's speed, or a fixed number of ``steps`` per run, which
    trains the same schedule on any machine (reproducible evidence; no timing trial)."""

    seconds: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.steps is None):
            raise InitlabError(
                f"Budget takes seconds or steps, exactly one of them; got {self.seconds=}, "
                f"{self.steps=}"
            )
        if self.steps is not None:
            whole = isinstance(self.steps, int) and not isinstance(self.steps, bool)
            steps_count(self.steps if whole else -1, given=self.steps)
        elif isinstance(self.seconds, bool) or not (
            isinstance(self.seconds, (int, float)) and 0 < self.seconds < math.inf
        ):
            raise InitlabError(f"Budget(seconds=...) takes a positive number; got {self.seconds!r}")

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.seconds:g}s"


def parse_budget(text: str) -> Budget:
    """``"90"``/``"90s"`` → 90 s, ``"10m"`` → 600 s, ``"1.5h"`` → 5400 s; ``"2000 steps"``
    → 2,000 steps per run (at least :data:`MIN_TRIAL_STEPS`)."""
    match = _BUDGET.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise InitlabError(
            f"{option('--budget')} takes a positive time such as 90s, 10m or 1h, or a number "
            f"of training steps per run such as '2000 steps'; got '{text}'"
        )
    unit = (match.group(2) or "s").lower()
    if unit.startswith("step"):
        return check_steps(match.group(1), given=text)
    factor = {"m": 60, "min": 60, "h": 3600}.get(unit, 1)
    return Budget(seconds=float(match.group(1)) * factor)


def check_steps(steps: object, given: object = None) -> Budget:
    """A budget of ``steps`` training steps per run (:func:`steps_count`)."""
    return Budget(steps=steps_count(steps, given))


def steps_count(steps: object, given: object = None) -> int:
    """``steps`` as a whole number of at least :data:`MIN_TRIAL_STEPS`, else one line
    (``given``: the text it came from, for the message)."""
    whole = isinstance(steps, int) and not isinstance(steps, bool)
    try:
        count = steps if whole else int(str(steps))
    except ValueError:
        count = 0
    if count < MIN_TRIAL_STEPS:
        raise InitlabError(
            f"{option('--budget')} in steps takes a whole number of at least "
            f"{MIN_TRIAL_STEPS} (fewer measure the loss at init, not training); "
            f"got '{steps if given is None else given}'"
        )
    return count


MIN_TRIAL_STEPS = 10
"""The fewest steps a trial trains: after one or two, a candidate's loss is mostly its loss
at init (a real one named LSUV the winner "after 1 steps", on one batch for every data
order)."""
MAX_TRIALS = 100
"""The most seeds ``--trials`` takes: 100 × 100 runs per candidate (``10**9`` filled memory)."""
MIN_TESTED_SEEDS = 3
"""Fewer init seeds than this leave the doctor's test (:mod:`initlab.doctor.crossed`)
one degree of freedom or none: a t critical value of 12.7 at 5%."""


@dataclass(frozen=True)
class Design:
    """Init seeds crossed with data-order seeds."""

    init_seeds: tuple[int, ...]
    data_seeds: tuple[int, ...]

    @classmethod
    def square(cls, trials: int) -> Design:
        """``trials`` init seeds × ``trials`` data-order seeds (1 <= ``trials`` <=
        :data:`MAX_TRIALS`)."""
        if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
            raise InitlabError(
                f"{option('--trials')} must be a number of seeds in [1, {MAX_TRIALS}] (N init "
                f"seeds x N data orders: N² runs per candidate), got {trials}"
            )
        return cls(tuple(range(trials)), tuple(range(trials)))

    def note_if_untestable(self) -> None:
        """A note when fewer than :data:`MIN_TESTED_SEEDS` init seeds leave the test no power."""
        n = len(self.init_seeds)
        if n < MIN_TESTED_SEEDS:
            note(
                f"{option(f'--trials {n}')}: {n} init seed(s) leave the paired test about "
                f"{max(n - 1, 0)} degree(s) of freedom, so only an enormous gain can be "
                f"confirmed and the reference is likely kept; use "
                f"{option(f'--trials {MIN_TESTED_SEEDS}')} or more for a verdict"
            )

    @property
    def runs(self) -> int:
        return len(self.init_seeds) * len(self.data_seeds)

    def configs(self, candidates: Sequence[Candidate], base: RunConfig) -> list[RunConfig]:
        """Candidate-major: every (init seed, data seed) of the first candidate, then..."""
        return [
            c.config(base).replace(seed=i, data_seed=j)
            for c in candidates
            for i in self.init_seeds
            for j in self.data_seeds
        ]


@dataclass(frozen=True)
class Schedule:
    """How long each run trains: ``epochs`` × ``steps_per_epoch`` steps."""

    epochs: int
    steps_per_epoch: int
    limit_train: int | None
    seconds_per_step: float
    fixed_seconds: float

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def seconds(self) -> float:
        """The estimated wall time of the trials: ``f + S·s`` (NaN for a budget in steps,
        which times nothing)."""
        return self.fixed_seconds + self.steps * self.seconds_per_step

    def settings(self) -> dict:
        return {"epochs": self.epochs, "limit_train": self.limit_train, "track": "off"}


def trial_data(data: Dataset, limit: int | None) -> Dataset:
    """``data`` with ``limit`` of its training examples (a seeded, class-balanced sample:
    :func:`~initlab.data.dataset.sample_rows`; the first ones of a file sorted by label were
    one class) and a one-example test split."""
    if len(data.y_val) == 0:
        raise InitlabError(
            "the trials rank candidates by validation loss: give the data a validation "
            "split (val_size > 0)"
        )
    rows = sample_rows(data.y_train, len(data.y_train) if limit is None else limit, data.task)
    return replace(
        data,
        x_train=data.x_train[rows],
        y_train=data.y_train[rows],
        x_test=data.x_val[:1],
        y_test=data.y_val[:1],
    )


def time_trial(
    configs: Sequence[RunConfig], data: Dataset, budget: float | None = None
) -> tuple[float, float]:
    """``(s, f)``: seconds per step of all stacks together and the fixed cost (see the
    module docstring), from ``1 +`` :data:`WARM_EPOCHS` epochs of :data:`TIMING_STEPS` steps
    of every stack: ``s`` from the fastest warm epoch (the first also pays for first calls
    and for the engine's choice of strategy, which timed the stack against its models one at
    a time: counted as step time, that made ``s`` up to 9× too high and the trials a ninth
    of the budget).

    ``budget``: refused as soon as timing alone has used it up, or two or more stacks timed
    so far (the first also pays for first calls) project a need above
    :data:`EARLY_REFUSAL` times it, naming that need (the rest are not timed: a 90 s budget
    that needed 148 s was refused after 92 s of timing)."""
    batch = configs[0].batch_size
    limit = TIMING_STEPS * batch
    short = [c.replace(epochs=1 + WARM_EPOCHS, limit_train=limit, track="off") for c in configs]
    small = trial_data(data, limit)
    groups = group_configs(short)
    step = fixed = 0.0
    started = time.perf_counter()
    timed: list[RunResult] = []
    costs: list[float] = []  # each stack's timing + fixed cost + MIN_TRIAL_STEPS steps
    for done, group in enumerate(groups, 1):
        t0 = time.perf_counter()
        results = train_configs(group, small)
        wall = time.perf_counter() - t0
        timed += results
        ran = max((len(r.epochs) for r in results), default=0) or 1 + WARM_EPOCHS
        warm = [min(e["seconds"] for e in r.epochs[1:]) for r in results if len(r.epochs) > 1]
        epoch = min(max(warm, default=wall / ran) * len(group), wall / ran)
        step += epoch / TIMING_STEPS
        fixed += wall - ran * epoch
        costs.append(wall + (wall - ran * epoch) + MIN_TRIAL_STEPS * epoch / TIMING_STEPS)
        spent = time.perf_counter() - started
        least = len(groups) / done * (spent + fixed + MIN_TRIAL_STEPS * step)
        if done >= 2:  # the rest projected from the warm stacks: the first pays first calls
            least = sum(costs) + (len(groups) - done) * sum(costs[1:]) / (done - 1)
        hopeless = done >= 2 and budget is not None and least > budget * EARLY_REFUSAL
        if budget is not None and (spent >= budget or hopeless):
            too_small(budget, least, f"{done} of {len(groups)}", spent >= budget)
    _refuse_if_all_failed(timed)
    return step, fixed


def _refuse_if_all_failed(results: Sequence[RunResult]) -> None:
    """One line, before the budget is spent on runs that would all fail, when every run of
    the timing trial failed (the model raised in a training step); a candidate whose runs
    alone failed is trained and judged with the others (as failed)."""
    if results and all(r.status == "failed" for r in results):
        raise InitlabError(
            f"every trial run failed in the timing trial, before any budget was spent: "
            f"{results[0].message or 'no message'}"
        )


BUDGET_MARGIN = 1.5
"""The budget a refusal suggests is the minimum it measured times this, rounded up to 10 s:
the timing trial's own time varies from run to run (a busy machine, first calls), and a
user who gave exactly the minimum was refused again."""


EARLY_REFUSAL = 1.25
"""The timing trial stops once the stacks timed so far project a need above this times the
budget: clearly too small, whatever the rest's noise."""


def too_small(budget: float, least: float, timed: str = "", used_up: bool = True) -> NoReturn:
    """Refuse ``budget``, naming the ``least`` seconds the trials need here and a budget
    with room for the timing's noise (:data:`BUDGET_MARGIN`); ``timed``: how many stacks
    the timing trial had timed (``used_up``: when they took all of the budget)."""
    least = math.ceil(least)
    room = 10 * math.ceil(least * BUDGET_MARGIN / 10)
    took = "already took all of it" if used_up else "project more than it"
    where = f" (timing {timed} stacks of models {took})" if timed else ""
    raise InitlabError(
        f"a budget of {budget:g}s is too small for {MIN_TRIAL_STEPS} training steps per "
        f"candidate{where} (fewer measure the loss at init, not training): the trials need "
        f"at least about {least}s here, and the timing varies: give "
        f"{option(f'--budget {room}s')}"
    )


def plan_schedule(
    budget: float, step: float, fixed: float, n_train: int, batch: int, spent: float = 0.0
) -> Schedule:
    """The schedule that fits what is left of ``budget`` seconds after ``spent`` (the timing
    trial's own time: the budget is for all of it); refuses a budget below
    ``spent + fixed + step`` with that minimum (module docstring)."""
    steps = math.floor((budget - spent - fixed) / step) if step > 0 else 0
    if steps < MIN_TRIAL_STEPS:
        too_small(budget, spent + fixed + MIN_TRIAL_STEPS * step)
    return cut_schedule(steps, n_train, batch, step, fixed)


def cut_schedule(
    steps: int, n_train: int, batch: int, step: float = math.nan, fixed: float = math.nan
) -> Schedule:
    """``steps`` (at least :data:`MIN_TRIAL_STEPS`) cut into epochs as the module docstring
    says; ``step`` and ``fixed``: the timing trial's seconds, NaN for a budget in steps,
    whose epochs are the count from half the usual one up to it that overshoots the budget
    least (2,000 steps: 10 × 200; 1,999: 10 × 200; 37: 8 × 5), more epochs on a tie."""
    epochs = min(max(steps // TIMING_STEPS, 1), MAX_POINTS)
    full = steps_per_epoch(n_train, batch)
    if math.isnan(step):  # among the counts whose epochs stay below one pass
        counts = range(math.ceil(epochs / 2), epochs + 1)
        counts = [e for e in counts if math.ceil(steps / e) < full]
        epochs = min(counts, key=lambda e: (e * math.ceil(steps / e), -e), default=epochs)
    if math.ceil(steps / epochs) >= full:  # whole passes, enough of them for the fewest steps
        return Schedule(
            max(steps // full, math.ceil(MIN_TRIAL_STEPS / full)), full, None, step, fixed
        )
    per_epoch = math.ceil(steps / epochs)
    return Schedule(epochs, per_epoch, per_epoch * batch, step, fixed)


def run_trials(
    configs: Sequence[RunConfig], data: Dataset, on_epoch: EpochHook | None = None
) -> list[RunResult]:
    """Train ``configs`` (one group after the other, many models per stack); one result
    per config, in order."""
    limit = configs[0].limit_train
    small = trial_data(data, limit)
    by_key = {}
    for group in group_configs(configs):
        results = train_configs(group, small, on_epoch=on_epoch)
        by_key.update({id(c): r for c, r in zip(group, results, strict=True)})
    return [by_key[id(c)] for c in configs]
