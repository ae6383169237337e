"""Experiment specs: fixed settings, values to sweep, seeds — read from TOML, YAML or JSON.

A spec is validated completely when it is read (:func:`parse_spec`): unknown keys and bad
values raise one :class:`InitlabError` naming the section, the key and the closest valid
name, before anything runs. See ``docs/sweeps.md`` for the format; in short::

    name = "depth-vs-init"
    seeds = 3                       # or [sweep] seed = [0, 1, 2]
    group_by = ["init", "hidden"]   # optional; default: the swept settings except seed
    [fixed]
    dataset = "fashion-mnist"
    [sweep]                         # cartesian product, first key varies slowest
    init = ["he_normal", "glorot_normal"]
    hidden = [[100, 100], [100, 100, 100, 100]]
    [[zip]]                         # settings that vary together (one axis of the product)
    optimizer = ["sgd", "adam"]
    lr = [0.1, 0.001]
    [[include]]                     # extra points, added after the grid
    init = "orthogonal(gain=1.41)"
    [[exclude]]                     # grid points to leave out
    init = "glorot_normal"
    hidden = [100, 100, 100, 100]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError, closest_name, option
from initlab.jsonsafe import strict_json
from initlab.setting_names import MODEL_ARG, SETTINGS, is_setting
from initlab.speclist import repeated
from initlab.sweep.seeds import seed_list
from initlab.sweep.spec_files import read_error, reader
from initlab.sweep.values import ALIASES, check_setting

TOP_LEVEL = (
    "name",
    "description",
    "seeds",
    "group_by",
    "fixed",
    "sweep",
    "zip",
    "include",
    "exclude",
)
SEED_KEYS = ("seed", "seeds")


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: ``keys`` set together to each tuple of ``values`` in turn."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Spec:
    """A validated experiment: ``fixed`` settings × ``axes`` (product) + ``include``,
    minus ``exclude``, each point repeated over ``seeds`` (the innermost axis)."""

    name: str
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: tuple[Axis, ...] = ()
    seeds: tuple[int, ...] = (0,)
    include: tuple[dict[str, Any], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    group_by: tuple[str, ...] = ()
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready canonical form (what the store keeps and :meth:`spec_hash` hashes)."""
        return strict_json(
            {
                "name": self.name,
                "fixed": self.fixed,
                "axes": [{"keys": a.keys, "values": a.values} for a in self.axes],
                "seeds": self.seeds,
                "include": self.include,
                "exclude": self.exclude,
                "group_by": self.group_by,
            }
        )

    def spec_hash(self) -> str:
        """A stable 16-hex-digit hash of :meth:`to_dict` (the study id in the store)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def swept(self) -> tuple[str, ...]:
        """The settings that vary between runs, in grid order, ``seed`` last if it varies."""
        keys = [k for axis in self.axes for k in axis.keys]
        keys += [k for inc in self.include for k in inc if k not in keys and k != "seed"]
        seeded = len(self.seeds) > 1 or any("seed" in inc for inc in self.include)
        return (*keys, "seed") if seeded else tuple(keys)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file (``.toml``, ``.yaml``/``.yml`` or ``.json``).

    The spec's name defaults to the file name without its extension. Errors name the file.
    """
    path = Path(path)
    if path.is_dir():  # a study's --out directory, given where its spec goes?
        specs = sorted(
            p.name for p in path.glob("*") if p.suffix in (".toml", ".yaml", ".yml", ".json")
        )
        inside = f" (it holds {', '.join(specs[:3])})" if specs else ""
        raise InitlabError(
            f"{path} is a directory, not a spec file{inside}: give the spec file itself "
            "(initlab results DIR reads a study's results)"
        )
    if not path.is_file():
        raise InitlabError(f"spec file not found: {path}")
    try:
        read = reader(path.suffix.lower())
    except InitlabError as exc:
        raise InitlabError(f"{path.name}: {exc}") from None
    try:
        raw = read(path.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) is no text
    except InitlabError as exc:  # a key given twice
        raise InitlabError(f"{path.name}: {exc}") from None
    except Exception as exc:  # a syntax error of TOML, YAML or JSON
        raise InitlabError(
            f"{path.name}: cannot read {path.suffix} spec: {read_error(exc)}"
        ) from None
    try:
        return parse_spec(raw, default_name=path.stem)
    except InitlabError as exc:
        raise InitlabError(f"{path.name}: {exc}") from None


