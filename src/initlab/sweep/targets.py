"""A spec's targets: settings given beside a spec (the command line's ``--model``,
``--data``, ``--device``...; :func:`initlab.sweep.run`'s keywords) applied to it, and the
models it names checked in the spec's own words before anything runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from initlab.config import RunConfig, unused_settings, used_settings
from initlab.config_checks import check_momentum_used, shown_value, unused_line
from initlab.errors import InitlabError, option
from initlab.setting_names import MODEL_ARG
from initlab.sweep.spec import Axis, Spec
from initlab.sweep.values import check_setting
from initlab.usercode.specs import (
    RELATIVE,
    check_readable,
    is_data_file,
    is_user_spec,
    load_callable,
)


def override_spec(spec: Spec, settings: dict[str, Any]) -> Spec:
    """``spec`` with ``settings`` (the command line's, or :func:`initlab.sweep.run`'s
    keywords) replacing its fixed values.

    ``model_args`` entries are merged into the spec's ``model_args`` one by one. A setting
    the spec sweeps (or sets in ``[[include]]``) cannot also be fixed beside it: that
    raises :class:`InitlabError` rather than silently dropping the spec's values.
    """
    if not settings:
        return spec
    swept = set(spec.swept)
    fixed = dict(spec.fixed)
    for key, value in settings.items():
        if key == "model_args":
            args = dict(fixed.get("model_args", {}))
            for name, item in value.items():
                named = option(f"--model-arg {name}", f"model_args={{{name!r}: ...}}")
                _refuse_swept(f"{MODEL_ARG}{name}", swept, named)
                args[name] = check_setting(f"{MODEL_ARG}{name}", item)
            fixed["model_args"] = args
            continue
        name = "data" if key == "dataset" else key
        _refuse_swept(key, swept, option(f"--{name}", f"{name}="))
        fixed[key] = check_setting(key, value)
    return replace(spec, fixed=fixed)


def _refuse_swept(key: str, swept: set[str], named: str) -> None:
    if key in swept:
        beside = option("from the command line", f"with {named}")
        raise InitlabError(
            f"{named}: the spec varies '{key}' between runs; remove it from the spec's "
            f"[sweep]/[[zip]]/[[include]] to fix it {beside}"
        )


def check_models(spec: Spec, given: Iterable[str] = (), source: str = "") -> None:
    """Check the models the spec itself names, in the spec's words: a model factory that
    cannot be loaded (no such file, no such function) or ``model_args`` for a built-in
    model raise one :class:`InitlabError` naming the spec key (``[fixed] model``) rather
    than a command-line option the user did not use. ``given``: the settings the command
    line replaced (its own checks name its options); ``source``: the spec file's name, put
    first as :func:`initlab.sweep.spec.load_spec` does. Settings of initlab's own
    architectures that a model the spec runs would ignore (``hidden`` for a factory) are
    refused naming their section (:func:`_check_unused`), whoever named the model."""
    try:
        if "model" not in given:
            _check_named_models(spec, given)
        if "dataset" not in given:
            _check_named_data(spec)
        _check_unused(spec)
    except InitlabError as exc:
        raise InitlabError(f"{source}: {exc}" if source else str(exc)) from None


def _check_named_models(spec: Spec, given: Iterable[str]) -> None:
    """The spec's model factories load; its ``model_args`` are not for a built-in model."""
    for where, model in _models(spec):
        if is_user_spec(model):
            load_callable(model, flag=where)
    model = spec.fixed.get("model", "mlp")
    args = spec.fixed.get("model_args")
    swept = "model" in spec.swept
    if args and "model_args" not in given and not is_user_spec(model) and not swept:
        named = "[fixed] model is" if "model" in spec.fixed else "the model is the default,"
        raise InitlabError(
            f"[fixed] model_args {args} are for a model factory (module:function); {named} "
            f"the built-in '{model}' (it takes {', '.join(used_settings(model))})"
        )


def _check_named_data(spec: Spec) -> None:
    """The data files the spec names exist (``[fixed] data: no such file 'x.npz'``), and
    its ``file.py:function`` / ``module:function`` data load; the data is not read (a
    dry run stays quick)."""
    for where, data in _named(spec, "dataset"):
        if where.endswith(" dataset"):
            where = where[: -len("dataset")] + "data"
        if not isinstance(data, str):  # arrays or a function, from Python
            continue
        if is_data_file(data):
            path = Path(data)
            check_readable(path, where, data)
            if path.is_dir():
                raise InitlabError(f"{where}: '{data}' is a directory, not a data file")
            if not path.is_file():
                cwd = "" if path.is_absolute() else f" in {Path.cwd()} ({RELATIVE})"
                raise InitlabError(f"{where}: no such file '{data}'{cwd}")
        elif is_user_spec(data):
            load_callable(data, flag=where)


def _check_unused(spec: Spec) -> None:
    """:func:`initlab.config_checks.check_architecture_settings` in the spec's words (the runs
    meet it later, naming no section): ``[fixed] hidden=100: the model f.py:build does not
    use it``, for each model the spec names; for a model it does not sweep, also the
    settings it sweeps (``[sweep] hidden``)."""
    default = RunConfig()
    momentum = _named(spec, "momentum")
    if momentum:
        optimizers = [value for _, value in _named(spec, "optimizer")] or [default.optimizer]
        check_momentum_used(f"{momentum[0][0]}={momentum[0][1]}", optimizers)
    for _, model in _models(spec) or [("", spec.fixed.get("model", default.model))]:
        ignored = unused_settings(model)
        fixed = [n for n in ignored if n in spec.fixed and spec.fixed[n] != getattr(default, n)]
        if fixed:
            given = ", ".join(f"{n}={shown_value(spec.fixed[n])}" for n in fixed)
            raise InitlabError(_unused_line(f"[fixed] {given}", model, len(fixed)))
        swept = [] if "model" in spec.swept else [n for n in ignored if n in spec.swept]
        if swept:
            where = next((_axis_name(a) for a in spec.axes if swept[0] in a.keys), "[[include]]")
            raise InitlabError(_unused_line(f"{where} {', '.join(swept)}", model, len(swept)))


def _unused_line(given: str, model: str, count: int) -> str:
    return unused_line(
        given, model, count, "give your factory's own settings in [fixed] model_args"
    )


def _axis_name(axis: Axis) -> str:
    return "[sweep]" if len(axis.keys) == 1 else "[[zip]]"


def _models(spec: Spec) -> list[tuple[str, str]]:
    """``(where, model)`` for each model the spec names as text (:func:`_named`)."""
    return list(dict.fromkeys((w, m) for w, m in _named(spec, "model") if isinstance(m, str)))


def _named(spec: Spec, key: str) -> list[tuple[str, str]]:
    """``(where, value)`` for each value of ``key`` the spec names: ``[fixed] model``,
    ``[sweep] model`` (``[[zip]] model`` for a zipped axis), ``[[include]] #2 model``."""
    found = [(f"[fixed] {key}", spec.fixed[key])] if key in spec.fixed else []
    for axis in spec.axes:
        if key in axis.keys:
            where = f"[sweep] {key}" if axis.keys == (key,) else f"[[zip]] {key}"
            column = axis.keys.index(key)
            found += [(where, row[column]) for row in axis.values]
    for number, entry in enumerate(spec.include, 1):
        if key in entry:
            found.append((f"[[include]] #{number} {key}", entry[key]))
    return found
