"""Coordinate data: per-layer sizes over widths (and depths), seeds and the first steps.

The measurement of ``mup``'s coordinate check, on any factory: for each width (and depth) and
seed, build the model under a parametrization (:mod:`initlab.scaling.parametrize`), train it
for ``steps`` optimizer steps on minibatches of the data (the same batches at every width)
and, at every forward pass ``t = 0 .. steps`` (``t`` updates taken so far), record for every
Linear/Conv/Embedding call (found by the probe's tracer, :func:`initlab.probe.trace.trace`) and
every RNN/LSTM/GRU call (its hidden states, :mod:`initlab.scaling.recurrent`):

- ``l1``: mean |output|; ``std``: the output's standard deviation;
- ``update`` (t ≥ 1): mean |layer(x; θ_t) − layer(x; θ_{t−1})| on the step-t input x, i.e.
  |ΔW·x + Δb|, the change the last update made to this layer's output;
- ``aligned`` (t ≥ 1, ``nn.Linear`` and subclasses keeping its ``forward``): the rms of that
  change beyond the part a random input direction would also get (:func:`aligned_update`):
  the part of the update that stays at infinite width;
- ``aligned_out`` (t ≥ 1, a Linear layer whose weight was all zeros at step 0, as muP's
  readout is): the same for its output ``W_t·x + b_t``, which is then all update (and for
  ``(logits)`` when that layer's output is the model's);

the model's logits ``std`` (module ``(logits)``), and ``l1``/``std`` of the input of every
normalization layer that is not a traced layer's output (module ``ln_f (input)``: the
residual stream, :data:`STREAM`). A tidy frame with columns :data:`COLUMNS`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from initlab.errors import InitlabError, first_line, option
from initlab.model_notes import same_weights
from initlab.probe.projections import AttentionProjection
from initlab.scaling.attention_watch import attention_modules, unscaled_notes, watch_attention
from initlab.scaling.fits import check_design, check_sizes
from initlab.scaling.parametrize import Parametrized, parametrized
from initlab.scaling.recurrent import recompute, trace
from initlab.scaling.shapes import Factory
from initlab.scaling.stream import stream_inputs, stream_rows
from initlab.sweep.footprint import shortfall
from initlab.train.output_checks import check_output
from initlab.train.preflight import ModelFailed, not_a_tensor, run_watched
from initlab.train.seeding import derive_seed
from initlab.train.tasks import model_loss

COLUMNS = ["param", "width", "depth", "seed", "step", "module", "metric", "value"]
LOGITS = "(logits)"
METRICS = ("l1", "std", "update", "aligned", "aligned_out")


@dataclass(frozen=True)
class CoordSettings:
    """What to measure: ``widths`` (increasing), ``depths`` (``()``: the factory's own),
    the parametrization, optimizer, learning rate, steps, seeds, batch size, base width
    (default: the smallest width), the factory's other keywords and the embedding tables'
    scheme (``embedding_init``, :mod:`initlab.scaling.tables`)."""

    widths: tuple[int, ...]
    param: str = "sp"
    optimizer: str = "adam"
    lr: float = 1e-2
    steps: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    depths: tuple[int, ...] = ()
    batch_size: int = 64
    base_width: int | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    embedding_init: str = "default"

    def __post_init__(self) -> None:
        widths, depths = option("--widths"), option("--depths")
        check_sizes(widths, self.widths)
        if self.depths:
            check_sizes(depths, self.depths)
        if not 1 <= self.steps <= MAX_STEPS:  # 10**9 ran for hours, saying nothing
            raise InitlabError(
                f"{option('--steps')} must be in [1, {MAX_STEPS:,}] (a coordinate check reads "
                f"the first few updates), got {self.steps}"
            )
        if not self.seeds:
            raise InitlabError(f"{option('--seeds')} must give at least one seed")
        check_design(widths, self.widths, len(self.seeds))
        if self.depths:
            check_design(depths, self.depths, len(self.seeds))
        if self.batch_size < 1:
            raise InitlabError(f"batch size must be at least 1, got {self.batch_size}")
        if self.base_width is not None and self.base_width < 1:
            raise InitlabError(
                f"{option('--base-width')} must be a positive width, got {self.base_width}"
            )

    @property
    def base(self) -> int:
        return self.base_width if self.base_width is not None else self.widths[0]


MAX_STEPS = 10_000
"""The most updates a coordinate check records per model (mup's plots show a few)."""


@dataclass(frozen=True)
class Preflight:
    """What one forward pass of the model at the largest width says before the check runs:
    the notes (what the parametrization changed or could not change) and whether the model
    has attention (an attention module, :func:`attention_modules`, or an attention call in its
    forward, :class:`AttentionWatch`): only then do the verdicts mention its 1/d scale."""

    notes: list[str]
    attention: bool
    readout: str | None = None
    """The model's output layer (:func:`initlab.layer_order.known_output_layer`; ``None``:
    unknown)."""


def where(width: int, depth: int) -> str:
    """``"width 90, depth 2"`` (``depth`` < 0: the factory has none): what an error is about."""
    return f"width {width}" + (f", depth {depth}" if depth >= 0 else "")


class DataMismatch(InitlabError):
    """The model and the data do not fit each other (a shape, or outputs against labels)."""


def check_memory(
    factory: Factory, settings: CoordSettings, shapes: Mapping[str, Any], device: torch.device
) -> None:
    """One line when the widest model (``shapes``: its parameters, found on the ``meta``
    device, :func:`initlab.scaling.shapes.infer_shapes`) surely needs more memory to train
    than ``device`` has (:func:`initlab.sweep.footprint.shortfall`, with one more copy of
    the weights: the snapshot the updates are measured against). Before any model is built
    at that width: building one first ran the machine out of memory before the line."""
    kwargs = dict(settings.kwargs) | ({"depth": settings.depths[0]} if settings.depths else {})
    counted = {s.tied or s.name: s for s in shapes.values()}  # a tied tensor once
    parameters = sum(math.prod(s.shape) for s in counted.values())
    if short := shortfall(parameters, settings.optimizer, str(device), copies=1):
        at = where(settings.widths[-1], factory_depth(factory, kwargs))
        raise InitlabError(f"{at}: {short}; give smaller {option('--widths')}")


def _check_own_draws(first: nn.Module, second: nn.Module, seeds: tuple[int, ...]) -> None:
    """Raise :class:`InitlabError` when the models of the first two seeds hold the same
    weights: a factory that seeds torch's RNG itself builds one model for every seed, the
    seeds then differ only in their minibatches, and the fits' intervals (the seed-to-seed
    spread) shrink to that noise, flagging anything with confidence."""
    if same_weights(first, second):
        raise InitlabError(
            f"the model factory builds the same weights for seeds {seeds[0]} and {seeds[1]} "
            "(does it call torch.manual_seed?): the check needs each seed's own draw; remove "
            "that call, or seed only when given a seed argument"
        )


def preflight(
    factory: Factory,
    settings: CoordSettings,
    batches: Batches,
    device: torch.device,
    targets: tuple[str, Tensor, int],
) -> Preflight:
    """The model at the largest width (and the first depth) under the parametrization: its
    notes (:class:`Preflight`), and a check that it runs on the data and its outputs fit the
    ``targets`` (task, training targets, number of classes) as ``compare`` checks them (one
    forward pass on two examples; one line naming the width and depth if not)."""
    kwargs = dict(settings.kwargs) | ({"depth": settings.depths[0]} if settings.depths else {})
    width, seeds = settings.widths[-1], settings.seeds

    def build(seed: int) -> Parametrized:
        return parametrized(
            factory, settings.param, width=width, base_width=settings.base,
            optimizer=settings.optimizer, lr=settings.lr, kwargs=kwargs, seed=seed,
        )  # fmt: skip

    built = build(seeds[0])
    if len(seeds) > 1:
        _check_own_draws(built.model, build(seeds[1]).model, seeds)
    x = batches(seeds[0], 0)[0][:2]
    at = where(width, factory_depth(factory, kwargs))
    try:
        watch, out = watch_attention(built.model.to(device), x)
    except Exception as exc:  # run again, watched: the shapes and the module that failed
        first = f"the model cannot run on the data: {first_line(exc)}"
        try:
            with torch.no_grad():
                run_watched(built.model, x)
        except ModelFailed as failed:
            first = str(failed)
        except Exception:  # the first error's line stands
            pass
        raise DataMismatch(f"{at}: {first}") from None
    if not isinstance(out, Tensor):
        raise InitlabError(f"{at}: {not_a_tensor(out)}")
    task, labels, classes = targets
    try:
        check_output(task, out.detach().cpu(), labels, classes)
    except InitlabError as exc:
        raise DataMismatch(f"{at}: {exc}") from None
    notes = built.notes + (unscaled_notes(watch) if settings.param == "mup" else [])
    return Preflight(notes, bool(watch.calls or attention_modules(built.model)), built.readout)


Batches = Callable[[int, int], tuple[Tensor, Tensor]]
"""``batches(seed, step)`` → ``(x, y)`` on the device: the same at every width."""
Progress = Callable[[int, int], None]
"""``progress(done, total)``: how many of the ``total`` models (depths × widths × seeds) have
been measured; called with 0 before the first."""


def batch_source(x: Tensor, y: Tensor, batch_size: int, device: torch.device) -> Batches:
    """Minibatches drawn without replacement from ``(x, y)`` by a generator seeded from
    ``(seed, step)``."""

    def batches(seed: int, step: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(1_000_003 * seed + step)
        idx = torch.randperm(len(x), generator=gen)[: min(batch_size, len(x))]
        return x[idx].to(device), y[idx].to(device)

    return batches


def aligned_update(change: Tensor, x: Tensor, delta_w: Tensor) -> float:
    """The rms of a Linear layer's output change ``u = ΔW·x + Δb`` beyond its
    random-alignment floor: ``sqrt(max(mean(u²) − mean(ΔW²)·fan_in·mean(x²), 0))``.

    ``mean(ΔW²)·‖x‖²`` is ``E mean((ΔW·r)²)`` for a direction ``r`` drawn uniformly with
    ``‖r‖ = ‖x‖``: what the update does to an input that is not aligned with it. Under muP
    (ΔW entries ∝ 1/width, ``‖x‖² ∝ width``) that floor is ∝ width^−½ and vanishes at large
    width; what remains is the aligned part, the one Tensor Programs' ``Θ(1)`` is about
    (docs/scaling.md, §2 and §6)."""
    change, x, delta_w = change.double(), x.double(), delta_w.double()
    floor = delta_w.square().mean() * x.shape[-1] * x.square().mean()
    return float((change.square().mean() - floor).clamp(min=0).sqrt())


def _plain_linear(module: nn.Module) -> bool:
    """An ``nn.Linear`` computing ``x Wᵀ + b`` (a subclass with its own ``forward``, e.g. one
    that rescales its input, may not: no aligned metrics for it)."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _state_before(module: nn.Module, prev: dict[int, dict[str, Tensor]]) -> dict | None:
    """A traced layer's parameters in the snapshot ``prev`` (an attention's query, key or
    value map: its rows of the attention's parameters)."""
    if isinstance(module, AttentionProjection):
        owner = prev.get(id(module.owner))
        return None if owner is None else module.state_in(owner)
    return prev.get(id(module))


def _rows(
    calls: list, out: Tensor, prev: dict[int, dict[str, Tensor]] | None, zero: set[int]
) -> list[tuple]:
    """``(module, metric, value)`` of one traced forward pass (``zero``: the ids of the
    Linear layers whose weight was all zeros at step 0). A module called again in the pass
    (weights shared across blocks, ALBERT-style) is its own series, ``name[2]``, as in the
    diagnosis: pooled under one name, the calls read as extra seeds (two rows of 0.18 and
    5.8 per width) and no fit was ever conclusive."""
    rows = []
    seen: dict[str, int] = {}
    for call in calls:
        number = seen[call.name] = seen.get(call.name, 0) + 1
        name = call.name if number == 1 else f"{call.name}[{number}]"
        rows += _call_rows(call, name, out, prev, zero)
    rows.append((LOGITS, "std", float(out.detach().float().std())))
    return rows


def _call_rows(
    call: Any, name: str, out: Tensor, prev: dict[int, dict[str, Tensor]] | None, zero: set[int]
) -> list[tuple]:
    """:func:`_rows` of one layer call, labelled ``name``."""
    y = call.output[1].float()
    rows = [(name, "l1", float(y.abs().mean())), (name, "std", float(y.std()))]
    state = None if prev is None else _state_before(call.module, prev)
    x = call.input[1]
    if state is None or x is None:
        return rows
    with torch.no_grad():
        change = y - recompute(call.module, state, x).float()
    rows.append((name, "update", float(change.abs().mean())))
    if _plain_linear(call.module):
        weight = call.module.weight.detach()
        rows.append((name, "aligned", aligned_update(change, x, weight - state["weight"])))
        if id(call.module) in zero:  # its output is all update: W_t = W_t − W_0
            value = aligned_update(y, x, weight)
            rows.append((name, "aligned_out", value))
            if call.output[0] is out:
                rows.append((LOGITS, "aligned_out", value))
    return rows


def factory_depth(factory: Factory, kwargs: Mapping[str, Any]) -> int:
    """The ``depth`` the factory is called with (its default when not given; -1: none)."""
    if "depth" in kwargs:
        return int(kwargs["depth"])
    try:
        default = inspect.signature(factory).parameters["depth"].default
    except (KeyError, TypeError, ValueError):
        return -1
    return int(default) if isinstance(default, int) else -1


def _snapshot(model: nn.Module) -> dict[int, dict[str, Tensor]]:
    return {
        id(m): {n: p.detach().clone() for n, p in m.named_parameters(recurse=False)}
        for m in model.modules()
    }


def _forward(model: nn.Module, x: Tensor, step: int) -> tuple[list, Any, list[tuple]]:
    """The traced forward pass: its layer calls, output and the rows of the inputs of its
    normalization layers (:func:`stream_rows`); at step 0 (before any update) an exception
    is the model not running on the data: one line."""
    seen: list[tuple[str, Tensor]] = []
    try:
        with torch.enable_grad():
            calls, out = trace(model, x, more=stream_inputs(model, seen))
            return calls, out, stream_rows(seen, calls)
    except Exception as exc:
        if step:
            raise
        first = first_line(exc)
        raise InitlabError(f"the model cannot run on the data: {first}") from None


def run_one(
    built: Parametrized, batches: Batches, seed: int, steps: int, loss: Callable
) -> list[tuple]:
    """``(step, module, metric, value)`` rows of ``steps`` updates of one model."""
    groups = [{k: v for k, v in g.items() if k != "names"} for g in built.param_groups()]
    opt_class = torch.optim.SGD if built.optimizer == "sgd" else torch.optim.Adam
    optimizer = opt_class(groups, lr=built.lr)
    model, prev, rows = built.model, None, []
    zero = {id(m) for m in model.modules() if _plain_linear(m) and not m.weight.count_nonzero()}
    model.train()
    torch.manual_seed(derive_seed(seed, "dropout"))  # the same masks on every call
    for step in range(steps + 1):
        x, y = batches(seed, step)
        calls, out, stream = _forward(model, x, step)
        if not isinstance(out, Tensor):
            raise InitlabError(not_a_tensor(out))
        rows += [(step, *r) for r in _rows(calls, out, prev, zero) + stream]
        if step == steps:
            break
        prev = _snapshot(model)
        optimizer.zero_grad(set_to_none=True)
        loss(out, y).backward()
        optimizer.step()
    return rows


def coord_data(
    factory: Factory,
    settings: CoordSettings,
    batches: Batches,
    task: str,
    device: torch.device,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The tidy coordinate table (:data:`COLUMNS`) over widths × depths × seeds;
    ``progress(done, total)`` after each model (and with 0 first), when given."""
    loss = model_loss(task)
    frames: list[pd.DataFrame] = []
    total = len(settings.depths or (None,)) * len(settings.widths) * len(settings.seeds)
    if progress is not None:
        progress(0, total)
    for depth in settings.depths or (None,):
        kwargs = dict(settings.kwargs) | ({} if depth is None else {"depth": depth})
        depth_of = factory_depth(factory, kwargs)
        for width in settings.widths:
            for seed in settings.seeds:
                built = parametrized(
                    factory,
                    settings.param,
                    width=width,
                    base_width=settings.base,
                    optimizer=settings.optimizer,
                    lr=settings.lr,
                    kwargs=kwargs,
                    seed=seed,
                )
                built.model.to(device)
                try:
                    rows = run_one(built, batches, seed, settings.steps, loss)
                except InitlabError as exc:  # say which model it was
                    raise InitlabError(f"{where(width, depth_of)}: {exc}") from None
                frame = pd.DataFrame(rows, columns=["step", "module", "metric", "value"])
                frame.insert(0, "seed", seed)
                frame.insert(0, "depth", depth_of)
                frame.insert(0, "width", width)
                frame.insert(0, "param", settings.param)
                frames.append(frame)
                if progress is not None:
                    progress(len(frames), total)
    return pd.concat(frames, ignore_index=True)[COLUMNS]
