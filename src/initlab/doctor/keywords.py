"""The keywords :func:`initlab.trials` refuses before anything loads or trains, one line each.

- Run settings the trials set themselves, which a value given would be silently dropped for
  (:data:`OVERRIDDEN`): ``epochs`` (the budget's schedule,
  :func:`initlab.doctor.trials.plan_schedule`), ``data_seed`` (the seed design,
  :meth:`initlab.doctor.trials.Design.configs`) and ``track`` (off, so the budget goes to
  training; ``track='off'`` is what they do, and passes). ``limit_train`` is honoured: the
  data is loaded with it, and the budget then trains on as many of those examples as fit.
- An unknown keyword, pointed at the trials' own where compare's names mislead
  (:data:`TRIAL_SYNONYMS`: ``seeds`` is ``trials=``, not the probe batch's ``seed``;
  ``inits`` is ``candidates=``, not the starting ``init``); other names get the closest of
  the trials' keywords and the settings they honour, as :func:`initlab.compare` does.
- Several schemes given as ``init=`` (the one the model starts from): ``candidates=``.

The trials are Python's alone (``initlab doctor --trials`` takes its own options), so the
messages name Python keywords.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from initlab.errors import InitlabError, UnknownNameError, closest_name
from initlab.setting_names import SETTINGS, is_setting

OVERRIDDEN = ("epochs", "data_seed", "track")
"""Run settings the trials set themselves (see the module docstring)."""
TRIAL_SYNONYMS = {
    **dict.fromkeys(("seeds", "n_seeds", "num_seeds", "init_seeds", "data_seeds"), "trials"),
    **dict.fromkeys(("n_trials", "num_trials", "repeats", "runs"), "trials"),
    **dict.fromkeys(("inits", "initializers", "schemes", "candidate"), "candidates"),
    **dict.fromkeys(("time", "time_budget", "seconds", "timeout", "max_time"), "budget"),
    **dict.fromkeys(("steps", "max_steps", "n_steps", "num_steps"), "budget"),
    **dict.fromkeys(("out_dir", "output", "output_dir"), "out"),
    **dict.fromkeys(("epoch", "n_epochs", "num_epochs", "max_epochs"), "epochs"),
}
"""Names for a keyword of :func:`initlab.trials` (or a setting it overrides) that compare's
settings or their spelling would point elsewhere (``seeds`` → ``seed``, ``inits`` →
``init``, ``n_epochs`` → ``on_epoch``), checked before :data:`initlab.errors.SYNONYMS`;
scoped to the trials, so compare's messages keep theirs."""


def check_trial_settings(
    settings: Mapping[str, Any], own: Sequence[str], trials: int, budget: object
) -> None:
    """Refuse (one line) an unknown keyword among ``settings`` (:func:`_unknown`), then
    every setting the trials override (:data:`OVERRIDDEN`) with why and what to do
    (``own``: the trials' own keywords; ``trials``, ``budget``: as given)."""
    for key, value in settings.items():
        if not is_setting(key):
            raise _unknown(key, value, own, trials, budget)
    given = [k for k in OVERRIDDEN if k in settings and (k, settings[k]) != ("track", "off")]
    if given:
        raise InitlabError(
            "; also ".join(_overridden(k, settings[k], trials, budget) for k in given)
        )


def _unknown(key: str, value: Any, own: Sequence[str], trials: int, budget: object) -> Exception:
    """The error for an unknown ``key``: a pointer at the trials' keyword it stands for
    (:data:`TRIAL_SYNONYMS`), why the setting it was taken for is refused (``epoch``), or
    the closest of ``own`` and the settings the trials honour."""
    meant = TRIAL_SYNONYMS.get(key) or closest_name(key, [*own, *SETTINGS])
    if meant in OVERRIDDEN:
        return InitlabError(_overridden(meant, value, trials, budget, given=key))
    if key in TRIAL_SYNONYMS:
        return InitlabError(_pointer(key, meant, value))
    honoured = [s for s in SETTINGS if s not in OVERRIDDEN]
    return UnknownNameError("setting", key, [*own, *honoured])


def _pointer(key: str, keyword: str, value: Any) -> str:
    """``unknown setting 'seeds'; did you mean 'trials'? (what trials= does, and what the
    keyword it was taken for does)``."""
    if keyword == "trials":
        n = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else "N"
        why = (
            f"trials={n} trains every candidate with {n} init seeds × {n} data-order seeds; "
            "seed is the probe batch's seed"
        )
    elif keyword == "candidates":
        names = _names(value) or ["default", "plan", "he_normal"]
        why = (
            f"candidates={names!r} lists the inits the trials train; init is the one scheme "
            "the model starts from"
        )
    elif keyword == "budget":
        why = (
            "budget is the time for all the trials ('90s', '10m' or seconds) or the steps "
            "every run trains ('2000 steps')"
        )
    else:
        why = "out is the directory the evidence is written to"
    return f"unknown setting '{key}'; did you mean '{keyword}'? ({why})"


def _names(value: Any) -> list[str] | None:
    """``value`` as a list of scheme names (a list of strings, or a comma-separated string),
    else ``None``."""
    from initlab.speclist import split_list

    if isinstance(value, str) and value.strip():
        return split_list(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _overridden(key: str, value: Any, trials: int, budget: object, given: str | None = None) -> str:
    """Why the trials drop ``key=value``, and what to do instead; ``given``: the unknown
    name the user wrote for ``key`` (``n_epochs``)."""
    name = given or key
    head = f"{key}={value!r}" if given is None else f"unknown setting '{given}' ({key}?)"
    if key == "epochs":
        return (
            f"{head}: the budget sets how long every trial trains (budget={budget!r}: as many "
            f"steps as it gives), so {name} would be dropped; leave "
            f"{name} out and give a longer or shorter budget, or a number of steps per run "
            "(budget='2000 steps')"
        )
    if key == "data_seed":
        seeds = "0" if trials == 1 else f"0 to {trials - 1}"
        return (
            f"{head}: the trials cross {trials} init seed(s) with {trials} data-order seed(s) "
            f"(data_seed {seeds}, from trials={trials}), so {name} would be dropped; leave "
            f"{name} out (trials=N sets how many data orders)"
        )
    return (
        f"{head}: the trials record no per-layer statistics (track='off'), so the budget goes "
        f"to training; leave {name} out (initlab.compare(..., track=...) records them)"
    )


def check_one_init(init: object) -> None:
    """Refuse ``init`` naming several schemes (a list, or ``"he_normal,lsuv"``): it is the
    one the model starts from; ``candidates`` lists the schemes to compare (as
    ``initlab doctor --init`` refuses a list, pointing at ``--candidates``)."""
    names = _names(init)
    if names is None or (isinstance(init, str) and len(names) == 1):
        return
    if len(names) == 1:
        raise InitlabError(f"init takes one scheme as a string, got {init!r}: init={names[0]!r}")
    raise InitlabError(
        f"init takes one scheme, the one the model starts from, got {init!r}; to compare "
        f"several, list them as candidates={names!r}"
    )
