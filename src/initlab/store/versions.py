"""Runs trained on an older version of the user's model or data file.

A run's key (:meth:`initlab.config.RunConfig.key`) hashes its settings with the fingerprint
of its user model and data files, so editing the model starts new runs; the store keeps the
old ones too, under the same settings. Read back as they are, a group would then hold its
seeds twice (old code and new) and count them as independent seeds, narrowing every
interval. :func:`current_runs` drops a run whose key no longer matches the files as they
are now when the same settings ran again on them, and notes what it left out; a run whose
settings never ran on the current files stays, noted (running the command again refreshes
it). Runs whose files cannot be found from here (another working directory) are kept as
they are: nothing can be checked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from initlab.config import NOT_IN_KEY, RunConfig
from initlab.errors import InitlabError, option
from initlab.notes import note
from initlab.usercode.specs import is_user_spec, source_fingerprint


def current_runs(runs: pd.DataFrame, finished: frozenset[str] = frozenset()) -> pd.DataFrame:
    """``runs`` (with the store's ``config`` column) without the runs that an edited user
    file superseded (module docstring). ``finished``: the run ids the store holds finished,
    to tell a kept stale run whose current version is stored already (the file edited,
    then put back: running the study again trains nothing) from one to retrain."""
    if runs.empty or "config" not in runs:
        return runs
    checks = [_check(text) for text in runs["config"]]
    keys = pd.Series([key for key, _, _ in checks], index=runs.index)
    stale = keys.notna() & (keys != runs["run_id"])
    if not stale.any():
        return runs
    recorded = runs["sources"] if "sources" in runs else pd.Series(None, index=runs.index)
    which = changed_files(
        [(specs, sources) for (_, specs, _), sources, old in
         zip(checks, recorded, stale, strict=True) if old]
    )  # fmt: skip
    settings = pd.Series([same for _, _, same in checks], index=runs.index)
    twin = settings.isin(set(settings[~stale]))
    dropped, kept = int((stale & twin).sum()), int((stale & ~twin).sum())
    if dropped:
        note(
            f"left out {dropped} run(s) trained before {which} last changed (or keyed by an "
            "older initlab): the same settings ran again on the current version"
        )
    if kept:
        stored = sum(k in finished for k in keys[stale & ~twin])
        note(
            f"{kept} of the runs date from before {which} last changed (or were keyed by an "
            "older initlab): "
            + option(
                "run their study again (its compare/sweep command, same --out)",
                "call initlab.compare or initlab.sweep.run again with the same out=",
            )
            + _retrain(kept, stored)
        )
    return runs[~(stale & twin)]


def _retrain(kept: int, stored: int) -> str:
    """What running the study again does to ``kept`` stale runs of which ``stored`` have
    their current version in the store already (a file edited, then put back)."""
    if not stored:
        return " to retrain them on the current version"
    if stored == kept:
        return (
            " to use the runs of the current version the store already holds "
            f"(all {kept}: nothing retrains)"
        )
    return (
        f" to bring it to the current version ({stored} of them are stored already, "
        f"{kept - stored} retrain)"
    )


def older_versions(stored: pd.DataFrame, configs: Sequence[RunConfig]) -> str:
    """One line when finished runs in ``stored`` (the store's ``run_id``, ``config``,
    ``sources``) have the settings of some of ``configs`` but trained on an older version of
    their user files: those runs train again now, and the old ones are kept, not resumed
    (``""`` when there are none, or nothing to check)."""
    older = _older(stored, configs)
    if not older:
        return ""
    return (
        f"{len(older)} stored run(s) with these settings were trained before "
        f"{changed_files(older)} last changed: they train again on the current version "
        "(the old runs stay in the store, left out of its results)"
    )


def superseded(stored: pd.DataFrame, configs: Sequence[RunConfig]) -> str:
    """Reading one study (its runs' ``configs``): one line when ``stored`` runs had its
    settings on an older version of its user files. Running the study again recorded the
    new run ids, so they are no longer its runs and :func:`current_runs` never sees them
    (``""`` when there are none)."""
    older = _older(stored, configs)
    if not older:
        return ""
    return (
        f"left out {len(older)} stored run(s) with this study's settings, trained before "
        f"{changed_files(older)} last changed (or keyed by an older initlab): the same "
        "settings ran again on the current version"
    )


def _older(
    stored: pd.DataFrame, configs: Sequence[RunConfig]
) -> list[tuple[tuple[str, ...], str | None]]:
    """``(user specs, recorded sources)`` of each ``stored`` run that is none of
    ``configs`` but has the settings of one of them, keyed on older user files."""
    planned = {c.key() for c in configs}
    wanted = {_settings(c.to_dict()) for c in configs if user_specs(c.to_dict())}
    if stored.empty or not wanted:
        return []
    older = []
    for run_id, text, sources in stored[["run_id", "config", "sources"]].itertuples(index=False):
        key, specs, same = _check(text)
        if key is not None and run_id not in planned and key != run_id and same in wanted:
            older.append((specs, sources))
    return older


def changed_files(stale: list[tuple[tuple[str, ...], str | None]]) -> str:
    """The user files that changed since the ``stale`` runs trained, in words: of each run,
    its user specs and the fingerprints recorded when it trained (the store's ``sources``
    column, ``None`` for runs recorded before it existed: then any of its files may have)."""
    changed, unknown = set(), set()
    for specs, sources in stale:
        recorded = json.loads(sources) if isinstance(sources, str) else None
        if not isinstance(recorded, dict):
            unknown.update(specs)
            continue
        moved = {s for s in specs if recorded.get(s) != source_fingerprint(s)}
        changed.update(moved)
        unknown.update(() if moved else specs)  # the same files: an older initlab keyed it
    names = sorted({file_name(s) for s in changed | unknown})
    return (" or " if unknown - changed else " and ").join(names)


def file_name(spec: str) -> str:
    """``models.py`` of ``models.py:build``; a data file's path as it is."""
    return spec.rpartition(":")[0] or spec


def _check(config_json: str) -> tuple[str | None, tuple[str, ...], str]:
    """The key this run would have with its user files as they are now, their specs, and
    its settings as the key sees them (:func:`_settings`); ``(None, (), "")`` when it has no
    user file, or one of them cannot be found from here."""
    try:
        fields = json.loads(config_json)
    except ValueError:
        return None, (), ""
    specs = user_specs(fields)
    if not specs or any(source_fingerprint(s) == "missing" for s in specs):
        return None, (), ""  # (built-in models and data: nothing to parse further)
    try:
        config = RunConfig.from_dict(fields)
    except (InitlabError, TypeError, ValueError):
        return None, (), ""
    return config.key(), specs, _settings(fields)


def user_specs(fields: dict) -> tuple[str, ...]:
    """A run's user model and data specs (``module:function``, ``file.py:function``, data
    files), from its config's fields; built-in ones are left out."""
    specs = [fields.get(k) for k in ("model", "dataset")]
    return tuple(s for s in specs if isinstance(s, str) and is_user_spec(s))


def _settings(fields: dict) -> str:
    """A run's settings as its key sees them, without :data:`~initlab.config.NOT_IN_KEY`
    (a rerun on another device is the same run)."""
    return json.dumps({k: v for k, v in fields.items() if k not in NOT_IN_KEY}, sort_keys=True)
