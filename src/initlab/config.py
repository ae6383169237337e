"""One training run, described completely by a flat, hashable config.

A :class:`RunConfig` is the unit everything else agrees on: the engines train it, the sweep
expands a grid into many of them, the store keys results by :meth:`RunConfig.key` (a stable
hash of every field), and resuming skips configs whose key is already finished.
"""

from __future__ import annotations

import functools
import hashlib
import json
import numbers
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from initlab.errors import InitlabError, UnknownNameError, closest_name
from initlab.ranges import (
    MAX_INT,
    RANGES,
    check_device,
    check_hidden,
    check_model_args,
    check_number,
)
from initlab.residual.names import ZERO_RULES, canonical_rule
from initlab.usercode.specs import is_user_spec, source_fingerprint

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "linear", "cosine")
"""``lr_schedule``'s values (:mod:`initlab.train.schedule`)."""
DEFAULT_INITS = (
    "zeros",
    "random_normal",
    "random_uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
)
"""The classic lab's inits: what ``initlab compare`` and :func:`initlab.compare` train."""
AS_BUILT = "default"
"""The scheme that keeps a layer as its constructor left it (weights and biases), for
``init``, ``embedding_init`` and a plan's layers; a holder of a shared weight with it draws
nothing (:mod:`initlab.tied_layers`)."""
DEFAULT_MAX_RUNS = 100_000
"""The most runs a spec may expand to unless ``--max-runs`` / ``max_runs=`` raises it."""
TASKS = ("auto", "classification", "regression", "sequence")
"""The tasks a run (or user data) may name: ``auto`` infers one of a dataset's
(:data:`initlab.task_names.TASKS`, which never holds ``auto``)."""
PRECISIONS = ("fp32", "bf16")
NOT_IN_KEY = ("device",)
"""Settings that say *where* a run trains, not *what* it computes: left out of the run key,
so a sweep started on the CPU can be resumed on a GPU (the store records the device)."""
SAME = "same"
"""``output_init = "same"`` (``--output-init same``): the output layer gets the hidden layers'
scheme; a run stores it as ``None`` (:func:`output_scheme`)."""
KEY_VERSION = 1
"""Part of every run key; bump it when a setting's default changes meaning."""
RELU_END_RULE = 2
"""Part of the key of a built-in residual MLP's run under a zero rule (``zero_last_layer``,
``zero_last_norm``): 2 since such a rule leaves a branch that a ReLU ends (``linear →
[norm] → relu``) as initialized, where it zeroed it and the branch never trained
(:mod:`initlab.residual.rules`). Runs of the old rule train again."""
BIAS_BEFORE_NORM = False
"""Whether a layer of a built-in model that batch norm follows has a bias (as in
torchvision's ResNets: no). Batch norm subtracts the batch mean, so that bias changes
nothing and its gradient is zero up to rounding; Adam divides that noise by its own size
and moves the bias by the full learning rate each step, so the run's numbers came to depend
on the order of float sums (the thread count, the strategy) far beyond rounding. β of the
norm is the shift. Part of such a run's key: runs trained with the bias train again."""
USER_MODEL_RULES = 5
"""Part of a user model's run key: bump it when what a scheme does to layers only a user's
model has changes (2: RNNs and attention input projections are set, not kept as built; 3:
grouped convolutions drawn orthogonal per group, strided transposed convolutions' fan_in
K/S; 4: a squeeze-excite or GLU gate's layers are not on a residual branch's chain; 5: an
embedding table tied to a readout is set by the embedding rule, not the readout's, and a
zero rule leaves a branch a ReLU ends as initialized), so
a store resumes no run initialized by the old rules. The built-in models' keys stay."""
LIMIT_SAMPLE = 2
"""Part of the key of a run whose ``limit_train`` cuts a drawn split (digits, MNIST-1D, user
data): 2 since the cut is a seeded class-balanced sample, not the first rows, so a store
resumes no run trained on the old cut. Datasets cut in file order (MNIST, Fashion-MNIST,
synthetic: :data:`FIRST_ROWS`) keep their keys."""
FIRST_ROWS = ("mnist", "fashion-mnist", "synthetic")
"""Datasets whose ``limit_train`` keeps the first rows of their files' (random) order."""
INIT_SAMPLE = 2
"""Part of the key of a run on the user's data whose init uses data (LSUV, or a doctor's
plan with LSUV layers) or that tracks per-layer statistics: 2 since those rows are a seeded
class-balanced sample (:func:`initlab.data.dataset.first_look`), not the first rows (one
class, in a file sorted by label), so a store resumes no run initialized, or tracked, on the
old rows (curves of one store stay comparable)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (same config ⇒ same numbers).

    ``init`` is an initializer spec (``"he_normal"``, ``"orthogonal(gain=1.41)"``) applied to
    the hidden layers; ``output_init`` to the output layer (``None``, or ``"same"`` which is
    stored as ``None``: the same as ``init``);
    ``embedding_init`` to every ``nn.Embedding`` (``default``: as the factory built it);
    ``bias`` is the bias policy of :func:`initlab.initialize`; ``residual_init`` its residual
    rule (``none``, ``zero_last_layer`` alias ``zero``, ``zero_last_norm``, ``skipinit``,
    ``fixup``, ``depth_scaled``; see :mod:`initlab.residual.rules`). ``momentum`` is used
    only by the ``momentum`` optimizer. ``weight_decay``: L2 added to the gradient for
    ``sgd``, ``momentum`` and ``adam``, decoupled for ``adamw``; ``None`` (the default) is
    the optimizer's own default, 0 (adamw: PyTorch's 0.01), and 0 is no decay.
    ``lr_schedule`` (``constant``, ``linear``, ``cosine``: decay to 0 by the last step),
    ``warmup_steps`` (linear from lr/W) and ``clip_norm`` (each model's gradient norm at
    most this; ``None``: no clipping): :mod:`initlab.train.schedule`.
    ``track``: when to record per-layer statistics during training — ``"epoch"`` (after
    every epoch, the default), ``"off"``, or every N optimizer steps (an int).

    ``model``: a built-in architecture (``mlp``, ``cnn``) or a user factory
    (``module:function``, ``path/to/file.py:function``; see :mod:`initlab.usercode.specs`) called
    with ``model_args`` as keyword arguments. ``dataset``: a built-in dataset name or a user
    data spec (``module:function``, ``file.py:function``, ``file.npz``, ``file.pt``).
    ``task``: ``auto`` (inferred from the targets), ``classification``, ``regression`` or
    ``sequence``. ``precision``: ``fp32`` or ``bf16`` (autocast). ``device``: ``auto``,
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` — not part of the run key (:data:`NOT_IN_KEY`).
    ``data_seed``: the seed of the training-data order (``None``: ``seed``, so a run's init
    and data order share one seed unless told apart; crossing them separates the two
    sources of run-to-run variance).
    """

    dataset: str = "fashion-mnist"
    model: str = "mlp"
    hidden: tuple[int, ...] = (300, 100)
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    residual: bool = False
    residual_init: str = "none"
    init: str = "he_normal"
    output_init: str | None = "glorot_uniform"
    embedding_init: str = "default"
    bias: str = "zeros"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float | None = None
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    clip_norm: float | None = None
    batch_size: int = 32
    epochs: int = 5
    seed: int = 0
    data_seed: int | None = None
    val_size: int | None = None
    limit_train: int | None = None
    track: str | int = "epoch"
    model_args: dict[str, Any] = field(default_factory=dict)
    task: str = "auto"
    precision: str = "fp32"
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy scalars as Python's: the key and the store are JSON
            object.__setattr__(self, f.name, plain(getattr(self, f.name)))
        object.__setattr__(self, "hidden", _widths(self.hidden))
        object.__setattr__(self, "output_init", output_scheme(self.output_init))
        validate_numbers(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise with the closest valid key."""
        valid = {f.name for f in fields(cls)}
        for key in d:
            if key not in valid:
                hint = closest_name(key, valid)
                extra = f"; did you mean '{hint}'?" if hint else ""
                raise InitlabError(f"unknown run setting '{key}'{extra}")
        return cls(**d)

    def key(self) -> str:
        """A stable 16-hex-digit hash of the run: the resume key.

        Only fields that differ from their defaults enter the hash (with
        :data:`KEY_VERSION`), so adding a new setting whose default keeps today's behaviour
        leaves every existing key — and every existing store's resume — intact. Changing a
        default's meaning requires bumping :data:`KEY_VERSION`. A user model or data spec
        adds the fingerprint of its source file (:func:`initlab.usercode.specs.source_fingerprint`),
        so editing the model's code starts new runs instead of resuming stale ones, and
        :data:`USER_MODEL_RULES` does the same when initlab's rules for its layers change.
        """
        base, mine = RunConfig().to_dict(), self.to_dict()
        if mine["weight_decay"] == 0 and self.optimizer != "adamw":
            # no decay either way: the key such a run had when 0 was the default
            mine["weight_decay"] = None
        changed = {k: v for k, v in mine.items() if base[k] != v and k not in NOT_IN_KEY}
        for name in ("model", "dataset"):
            spec = getattr(self, name)
            if is_user_spec(spec):
                changed[f"{name}_source"] = source_fingerprint(spec)
        if is_user_spec(self.model):
            changed["layer_rules"] = USER_MODEL_RULES
        elif self.batch_norm:
            changed["bias_before_norm"] = BIAS_BEFORE_NORM
        if self.residual and not is_user_spec(self.model) and self._zeroes_relu_ends():
            changed["relu_end_rule"] = RELU_END_RULE
        if self.limit_train is not None and _canonical(self.dataset) not in FIRST_ROWS:
            changed["limit_sample"] = LIMIT_SAMPLE
        if is_user_spec(self.dataset) and (_uses_data(self) or self.track != "off"):
            changed["init_sample"] = INIT_SAMPLE
        blob = json.dumps({"v": KEY_VERSION, **changed}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _zeroes_relu_ends(self) -> bool:
        """A zero rule on branches its activation ends with f'(0) = 0 (ReLU): what
        :data:`RELU_END_RULE` changed (tanh or GELU branches train as before)."""
        from initlab.activations import dies_at_zero  # torch: not on the CLI's start path

        try:
            rule = canonical_rule(self.residual_init)
        except InitlabError:  # an unknown name is refused by validation, not here
            return False
        return rule in ZERO_RULES and dies_at_zero(self.activation)

    def replace(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    def __repr__(self) -> str:
        """``RunConfig(dataset='digits', model='f.py:build', init='he_normal', seed=2)``:
        the settings that differ from the defaults and that the run uses (not ``hidden``
        for a user's factory, :func:`unused_in_run`); ``RunConfig()`` for the defaults."""
        unused, defaults = set(unused_in_run(self)), _defaults()
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in unused and getattr(self, f.name) != defaults[f.name]
        ]
        return f"RunConfig({', '.join(shown)})"

    @property
    def label(self) -> str:
        """A short human label: ``he_normal/relu/300-100/seed0`` for the MLP,
        ``he_normal/relu/cnn/seed0``, ``he_normal/resnet,width=16/seed0`` for a user factory
        (its activation is its own, not :attr:`activation`)."""
        if self.model == "mlp":
            arch = "-".join(map(str, self.hidden))
        else:
            arch = self.model.rpartition(":")[2] or self.model
            arch += "".join(f",{k}={v}" for k, v in sorted(self.model_args.items()))
        if is_user_spec(self.model):
            return f"{self.init}/{arch}/seed{self.seed}"
        return f"{self.init}/{self.activation}/{arch}/seed{self.seed}"


def _widths(hidden: Any) -> tuple[int, ...]:
    """``hidden`` as a tuple of ints; a width that is not a whole number is refused (64.7
    was truncated to 64)."""
    widths = tuple(hidden) if isinstance(hidden, (list, tuple)) else (hidden,)
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, (int, float)) or width != int(width):
            raise InitlabError(f"hidden widths must be whole numbers, got {width!r}")
    return tuple(int(w) for w in widths)


