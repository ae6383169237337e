"""``initlab.compare``: the classic initialization lab, done fairly (several seeds per init).

Defaults reproduce the reference lab: Fashion-MNIST, a 784-300-100-10 ReLU MLP, SGD with
learning rate 0.01, batch 32, 5 epochs; the hidden layers get the scheme under study, the
output layer ``glorot_uniform`` (Keras's Dense default), biases zero; three seeds per init.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from initlab import activations, data, initializers
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.errors import InitlabError
from initlab.results import ResultSet
from initlab.train.result import RunResult
from initlab.train.run import load_data, run_config

DEFAULT_INITS = (
    "zeros",
    "random_normal",
    "random_uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
)

ProgressCallback = Callable[[RunConfig, dict | None, RunResult | None], None]
"""Called with ``(config, epoch_record, None)`` after every epoch and with
``(config, None, result)`` when a run ends."""


def comparison_configs(
    inits: Sequence[str] = DEFAULT_INITS, seeds: int | Sequence[int] = 3, **settings
) -> list[RunConfig]:
    """One :class:`RunConfig` per (init, seed), all other settings shared.

    ``seeds`` is a count (seeds ``0..n-1``) or explicit seeds. Every init spec and the
    activation are checked before anything runs.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise InitlabError("need at least one seed")
    for spec in inits:
        initializers.parse(spec)
    if settings.get("output_init"):
        initializers.parse(settings["output_init"])
    activations.get(settings.get("activation", "relu"))
    data.canonical_name(settings.get("dataset", RunConfig.dataset))
    return [RunConfig(init=init, seed=seed, **settings) for init in inits for seed in seed_list]


def compare(
    inits: Sequence[str] = DEFAULT_INITS,
    seeds: int | Sequence[int] = 3,
    *,
    progress: ProgressCallback | None = None,
    data_dir: str | None = None,
    **settings,
) -> ResultSet:
    """Train every (init, seed) pair and return the runs as a :class:`ResultSet`.

    ``settings`` are :class:`RunConfig` fields (``dataset``, ``epochs``, ``batch_size``,
    ``lr``, ``optimizer``, ``hidden``, ``activation``, ``batch_norm``, ``output_init``...).
    Diverged runs are recorded as such and the comparison goes on. ``data_dir`` is where
    to look for dataset files first (see :func:`initlab.data.load`).
    """
    configs = comparison_configs(inits, seeds, **settings)
    return run_all(configs, progress=progress, data_dir=data_dir)


def run_all(
    configs: Sequence[RunConfig],
    *,
    progress: ProgressCallback | None = None,
    data_dir: str | None = None,
    dataset: Dataset | None = None,
    group_by: Sequence[str] = ("init",),
) -> ResultSet:
    """Train ``configs`` (all on the same dataset) one after another.

    ``dataset``: the already loaded data of ``configs[0]`` (loaded here when ``None``).
    """
    dataset = dataset if dataset is not None else load_data(configs[0], data_dir=data_dir)
    results = []
    for config in configs:
        on_epoch = (lambda rec, c=config: progress(c, rec, None)) if progress else None
        result = run_config(config, dataset, on_epoch=on_epoch)
        if progress:
            progress(config, None, result)
        results.append(result)
    return ResultSet.from_results(results, group_by=group_by)