def parse_spec(raw: Any, default_name: str = "sweep") -> Spec:
    """Validate a spec read from a file (a dict) and return it as a :class:`Spec`."""
    if not isinstance(raw, Mapping):
        raise InitlabError("a spec is a table of settings (name, fixed, sweep, ...)")
    for key in raw:
        if key not in TOP_LEVEL:
            raise InitlabError(_unknown(key, "at the top level", TOP_LEVEL, "key"))
    fixed = _fold_model_args(_settings(_table(raw, "fixed"), "[fixed]"))
    sweep = _keys(_table(raw, "sweep"), "[sweep]")
    seeds = _seeds(raw, sweep, fixed)
    axes = [_sweep_axis(key, values) for key, values in sweep.items()]
    axes += [_zip_axis(block, i) for i, block in enumerate(_tables(raw, "zip"), 1)]
    _check_disjoint(fixed, axes)
    include = tuple(
        _settings(t, f"[[include]] #{i}", allow_seed=True)
        for i, t in enumerate(_tables(raw, "include"), 1)
    )
    exclude = tuple(
        _settings(t, f"[[exclude]] #{i}") for i, t in enumerate(_tables(raw, "exclude"), 1)
    )
    spec = Spec(
        name=_text(raw.get("name", default_name), "name"),
        fixed=fixed,
        axes=tuple(axes),
        seeds=seeds,
        include=include,
        exclude=exclude,
        description=_text(raw.get("description", ""), "description"),
    )
    _check_excluded_model_args(spec)
    return _with_group_by(spec, raw.get("group_by"))


def _unknown(key: str, where: str, valid: tuple[str, ...], what: str = "setting") -> str:
    hint = closest_name(key, valid)
    return f"unknown {what} '{key}' {where}" + (f"; did you mean '{hint}'?" if hint else "")


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise InitlabError(f"{key} must be a string, got {value!r}")
    return value


def _table(raw: Mapping, key: str) -> Mapping:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise InitlabError(f"[{key}] must be a table of settings, got {value!r}")
    return value


def _tables(raw: Mapping, key: str) -> list[Mapping]:
    value = raw.get(key, [])
    value = [value] if isinstance(value, Mapping) else value
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise InitlabError(f"[[{key}]] must be a list of tables of settings")
    return value


def _check(key: str, value: Any, where: str) -> Any:
    try:
        return check_setting(key, value)
    except InitlabError as exc:
        text = str(exc)  # "lr must be ..." reads "[sweep] lr must be ...", not "lr: lr must"
        shown = f"{where} {text}" if text.startswith(f"{key} ") else f"{where} {key}: {text}"
        raise InitlabError(shown) from None


