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

import pandas as pd

from initlab.config import NOT_IN_KEY, RunConfig
from initlab.errors import InitlabError
from initlab.notes import note
from initlab.usercode import is_user_spec, source_fingerprint


def current_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (with the store's ``config`` column) without the runs that an edited user
    file superseded (module docstring)."""
    if runs.empty or "config" not in runs:
        return runs
    checks = [_check(text) for text in runs["config"]]
    keys = pd.Series([key for key, _, _ in checks], index=runs.index)
    stale = keys.notna() & (keys != runs["run_id"])
    if not stale.any():
        return runs
    files = sorted({f for (_, names, _), old in zip(checks, stale, strict=True) if old
                    for f in names})  # fmt: skip
    settings = pd.Series([same for _, _, same in checks], index=runs.index)
    twin = settings.isin(set(settings[~stale]))
    dropped, kept = int((stale & twin).sum()), int((stale & ~twin).sum())
    which = " and ".join(files)
    if dropped:
        note(
            f"left out {dropped} run(s) trained before {which} last changed (or keyed by an "
            "older initlab): the same settings ran again on the current version"
        )
    if kept:
        note(
            f"{kept} run(s) were trained before {which} last changed (or keyed by an older "
            "initlab): run the same command again to retrain them on the current version"
        )
    return runs[~(stale & twin)]


def _check(config_json: str) -> tuple[str | None, tuple[str, ...], str]:
    """The key this run would have with its user files as they are now, their names, and
    its settings as the key sees them (without :data:`~initlab.config.NOT_IN_KEY`: a rerun on
    another device is the same run); ``(None, (), "")`` when it has no user file, or one of
    them cannot be found from here."""
    try:
        fields = json.loads(config_json)
    except ValueError:
        return None, (), ""
    specs = [fields.get(k) for k in ("model", "dataset")]
    specs = [s for s in specs if isinstance(s, str) and is_user_spec(s)]
    if not specs or any(source_fingerprint(s) == "missing" for s in specs):
        return None, (), ""  # (built-in models and data: nothing to parse further)
    try:
        config = RunConfig.from_dict(fields)
    except (InitlabError, TypeError, ValueError):
        return None, (), ""
    same = json.dumps({k: v for k, v in fields.items() if k not in NOT_IN_KEY}, sort_keys=True)
    return config.key(), tuple(s.rpartition(":")[0] or s for s in specs), same