def plain(value: Any) -> Any:
    """``value`` with Python scalars for numpy's (and torch's), in lists, tuples and dicts too:
    an integral number (``numbers.Integral``: ``numpy.int64``) → ``int``, a bool → ``bool``,
    another real number (``numpy.float32``) → ``float``, a 0-d array or tensor → its item, a
    ``torch.device`` → its string (``"cuda:0"``). Anything else unchanged: the checks that
    follow judge it. Called where a value enters initlab (:func:`initlab.compare`'s keywords,
    a spec's settings, :class:`RunConfig`), so run keys and the store see JSON values."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if type(value).__name__ == "bool_":  # numpy.bool_ is no numbers.Integral
        return bool(value)
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value) if type(value) in (list, tuple) else value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return plain(value.item())
    torch = sys.modules.get("torch")  # a torch.device means torch is imported already
    return str(value) if torch is not None and isinstance(value, torch.device) else value


def output_scheme(output_init: Any) -> Any:
    """The output layer's scheme as runs, specs, :func:`initlab.initialize` and the command
    line all read it: ``"same"`` (:data:`SAME`) is ``None``, the hidden layers' scheme, so
    one run key stands for both spellings (and each init's runs keep their own key, as
    ``init`` is in it); any other value unchanged."""
    return None if output_init == SAME else output_init


ARCHITECTURE_SETTINGS = ("hidden", "activation", "batch_norm", "dropout", "residual")
"""The settings of initlab's own architectures (a user factory takes ``model_args``)."""
_UNUSED_BY = {"cnn": ("hidden", "dropout", "residual")}