def _keys(table: Mapping, where: str) -> dict[str, Any]:
    """``table`` with aliases renamed (``data`` → ``dataset``) and a ``model_args`` table
    flattened into one key per argument (``model_args.width``), in file order."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "model_args" and where != "[fixed]":
            if not isinstance(value, Mapping):
                raise InitlabError(
                    f"model_args in {where} is a table of arguments, e.g. "
                    f"[sweep.model_args] width = [64, 128]; got {value!r}"
                )
            pairs = [(f"{MODEL_ARG}{name}", v) for name, v in value.items()]
        else:
            pairs = [(ALIASES.get(key, key), value)]
        for name, item in pairs:
            if name in out:
                same = " (data and dataset are one setting)" if name == "dataset" else ""
                raise InitlabError(f"'{name}' is given twice in {where}{same}")
            out[name] = item
    return out


def _fold_model_args(fixed: dict[str, Any]) -> dict[str, Any]:
    """``model_args.width = 64`` in ``[fixed]`` (JSON/YAML dotted keys) joins ``model_args``."""
    dotted = {k[len(MODEL_ARG) :]: fixed.pop(k) for k in list(fixed) if k.startswith(MODEL_ARG)}
    if dotted:
        fixed["model_args"] = {**fixed.get("model_args", {}), **dotted}
    return fixed


def _settings(table: Mapping, where: str, allow_seed: bool = False) -> dict[str, Any]:
    out = {}
    for key, value in _keys(table, where).items():
        if not is_setting(key):
            raise InitlabError(_unknown(key, f"in {where}", SETTINGS))
        if key == "seed" and not allow_seed and where != "[fixed]":
            raise InitlabError(f"seed in {where}: put seeds in [sweep] seed = [...] or seeds = N")
        out[key] = _check(key, value, where)
    return out


def _sweep_values(key: str, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise InitlabError(
            f"{where} {key} must be a non-empty list of values, got {values!r} "
            "(put single values in [fixed])"
        )
    if key == "hidden" and all(isinstance(v, int) for v in values):
        raise InitlabError(
            f"{where} hidden is a list of architectures, e.g. [[100, 100], [300]]; "
            f"got {values!r} (for one architecture use [fixed] hidden = {values!r})"
        )
    checked = [_check(key, v, where) for v in values]
    if len({json.dumps(strict_json(v)) for v in checked}) != len(checked):
        raise InitlabError(f"{where} {key} lists a value twice: {values!r}")
    return checked


def _sweep_axis(key: str, values: Any) -> Axis:
    if not is_setting(key):
        raise InitlabError(_unknown(key, "in [sweep]", (*SETTINGS, "seeds")))
    _check_sweepable(key, "[sweep]")
    return Axis((key,), tuple((v,) for v in _sweep_values(key, values, "[sweep]")))


def _zip_axis(block: Mapping, number: int) -> Axis:
    where = f"[[zip]] #{number}"
    if not block:
        raise InitlabError(f"{where} is empty")
    columns = {}
    for key, values in _keys(block, where).items():
        if not is_setting(key) or key == "seed":
            raise InitlabError(_unknown(key, f"in {where}", SETTINGS))
        _check_sweepable(key, where)
        if not isinstance(values, list) or not values:
            raise InitlabError(f"{where} {key} must be a non-empty list, got {values!r}")
        columns[key] = [_check(key, v, where) for v in values]
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise InitlabError(f"{where}: the lists must have the same length ({shown})")
    rows = tuple(zip(*columns.values(), strict=True))
    if len({json.dumps(strict_json(row)) for row in rows}) != len(rows):
        raise InitlabError(f"{where} lists a combination twice: {list(rows)!r}")
    return Axis(tuple(columns), rows)


def _check_sweepable(key: str, where: str) -> None:
    if key == "device":
        raise InitlabError(
            f"device in {where}: the device says where runs train, not what they compute "
            f"(it is not part of a run's key); set it in [fixed]{option(' or with --device', '')}"
        )


def _check_disjoint(fixed: dict[str, Any], axes: list[Axis]) -> None:
    seen = {k: "[fixed]" for k in fixed}
    seen.update({f"{MODEL_ARG}{k}": "[fixed] model_args" for k in fixed.get("model_args", {})})
    for axis in axes:
        where = "[sweep]" if len(axis.keys) == 1 else "[[zip]]"
        for key in axis.keys:
            if key in seen:
                raise InitlabError(f"'{key}' is set in both {seen[key]} and {where}")
            seen[key] = where


def _seeds(raw: Mapping, sweep: dict[str, Any], fixed: dict[str, Any]) -> tuple[int, ...]:
    """The run seeds from exactly one of: ``seeds``, ``[sweep] seeds|seed``, ``[fixed] seed``."""
    given = [(f"[sweep] {k}", sweep.pop(k)) for k in SEED_KEYS if k in sweep]
    if "seeds" in raw:
        given.append(("seeds", raw["seeds"]))
    if "seed" in fixed:
        given.append(("[fixed] seed", [fixed.pop("seed")]))
    if len(given) > 1:
        raise InitlabError(f"seeds are given twice ({given[0][0]} and {given[1][0]}); keep one")
    if not given:
        return (0,)
    return seed_list(given[0][1], given[0][0])


def _with_group_by(spec: Spec, group_by: Any) -> Spec:
    if group_by is None:
        keys = tuple(k for k in spec.swept if k != "seed") or ("init",)
    else:
        keys = (group_by,) if isinstance(group_by, str) else group_by
        if not isinstance(keys, (list, tuple)) or not keys:
            raise InitlabError("group_by must be a setting name or a list of them")
        keys = [ALIASES.get(k, k) if isinstance(k, str) else k for k in keys]
        twice = repeated(keys)
        if twice is not None:
            raise InitlabError(f"group_by lists '{twice}' twice; list each setting once")
        for key in keys:
            if not is_setting(key) or key == "seed":
                args = tuple(f"model_args.{name}" for name in sorted(_model_args_given(spec)))
                if f"model_args.{key}" in args:
                    raise InitlabError(
                        f"unknown setting '{key}' in group_by; did you mean 'model_args.{key}'?"
                    )
                valid = tuple(s for s in SETTINGS if s != "seed") + args
                raise InitlabError(_unknown(str(key), "in group_by", valid))
        _check_model_arg_groups(spec, keys)
    return Spec(**{**spec.__dict__, "group_by": tuple(keys)})


def _model_args_given(spec: Spec) -> set[str]:
    """The model argument names the spec sets, in ``[fixed]``, ``[sweep]`` or ``[[include]]``."""
    known = set(spec.fixed.get("model_args") or {})
    for entry in (*[dict.fromkeys(a.keys) for a in spec.axes], *spec.include):
        known |= {k.partition(".")[2] for k in entry if k.startswith("model_args.")}
        known |= set(entry.get("model_args") or {}) if isinstance(entry, dict) else set()
    return known


def _check_excluded_model_args(spec: Spec) -> None:
    """An ``[[exclude]]`` on a model argument the spec never sets would match nothing."""
    known = _model_args_given(spec)
    for entry in spec.exclude:
        names = {k.partition(".")[2] for k in entry if k.startswith("model_args.")}
        names |= set(entry.get("model_args") or {})
        for name in sorted(names - known):
            given = ", ".join(sorted(known)) or "none"
            where = f"in [[exclude]] (the spec's model arguments: {given}): it would match nothing"
            raise InitlabError(_unknown(name, where, tuple(sorted(known)), "model argument"))


def _check_model_arg_groups(spec: Spec, keys: list[str]) -> None:
    """A ``model_args.<name>`` in group_by names an argument the spec gives (in ``[fixed]``,
    ``[sweep]`` or ``[[include]]``): a misspelt one would train every run, then fail."""
    known = _model_args_given(spec)
    for key in keys:
        name = key.partition(".")[2] if key.startswith("model_args.") else None
        if name is not None and name not in known:
            given = ", ".join(sorted(known)) or "none"
            where = f"in group_by (the spec's model arguments: {given})"
            raise InitlabError(_unknown(name, where, tuple(sorted(known)), "model argument"))
