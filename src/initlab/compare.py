"""``initlab.compare``: the classic initialization lab, done fairly (several seeds per init).

Defaults reproduce the reference lab: Fashion-MNIST, a 784-300-100-10 ReLU MLP, SGD with
learning rate 0.01, batch 32, 5 epochs; the hidden layers get the scheme under study, the
output layer ``glorot_uniform`` (Keras's Dense default), biases zero; three seeds per init.

A comparison is a preset of the sweep machinery (:mod:`initlab.sweep`): a spec named
``compare`` that sweeps ``init`` over the given schemes and seeds, run into a results store
(in memory, or in ``out`` where it resumes), executed in this process, in worker processes
or on Ray.

The model and the data may be the user's own (``model="mymodels:build"``, a function, a
``.npz`` file, a tuple of tensors): **a model or data spec imports and runs the user's
code**. Every run is checked before any trains
(:func:`initlab.sweep.preflight.preflight_configs`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.arguments import check_compare_arguments
from initlab.config import DEFAULT_INITS, RunConfig
from initlab.config_checks import check_momentum_used
from initlab.errors import InitlabError, UnknownNameError, option
from initlab.results import ResultSet
from initlab.setting_names import SETTINGS, is_setting
from initlab.speclist import repeated, split_list
from initlab.sweep.grid import expand
from initlab.sweep.python_api import (
    ProgressCallback,
    check_workers,
    run_from_python,
    target_settings,
)
from initlab.sweep.seeds import seed_list
from initlab.sweep.spec import Axis, Spec
from initlab.sweep.values import check_keyword_settings, check_setting
from initlab.usercode.specs import is_user_spec


def default_inits(model: object) -> tuple[str, ...]:
    """The inits a comparison trains when none are named: the lab's seven schemes
    (:data:`~initlab.config.DEFAULT_INITS`), after ``default`` (the model as its factory
    built it, the baseline every scheme has to beat) for a user's model."""
    return ("default", *DEFAULT_INITS) if is_user_spec(model) else DEFAULT_INITS


def comparison_spec(
    inits: Sequence[str] | None = None, seeds: int | Sequence[int] = 3, **settings
) -> Spec:
    """The spec of a comparison: ``settings`` fixed, ``init`` swept, ``seeds`` repeated.

    ``seeds`` is a count (seeds ``0..n-1``) or explicit seeds. ``residual_init`` may list
    several rules (``"none,fixup"`` or a list): they are swept too, every init under each.
    Groups are the inits, and the rules beside them whenever one is not ``none``. Every
    setting and init spec is checked here, before anything runs; an init named twice is
    refused. ``inits=None``: :func:`default_inits` of the model.
    """
    if inits is None:
        inits = default_inits(settings.get("model"))
    inits = inits.split(",") if isinstance(inits, str) else list(inits)  # "a,b" or a list
    if not inits:
        raise InitlabError("inits is empty: name at least one init (e.g. ['default'])")
    for swept, by in (("init", "inits"), ("seed", "seeds")):
        if swept in settings:  # the axis would silently override it
            raise InitlabError(
                f"{swept}={settings[swept]!r}: a comparison sweeps {swept}; pass {by}= instead"
            )
    seed_tuple = seed_list(seeds, "seeds")
    check_keyword_settings(settings)
    rules = settings.pop("residual_init", None)
    rules = split_list(rules) if isinstance(rules, str) else list(rules or [])
    rules = [check_setting("residual_init", r.strip()) for r in rules]
    if (twice := repeated(rules)) is not None:  # was dropped silently: a typo'd list?
        raise InitlabError(
            f"{option('--residual-init', 'residual_init')} names {twice} twice: each rule is "
            "one group of the comparison; name it once"
        )
    fixed = {key: check_setting(key, value) for key, value in settings.items()}
    if "momentum" in fixed:
        optimizer = fixed.get("optimizer", RunConfig().optimizer)
        check_momentum_used(f"momentum={fixed['momentum']}", [optimizer])
    checked = [check_setting("init", s.strip() if isinstance(s, str) else s) for s in inits]
    twice = sorted({str(spec) for spec in checked if checked.count(spec) > 1})
    if twice:
        raise InitlabError(
            f"{option('--inits', 'inits')} names {', '.join(twice)} more than once: each init "
            "is one group of the comparison, its seeds the repeats (name it once, raise "
            f"{option('--seeds', 'seeds')} for more runs)"
        )
    axes = [Axis(("init",), tuple((spec,) for spec in checked))]
    if len(rules) > 1:
        axes.append(Axis(("residual_init",), tuple((rule,) for rule in rules)))
    elif rules:
        fixed["residual_init"] = rules[0]
    group_by = ("init", "residual_init") if rules not in ([], ["none"]) else ("init",)
    return Spec(name="compare", fixed=fixed, axes=tuple(axes), seeds=seed_tuple, group_by=group_by)


def comparison_configs(
    inits: Sequence[str] | None = None, seeds: int | Sequence[int] = 3, **settings
) -> list[RunConfig]:
    """One :class:`RunConfig` per (init, seed), all other settings shared (checked first)."""
    return expand(comparison_spec(inits, seeds, **settings))