@functools.cache
def _defaults() -> dict[str, Any]:
    """Each :class:`RunConfig` field's default value."""
    default = RunConfig()
    return {f.name: getattr(default, f.name) for f in fields(RunConfig)}


def unused_settings(model: str) -> tuple[str, ...]:
    """The :data:`ARCHITECTURE_SETTINGS` that ``model`` does not use: all of them for a user
    factory (it builds its own layers), ``hidden``/``dropout``/``residual`` for the ``cnn``,
    none for the ``mlp``."""
    return ARCHITECTURE_SETTINGS if is_user_spec(model) else _UNUSED_BY.get(model, ())


def used_settings(model: str) -> tuple[str, ...]:
    """The :data:`ARCHITECTURE_SETTINGS` that ``model`` uses (what a message may suggest
    in place of ``model_args`` for a built-in model: not ``hidden`` for the ``cnn``)."""
    return tuple(s for s in ARCHITECTURE_SETTINGS if s not in unused_settings(model))


AS_BUILT_UNUSED = ("output_init", "bias")
"""What init ``default`` (the model as its factory built it) never applies: its output layer
and biases are the factory's, whatever ``output_init`` and ``bias`` say."""


def unused_in_run(config: RunConfig) -> tuple[str, ...]:
    """The settings a run never applies, shown empty in its row (in the store and in memory
    alike): the model's (:func:`unused_settings`), ``momentum`` unless its optimizer is
    ``momentum`` (plain SGD has none; Adam's moments have their own betas), and
    :data:`AS_BUILT_UNUSED` for init ``default``."""
    momentum = () if config.optimizer == "momentum" else ("momentum",)
    as_built = AS_BUILT_UNUSED if config.init == AS_BUILT else ()
    return unused_settings(config.model) + momentum + as_built


