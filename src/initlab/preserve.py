"""Run a user's model and leave it exactly as it was: :func:`preserved`.

Every place where initlab runs a model only to look at it (the probe's forward and backward
pass, the activation tracer, ``torch.fx`` and run-based structure traces, the doctor's
input check) goes through this one context manager, so that ``diagnose``, ``recommend``,
``plan`` and ``find_structure`` change nothing a later step sees: a forward can write
buffers (BatchNorm's running statistics and batch counter, a
``parametrizations.spectral_norm`` power-iteration state ``_u``/``_v``, a counter of the
user's own) or rebind them; it draws from the global RNG (dropout) and may be run in
another mode.

A leaf module: it imports nothing of initlab but its errors, so any module may use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedTensorMixin

from initlab.errors import UnknownNameError

MODES = ("train", "eval", "current")
"""``"train"``, ``"eval"``: the mode the block runs the model in; ``"current"``: as it is."""


@contextlib.contextmanager
def preserved(model: nn.Module, mode: str = "train", seed: int = 0) -> Iterator[None]:
    """Run a block on ``model`` and leave it exactly as it was.

    Saves and restores every module's ``training`` flag, every parameter and buffer slot,
    and the values of every buffer (BatchNorm running statistics and batch counters, a
    spectral norm's power iteration state, whatever a forward writes in place); forks the
    global RNG (seeded with ``seed`` inside, so dropout masks are reproducible and the
    caller's RNG stream is untouched). ``mode``: ``"train"`` (what a training step sees:
    batch statistics, dropout on), ``"eval"`` or ``"current"`` (the modes as they are).
    """
    if mode not in MODES:
        raise UnknownNameError("probe mode", mode, MODES)
    flags = [(m, m.training) for m in model.modules()]
    saved = _values(model)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(int(seed))  # torch.manual_seed is slower:
            for device in devices:  # it queues a lazy CUDA seeding with a stack trace
                torch.cuda.default_generators[device].manual_seed(int(seed))
            if mode != "current":
                model.train(mode == "train")
            yield
    finally:
        _restore(saved)
        for module, flag in flags:
            module.training = flag


Saved = list[tuple[dict[str, Tensor | None], str, Tensor | None, Tensor | None]]
"""``(a module's _parameters or _buffers, a name, the tensor there, a copy of its values)``."""


def _values(model: nn.Module) -> Saved:
    """Each parameter and buffer slot of every module of ``model``: the tensor in it and,
    for a buffer, a copy of its values (one copy per shared tensor; lazy, not yet
    materialized ones have no values to keep). Parameters are put back in their slots but
    not copied: a forward does not write them in place, and a copy of every weight would
    double a large model's memory on its device."""
    copies: dict[int, Tensor] = {}
    saved: Saved = []
    for module in model.modules():
        for slots in (module._parameters, module._buffers):
            for name, tensor in slots.items():
                copy = None
                keep = slots is module._buffers and tensor is not None
                if keep and not isinstance(tensor, UninitializedTensorMixin):
                    copy = copies.setdefault(id(tensor), tensor.detach().clone())
                saved.append((slots, name, tensor, copy))
    return saved


def _restore(saved: Saved) -> None:
    """Put every saved tensor back in its slot (a forward that rebinds a buffer,
    ``self.count = self.count + 1``, is undone too) and its saved values back into it, in
    place: whoever holds the tensor (an optimizer) sees the restored values."""
    with torch.no_grad():
        for slots, name, tensor, values in saved:
            slots[name] = tensor
            if tensor is not None and values is not None and tensor.shape == values.shape:
                tensor.copy_(values)