def compare(
    inits: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 3,
    *,
    model: str | Callable | None = None,
    data: str | Callable | tuple | None = None,
    model_args: Mapping[str, Any] | None = None,
    task: str = "auto",
    device: str = "auto",
    precision: str = "fp32",
    progress: ProgressCallback | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
    backend: str = "local",
    workers: int | None = 1,
    address: str | None = None,
    engine: str = "auto",
    gpus_per_trial: float = 0.0,
    **settings,
) -> ResultSet:
    """Train every (init, seed) pair and return the runs as a :class:`ResultSet`.

    ``seeds``: a count (seeds ``0..n-1``; 3 by default) or a list of seeds. ``inits`` may
    include ``"default"``: the model exactly as its factory built it; by default
    the lab's seven schemes, with ``"default"`` first for a user's model
    (:func:`default_inits`). ``model``: ``"mlp"`` (the default), ``"cnn"``, a spec
    ``"module:function"`` / ``"path/to/file.py:function"``, or the factory itself, called with
    ``model_args`` as keyword arguments. ``data``: a dataset name (``"digits"``), a spec
    (``"module:function"``, ``"file.npz"``, ``"file.pt"``), a function, or a tuple ``(x_train,
    y_train, x_test, y_test)`` of tensors/arrays (``dataset=`` is its older name). **A model or
    data spec imports and runs that code**; a factory or data defined in ``__main__`` or a
    notebook is registered in this process (see
    :func:`initlab.usercode.inprocess.model_spec`) and so needs ``workers=1`` and the local
    backend. ``task``: ``auto`` (from the targets),
    ``classification``, ``regression`` or ``sequence``; ``device``: ``auto``, ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``; ``precision``: ``fp32`` or ``bf16``.

    ``settings`` are other :class:`RunConfig` fields (``epochs``, ``batch_size``, ``lr``,
    ``optimizer``, ``weight_decay``, ``lr_schedule``, ``warmup_steps``, ``clip_norm``,
    ``hidden``, ``activation``, ``batch_norm``, ``output_init``, ``embedding_init``...); those
    not given keep :class:`RunConfig`'s defaults (``initlab.RunConfig().to_dict()`` lists them).
    Diverged runs are recorded as such and the comparison goes on. ``data_dir`` is where
    to look for dataset files first (see :func:`initlab.data.load`).

    ``out``: a directory (or ``.db`` file) for the results store — calling again with the
    same ``out`` skips the runs already finished and continues interrupted ones from their
    epoch checkpoints (:mod:`initlab.train.checkpoint`); it holds the store only (``initlab
    report``/``results`` read it): ``results.save(out)`` adds the CSVs and plot that ``initlab
    compare --out`` writes beside it. ``workers``: 1 (the default) trains in
    this process; ``None`` picks one worker process per core (guard your script with
    ``if __name__ == "__main__":``, as multiprocessing requires); ``backend="ray"`` runs
    on a Ray cluster (``address``; ``gpus_per_trial``: GPUs each Ray task reserves).
    ``engine``: ``auto``, ``single`` or ``batched``. ``progress``: ``None`` (the default,
    silent) or a function called as ``progress(config, epoch_record, None)`` after each
    epoch and ``progress(config, None, result)`` when a run ends. Every mistake (an unknown name, a
    factory that fails, data that does not fit the model, a device this machine lacks)
    raises :class:`~initlab.errors.InitlabError` before anything trains and before ``out``
    is created. Ctrl-C while runs train raises :class:`~initlab.sweep.SweepInterrupted` (a
    ``KeyboardInterrupt``) whose ``results`` holds the runs finished so far; during the
    checks before (nothing has run), a plain ``KeyboardInterrupt``.
    """
    check_compare_arguments(inits, model_args, out, progress)
    _check_keywords(settings)
    if isinstance(inits, str):  # "he_normal" or "default,he_normal", as the CLI takes them
        inits = split_list(inits)
    workers = check_workers(workers)
    settings.update(task=task, device=device, precision=precision)
    settings.update(target_settings(model, data, model_args, settings.pop("dataset", None)))
    spec = comparison_spec(inits, seeds, **settings)
    return run_from_python(
        spec,
        expand(spec),
        out,
        backend=backend,
        workers=workers,
        address=address,
        engine=engine,
        gpus_per_trial=gpus_per_trial,
        data_dir=data_dir,
        progress=progress,
        again="call compare again with the same out=",
    )


def _check_keywords(settings: Mapping[str, Any]) -> None:
    """A keyword that is neither :func:`compare`'s own nor a setting → one line whose
    suggestions include compare's own keywords (``n_seeds`` → ``seeds``), not the settings
    it sweeps itself (``seed``, ``init``)."""
    own = [p for p in inspect.signature(compare).parameters if p != "settings"]
    for key in settings:
        if isinstance(key, str) and not is_setting(key):
            swept = {"seed", "init"}
            choices = {*own, *SETTINGS} - swept
            raise UnknownNameError("keyword", key, choices)