def validate_numbers(config: RunConfig) -> None:
    """Raise :class:`InitlabError` for values no run can have: every number outside its
    range (:data:`initlab.ranges.RANGES`), a malformed device, model_args or name."""
    for name in RANGES:
        check_number(name, getattr(config, name))
    check_device(config.device)
    if config.data_seed is not None and (
        isinstance(config.data_seed, bool)
        or not isinstance(config.data_seed, int)
        or config.data_seed < 0
    ):
        raise InitlabError(f"data_seed must be None or an integer >= 0, got {config.data_seed!r}")
    check_model_args(config.model_args)
    canonical_rule(config.residual_init)  # UnknownNameError with the closest rule
    if config.task not in TASKS:
        raise UnknownNameError("task", config.task, TASKS)
    if config.precision not in PRECISIONS:
        raise UnknownNameError("precision", config.precision, PRECISIONS)
    if config.optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer", config.optimizer, OPTIMIZERS)
    if config.lr_schedule not in SCHEDULES:
        raise UnknownNameError("lr_schedule", config.lr_schedule, SCHEDULES)
    if config.track not in ("epoch", "off") and not (
        isinstance(config.track, int)
        and not isinstance(config.track, bool)
        and 0 < config.track <= MAX_INT
    ):
        raise InitlabError(
            f"track must be 'epoch', 'off' or a step count in [1, 2^63 - 1], got {config.track!r}"
        )
    check_hidden(config.hidden)


def _uses_data(config: RunConfig) -> bool:
    """Whether ``config``'s init sees data: an ``lsuv`` scheme among its inits, or in the
    per-layer plan a doctor's candidate passes as ``model_args``."""
    named = (config.init, config.output_init, config.embedding_init, *config.model_args.values())
    return any("lsuv" in str(value) for value in named)


def _canonical(dataset: str) -> str:
    """The registry's name of a built-in ``dataset`` (``fmnist`` → ``fashion-mnist``), the
    spec itself for anything else."""
    from initlab.dataset_names import built_in_name

    return built_in_name(dataset) or dataset
