"""The size of one run's model — parameters, multiply-adds, activations — and its memory.

Built-in MLPs are sized by arithmetic on the config, so a model of any width is sized
without building it. With input size ``d_0 = Π input_shape``, hidden widths
``d_1..d_L`` and ``d_{L+1}`` classes::

    parameters  = Σ_l (d_l · d_{l+1} + d_{l+1})  (with batch norm, a hidden layer's
                  d_{l+1} biases are its norm's 2 · d_{l+1} instead)
    macs        = Σ_l d_l · d_{l+1}               (multiply-adds of one example's forward)
    activations = d_0 + Σ_{hidden l} k · d_l + 2 · d_{L+1}   (floats kept for backward, per
                  example; k = 2 — linear output, activation output — +1 with batch norm,
                  +1 with dropout; the logits and their gradient)

The CNN and user factories (``model = "module:function"``) are built on PyTorch's ``meta``
device, which allocates nothing, and run on a fake one-example batch, with hooks that add up
the outputs of every leaf module (activations) and :class:`torch.utils.flop_counter.
FlopCounterMode` counting the multiply-adds of every matrix product, convolution and
attention (a Linear on ``[T, d]`` tokens counts T times).
A factory that cannot build on the meta device gets no estimate, with a note saying why.

The input shape and output size of a built-in dataset come from :func:`initlab.data.info`.
User data (``dataset = "file.npz"``, ``"module:function"``) is sized from the data itself,
loaded as the run loads it (:func:`user_data`: the same in-process cached object, so sizing
it costs no second copy), and only when asked (``read_data=True``: the sweep, which loads
the data anyway); ``--dry-run`` does not read user data and shows its runs as not sized.

The memory of training one model (:func:`run_bytes`), in bytes::

    4 · parameters · (2 + s)  +  b · batch_size · activations

weights and gradients in fp32, ``s`` optimizer state tensors per parameter (0 for sgd, 1 for
momentum, 2 for adam/adamw), ``b`` = 4 bytes per activation (2 with ``precision = bf16``).
:func:`memory_warnings` compares it with this machine's memory (:func:`machine_memory`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

import initlab.data as data
from initlab.config import RunConfig
from initlab.data import Dataset
from initlab.errors import InitlabError, first_line
from initlab.models import build_model
from initlab.train.run import load_data
from initlab.usercode.specs import is_user_spec

MAX_PARAMETERS = 10**12
"""A model with more parameters (4 TB of fp32 weights) is refused outright: no machine
trains one, and sizing it is surely a typo (``hidden = [100000000000]``)."""
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
"""Optimizer state tensors per parameter (momentum buffer; Adam's two moments)."""


@dataclass(frozen=True)
class Profile:
    """One model's size: ``parameters``; ``macs`` and ``activations`` per example (``None``
    when the input shape is unknown: user data not read yet)."""

    parameters: int
    macs: int | None
    activations: int | None


def architecture(config: RunConfig) -> tuple:
    """The settings that decide a model's size (the cache key of :func:`profile`)."""
    args = json.dumps(config.model_args, sort_keys=True)
    arch = (config.model, config.hidden, config.activation, config.batch_norm)
    return (config.dataset, *arch, config.residual, config.dropout > 0, args)


DataShape = tuple[tuple[int, ...], int, str]
"""``(input_shape, num_classes, task)`` of a dataset: what a model is built for."""


def data_shape(config: RunConfig, read_data: bool = False) -> DataShape | None:
    """``(input_shape, num_classes, task)`` of ``config``'s data: :func:`initlab.data.info`
    for a built-in dataset; for user data :func:`user_data`'s, only with ``read_data``
    (else ``None``)."""
    if not is_user_spec(config.dataset):
        info = data.info(config.dataset)
        return tuple(info["input_shape"]), info["num_classes"], "classification"
    if not read_data:
        return None
    loaded = user_data(config)
    return tuple(loaded.input_shape), loaded.num_classes, loaded.task


def user_data(config: RunConfig) -> Dataset:
    """``config``'s user data, loaded with its settings exactly as the run loads it (cached
    in-process, so the sweep reuses this object). :class:`InitlabError`, one line, when it
    cannot be loaded."""
    return load_data(config)


def profile(config: RunConfig, read_data: bool = False) -> Profile:
    """The size of ``config``'s model; :class:`InitlabError` if a built-in model cannot
    exist for its data (a CNN on flat inputs) or if it has more than :data:`MAX_PARAMETERS`.
    ``read_data``: size runs on user data too (see :func:`data_shape`)."""
    found = _profile(architecture(config), data_shape(config, read_data))
    if found.parameters > MAX_PARAMETERS:
        raise InitlabError(
            f"the model of run {config.label} has {found.parameters:.3g} parameters, more than "
            f"{MAX_PARAMETERS:.0e} (4 TB of weights): no machine can train it; check the widths"
        )
    return found


@lru_cache(maxsize=1024)
def _profile(arch: tuple, sizes: DataShape | None) -> Profile:
    dataset, model, hidden, activation, batch_norm, residual, dropout, args = arch
    shape, classes, task = sizes if sizes is not None else (None, None, None)
    if not is_user_spec(model) and shape is None:
        raise NoEstimate(f"{model} on {dataset}: sized once the data is read (its shapes)")
    if model == "mlp":
        return _mlp_profile(math.prod(shape), hidden, classes, batch_norm, dropout)
    with torch.device("meta"):
        if is_user_spec(model):
            built = _user_model(model, json.loads(args))
        else:
            built = build_model(model, shape, classes, hidden=hidden, activation=activation,
                                batch_norm=batch_norm, residual=residual)  # fmt: skip
        return _meta_profile(built.eval(), shape, task == "sequence")


def _mlp_profile(
    inputs: int, hidden: tuple[int, ...], classes: int, batch_norm: bool, dropout: bool
) -> Profile:
    widths = (inputs, *hidden, classes)
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    parameters = macs + classes + (2 if batch_norm else 1) * sum(hidden)  # BN: no bias
    per_layer = 2 + int(batch_norm) + int(dropout)
    return Profile(parameters, macs, inputs + per_layer * sum(hidden) + 2 * classes)


def _user_model(spec: str, model_args: dict) -> nn.Module:
    """The factory's model built on the meta device (no memory, instant). A factory that
    fails there is called once on the CPU: if it fails there too, the run would fail, and
    its :class:`InitlabError` is raised (a dry run refused ``width = 128.0`` only when the
    sweep ran); else :class:`NoEstimate` (its code needs real tensors). Either outcome is
    kept per factory, arguments and file version (:data:`_UNSIZED`)."""
    from initlab.models import build_user_model
    from initlab.usercode.specs import source_fingerprint

    key = (spec, json.dumps(model_args, sort_keys=True, default=str), source_fingerprint(spec))
    if key in _UNSIZED:
        raise _UNSIZED[key].with_traceback(None)
    try:
        return build_user_model(spec, model_args, checked=False)  # on meta, on purpose
    except InitlabError as exc:
        on_meta = exc
    try:
        with torch.device("cpu"):
            build_user_model(spec, model_args, checked=False)
    except InitlabError as exc:
        _UNSIZED[key] = exc
        raise
    message = f"no size estimate for {spec}: it cannot be built on the meta device ({on_meta})"
    _UNSIZED[key] = NoEstimate(message)
    raise _UNSIZED[key]


_UNSIZED: dict[tuple[str, str, str], Exception] = {}
"""What sizing a factory that fails on meta gave (its error, or :class:`NoEstimate`): a dry
run and the memory warnings size each run's model (one per batch size...), and each
failure cost a real build (12 for a 3-run sweep)."""


class NoEstimate(Exception):
    """A model whose size cannot be known without building it for real (the message says
    why); callers skip the estimate and show the note."""


def _meta_profile(model: nn.Module, shape: tuple[int, ...] | None, tokens: bool) -> Profile:
    """Parameters, and multiply-adds and activations of a forward on one fake example
    (integer token ids when ``tokens``)."""
    parameters = sum(p.numel() for p in model.parameters())
    if shape is None:
        return Profile(parameters, None, None)
    from torch.utils.flop_counter import FlopCounterMode

    activations = 0

    def count(module: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal activations
        if isinstance(output, torch.Tensor):
            activations += output[0].numel()

    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(count)
    try:
        dtype = torch.long if tokens else torch.float32
        with FlopCounterMode(display=False) as flops:
            model(torch.zeros(1, *shape, dtype=dtype, device="meta"))
    except InitlabError:
        raise
    except Exception as exc:
        first = first_line(exc)
        message = f"no compute estimate: the model's forward fails on meta ({first})"
        raise NoEstimate(message) from None
    return Profile(parameters, flops.get_total_flops() // 2, activations + math.prod(shape))


def run_bytes(config: RunConfig, found: Profile) -> int | None:
    """Bytes to train one model of ``config`` (formula in the module docstring)."""
    if found.activations is None:
        return None
    state = OPTIMIZER_STATE.get(config.optimizer, 2)
    per_activation = 2 if config.precision == "bf16" else 4
    weights = 4 * found.parameters * (2 + state)
    return weights + per_activation * config.batch_size * found.activations


def machine_memory(device: str = "auto") -> tuple[int, str] | None:
    """``(bytes, what)`` of the memory a run on ``device`` has: the GPU's for ``cuda`` (and
    ``auto`` where CUDA is available), else this machine's RAM (psutil, else sysconf)."""
    wants_gpu = device.startswith("cuda") or device == "auto"
    if wants_gpu and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0)
        if index < torch.cuda.device_count():
            total = torch.cuda.get_device_properties(index).total_memory
            return total, f"GPU cuda:{index}"
    try:
        import psutil

        return int(psutil.virtual_memory().total), "RAM"
    except ImportError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"
    except (ValueError, OSError, AttributeError):
        return None


def shortfall(parameters: int, optimizer: str, device: str, copies: int = 0) -> str:
    """``""``, or one line when training a model of ``parameters`` with ``optimizer`` surely
    needs more memory than ``device`` has: ``4 · parameters · (2 + state + copies)`` bytes
    (weights, gradients, the optimizer's state, ``copies`` more of the weights), a lower
    bound that leaves out the activations."""
    need = 4 * parameters * (2 + OPTIMIZER_STATE.get(optimizer, 2) + copies)
    have = machine_memory(device)
    if have is None or need <= have[0]:
        return ""
    return (
        f"{parameters:.3g} parameters need at least {_size(need)} to train with {optimizer}, "
        f"more than this machine's {_size(have[0])} of {have[1]}"
    )


def memory_warnings(configs, limit: int = 3) -> list[str]:
    """One line per distinct model (at most ``limit``, then a count) whose training needs
    more memory than this machine has; sized by arithmetic, nothing is allocated."""
    seen: dict[tuple, str] = {}
    for config in configs:
        key = (architecture(config), config.batch_size, config.optimizer, config.precision)
        if key in seen:
            continue
        seen[key] = ""
        try:
            need = run_bytes(config, profile(config))
        except NoEstimate:
            continue
        have = machine_memory(config.device)
        if need is not None and have is not None and need > have[0]:
            seen[key] = (
                f"warning: one model of run {config.label} needs about {_size(need)} to train "
                f"({profile(config).parameters:.3g} parameters, batch {config.batch_size}), "
                f"more than this machine's {_size(have[0])} of {have[1]}: it will not fit"
            )
    lines = [line for line in seen.values() if line]
    more = len(lines) - limit
    return lines[:limit] + ([f"warning: ... and {more} more models too big"] if more > 0 else [])


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return f"{nbytes:.3g} TB"  # pragma: no cover
