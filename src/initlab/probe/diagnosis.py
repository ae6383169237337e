"""The :class:`Diagnosis` of one network: a per-layer table, findings, and figures.

>>> d = initlab.probe.diagnose(model, x, y)
>>> d.findings                     # [] when healthy; else Finding(name, layers, ...)
>>> d.layers[["layer", "post_std", "pre_grad_std"]]
>>> d.plot("diagnosis.png"); d.to_rows()   # tidy {layer, metric, value}
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor, nn

from initlab.arguments import as_inputs, check_learnable, check_module, check_runs
from initlab.embedding_init import tied_tables
from initlab.errors import InitlabError, first_line
from initlab.initializers import Fans, fans_of_module, fans_of_tensor
from initlab.jsonsafe import json_number
from initlab.preserve import preserved
from initlab.probe import findings as verdicts
from initlab.probe.attention import AttentionRecorder, attention_findings
from initlab.probe.branches import dormant_findings, with_branches
from initlab.probe.cautions import input_scale_cautions, theory_cautions
from initlab.probe.findings import Finding
from initlab.probe.hooks import LayerTensors, Loss, collect, watching
from initlab.probe.logits import logit_findings
from initlab.probe.meanfield import predicted_q
from initlab.probe.metrics import METRICS
from initlab.probe.recurrent import (
    LEGEND,
    RecurrentRecorder,
    blame_logits,
    recurrent_findings,
    recurrent_frame,
)
from initlab.probe.recurrent import SHOWN as RECURRENT_SHOWN
from initlab.ranges import check_number

HIST_VALUES = 20_000
"""Values kept per layer for the histograms (evenly spaced over the batch, deterministic)."""
INFO_COLUMNS = ("layer", "index", "type", "activation", "normalized", "fan_in", "fan_out", "units")
SHOWN = {
    "layer": "layer",
    "activation": "act",
    "pre_msq": "z msq",
    "q_pred": "q (MF)",
    "post_std": "act std",
    "saturated_frac": "sat",
    "dead_frac": "dead",
    "weight_std": "W std",
    "weight_grad_norm": "|dL/dW|",
    "pre_grad_std": "dL/dz std",
    "weight_duplicates": "same W",
}
"""The columns of the printed table (``str(d)``, the CLI), with their short headers."""
WHERE_DEFINED = ("q_pred", "saturated_frac")
"""Shown columns that only some models have (mean field's ``q``, saturation of a bounded
activation): left out of the table when no layer has a value (a transformer's "—" column)."""


@dataclass
class Diagnosis:
    """Per-layer statistics of one forward/backward pass, and the verdicts on them.

    ``layers``: one row per Linear/Conv layer call, columns :data:`INFO_COLUMNS`, every
    metric of :data:`initlab.probe.metrics.METRICS`, and ``q_pred`` (the mean-field
    prediction of ``pre_msq``; NaN where it does not apply). ``findings``: the
    :class:`Finding` list (empty = healthy). ``summary``: the depth ratios of
    :func:`initlab.probe.findings.summary`. ``samples``: per hidden layer, sampled
    ``activation`` values and back-propagated ``gradient`` (dL/dz) values, for histograms.
    """

    layers: pd.DataFrame
    findings: list[Finding]
    summary: dict[str, float] = field(default_factory=dict)
    samples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    label: str = ""
    unseen: list[str] = field(default_factory=list)
    recurrent: pd.DataFrame = field(default_factory=pd.DataFrame)
    """One row per layer and direction of each ``nn.RNN``/``nn.LSTM``/``nn.GRU``, unrolled
    step by step (:mod:`initlab.probe.recurrent`): states, gates, how far gradients reach."""
    cautions: list[str] = field(default_factory=list)
    """What mean field warns of where no finding fired (:mod:`initlab.probe.cautions`): a
    healthy diagnosis may still be deeper than its scale trains."""

    @property
    def unseen_note(self) -> str:
        """One line naming the recurrent modules no table shows ('' when none)."""
        if not self.unseen:
            return ""
        return (
            f"not measured: {', '.join(self.unseen)} (a recurrent cell, a packed sequence, "
            "an LSTM with proj_size or a module the forward did not call, which the probe "
            "does not unroll; `initlab plan` shows how a scheme sets its weights)"
        )

    def recurrent_table(self) -> pd.DataFrame:
        """The recurrent rows' printed columns under their short headers."""
        return self.recurrent[list(RECURRENT_SHOWN)].rename(columns=RECURRENT_SHOWN)

    @property
    def names(self) -> list[str]:
        """The names of the findings that fired."""
        return [f.name for f in self.findings]

    @property
    def healthy(self) -> bool:
        return not self.findings

    def finding(self, name: str) -> Finding | None:
        """The finding called ``name``, or ``None`` if it did not fire."""
        return next((f for f in self.findings if f.name == name), None)

    def to_rows(self) -> list[dict[str, Any]]:
        """Tidy long rows ``{layer, metric, value}``: every layer × every name of ``METRICS``."""
        return frame_rows(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """``label``, ``healthy``, ``findings`` (dicts) and ``summary`` (JSON-ready)."""
        return {
            "label": self.label,
            "healthy": self.healthy,
            "findings": [f.to_dict() for f in self.findings],
            "summary": {k: json_number(v) for k, v in self.summary.items()},
            "cautions": list(self.cautions),
            "recurrent": [
                {k: json_number(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in self.recurrent.to_dict("records")
            ],
        }

    def table(self) -> pd.DataFrame:
        """The printed columns (:data:`SHOWN`) under their short headers, without those of
        :data:`WHERE_DEFINED` that no layer has a value for."""
        shown = [c for c in SHOWN if c not in WHERE_DEFINED or self.layers[c].notna().any()]
        return self.layers[shown].rename(columns=SHOWN)

    def plot(self, path: str | Path) -> Path:
        """Histograms (Glorot & Bengio 2010, Fig. 6–7) and per-layer profiles in one figure."""
        from initlab.probe.plots import plot_diagnosis

        return plot_diagnosis(self, Path(path))

    def __str__(self) -> str:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            text = self.table().to_string(index=False, float_format=lambda v: f"{v:.3g}")
        title = f"diagnosis {self.label}".strip()
        if len(self.recurrent):
            shown = self.recurrent_table().to_string(index=False, float_format=_g3)
            text = f"{text}\nrecurrent layers:\n{shown}\n{LEGEND}"
        if self.unseen:
            text = f"{text}\n{self.unseen_note}"
        cautions = "".join(f"\ncaution: {c}" for c in self.cautions)
        if not self.findings:
            return f"{title}\n{text}\nno findings: healthy{cautions}"
        listed = "\n".join(f"- {f}" for f in self.findings)
        return f"{title}\n{text}\nfindings:\n{listed}{cautions}"

    def __repr__(self) -> str:
        """What a REPL or a notebook's text output shows: the table and the findings, as
        ``print`` does (the dataclass's own repr dumped the DataFrames)."""
        return str(self)

    def _repr_html_(self) -> str:
        items = "".join(
            f"<li><b>{f.name}</b>: {f.message}<br><i>{f.suggestion}</i></li>" for f in self.findings
        )
        verdict = f"<ul>{items}</ul>" if items else "<p>no findings: healthy</p>"
        verdict += "".join(f"<p><i>caution: {html.escape(c)}</i></p>" for c in self.cautions)
        table = self.table().to_html(index=False, float_format=lambda v: f"{v:.3g}")
        note = f"<p>{self.unseen_note}</p>" if self.unseen else ""
        if len(self.recurrent):
            shown = self.recurrent_table().to_html(index=False, float_format=_g3)
            note = f"<p>recurrent layers:</p>{shown}<p>{LEGEND}</p>{note}"
        return f"<h4>diagnosis {self.label}</h4>{table}{note}{verdict}"


def _g3(v: float) -> str:
    return f"{v:.3g}"


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``{layer, metric, value}`` for every row of a layers table and every name of METRICS."""
    return [
        {"layer": str(layer), "metric": metric, "value": float(value)}
        for layer, row in zip(
            frame["layer"], frame[list(METRICS)].itertuples(index=False), strict=True
        )
        for metric, value in zip(METRICS, row, strict=True)
    ]


def layer_frame(layers: list[LayerTensors], q_pred: list[float] | None = None) -> pd.DataFrame:
    """The per-layer table of :class:`Diagnosis` from collected tensors."""
    rows = []
    for index, layer in enumerate(layers):
        fans = _fans(layer.module)
        units = layer.weight.shape[0]
        info = (
            layer.name,
            index,
            type(layer.module).__name__,
            layer.activation,
            layer.normalized,
            fans.fan_in,
            fans.fan_out,
            units,
        )
        rows.append({**dict(zip(INFO_COLUMNS, info, strict=True)), **layer.metrics()})
    frame = pd.DataFrame(rows, columns=[*INFO_COLUMNS, *METRICS])
    frame["q_pred"] = q_pred if q_pred is not None else math.nan
    return frame


def _fans(module: nn.Module) -> Fans:
    """A layer's fans by the module rule; an embedding table's ``[V, D]`` by the tensor
    rule (fan_in D, fan_out V: :mod:`initlab.embedding_init`)."""
    if isinstance(module, nn.Embedding):
        return fans_of_tensor(module.weight)
    return fans_of_module(module)


def _sample(x: Tensor | None) -> np.ndarray:
    if x is None:
        return np.empty(0, dtype=np.float32)
    flat = x.detach().reshape(-1).float().cpu().numpy()
    if flat.size > HIST_VALUES:
        flat = flat[np.linspace(0, flat.size - 1, HIST_VALUES).astype(np.int64)]
    return flat


def measure(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    loss: Loss | None = None,
    *,
    mode: str = "train",
    seed: int = 0,
) -> pd.DataFrame:
    """The per-layer table only (no theory, no verdicts): what tracking records."""
    return layer_frame(collect(model, inputs, targets, loss, mode=mode, seed=seed))


def diagnose(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    loss: Loss | None = None,
    *,
    mode: str = "train",
    seed: int = 0,
    label: str = "",
) -> Diagnosis:
    """Diagnose ``model`` on one batch: statistics per layer, findings, suggestions.

    One forward and one backward pass (:func:`initlab.probe.hooks.collect`): of the task
    loss ``loss(output, targets)`` when ``targets`` are given (by default: cross-entropy for
    class labels, MSE for float targets, token cross-entropy for ``[B, T]`` token ids),
    else of ``<output, v>`` with a fixed-seed unit-variance cotangent ``v``. ``mode="train"``
    (default) shows what a training step sees (BatchNorm batch statistics, dropout from a
    ``seed``-ed RNG); ``"eval"`` and ``"current"`` are the alternatives. The model is left
    exactly as it was: hooks removed, ``.grad`` never written, modes and buffers restored.

    ``inputs`` and ``targets`` may be numpy arrays; both go to the device of the model's
    parameters and follow the rules of ``--data`` (:mod:`initlab.data.tasks`): signed
    integer inputs are token ids (int64), other inputs (``uint8`` pixels included) take the
    parameters' float dtype, except ``uint8``/``bool`` inputs ``[B, T]`` with integer
    targets of their shape, a sequence's token ids (int64) as compare reads them; integer
    labels of any dtype, and whole-number floats (``[B]`` for outputs ``[B, K]``, ``[B, T]``
    for outputs ``[B, T, V]``, -100 being padding) become int64 labels or token ids. Each
    mistake is one line of :class:`InitlabError`: under the default loss, targets other than
    ``[B, T]`` for outputs ``[B, T, V]`` (checked first: flat ones, ``[B, V, T]`` logits) and
    one-hot targets (``[B, K]``, ``[B, T, V]``); string labels, negative labels, NaN/inf
    targets, and integer targets for a model with one output (cross-entropy over one class).
    """
    model = check_module(model, "diagnose")
    check_number("seed", seed)  # 'a' was blamed on the model's forward and backward
    if loss is not None and not callable(loss):
        raise InitlabError(
            f"loss takes a function loss(output, targets) -> scalar, e.g. "
            f"torch.nn.functional.mse_loss (or none: the task's default), got {loss!r}"
        )
    inputs, targets = _as_batch(model, inputs, targets, loss)
    with preserved(model, "current"):  # reading a parametrized weight may write its state
        return _diagnosis(model, inputs, targets, loss, mode, seed, label)


def _diagnosis(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None,
    loss: Loss | None,
    mode: str,
    seed: int,
    label: str,
) -> Diagnosis:
    """:func:`diagnose`'s work on a checked model and batch."""
    attention, recurrent = AttentionRecorder(model), RecurrentRecorder(model)
    watch = watching(recurrent, attention)  # entered by collect, around the forward only
    try:
        layers = collect(model, inputs, targets, loss, mode=mode, seed=seed, watch=watch)
    except InitlabError:
        raise
    except Exception as exc:  # check_runs ran it in eval mode; this pass may train
        first = first_line(exc)[:200]
        raise InitlabError(
            f"diagnose: the model's forward and backward in {mode!r} mode failed on inputs of "
            f"shape {list(inputs.shape)} ({first})"
        ) from None
    if not layers:
        raise InitlabError(
            f"nothing to diagnose: the forward pass of {type(model).__name__} called no "
            "nn.Linear, nn.Conv*, nn.Embedding or nn.MultiheadAttention module (the probe's "
            "layers; bare "
            "nn.Parameters used in F.linear and RNNs have no row)"
        )
    frame = layer_frame(layers, predicted_q(layers))
    samples = {
        layer.name: {"activation": _sample(layer.post), "gradient": _sample(layer.pre_grad)}
        for layer in layers[:-1]
    }
    unrolled = recurrent_frame(recurrent.calls, seed)
    unseen = [
        f"{name or '(model)'} ({type(module).__name__})"
        for name, module in model.named_modules()
        if isinstance(module, (nn.RNNBase, nn.RNNCellBase))
        and recurrent.calls.get(name or "(model)") is None
    ]
    frame = with_branches(frame, model, inputs)
    modules = dict(model.named_modules())  # a readout whose weight is an embedding table's
    frame["tied_table"] = [
        next(iter(tied_tables(model, n)), "") if n in modules else "" for n in frame["layer"]
    ]
    findings = verdicts.find(frame)
    if _reads_logits(targets, loss):
        findings += logit_findings(frame)
    findings += dormant_findings(frame) + attention_findings(attention.records)
    findings = blame_logits(findings + recurrent_findings(unrolled), unrolled)
    summary = verdicts.summary(frame)
    cautions = input_scale_cautions(inputs) + theory_cautions(frame, findings)
    return Diagnosis(frame, findings, summary, samples, label, unseen, unrolled, cautions)


def _as_batch(
    model: nn.Module, inputs: object, targets: object, loss: Loss | None
) -> tuple[Tensor, Tensor | None]:
    """``inputs`` and ``targets`` as tensors the model takes, by the data loader's rules
    (:func:`~initlab.arguments.as_inputs`, :func:`initlab.data.tasks.batch_targets`; see
    :func:`diagnose`), the model checked to run on the inputs
    (:func:`~initlab.arguments.check_runs`) and, under the default loss, the targets read
    against what it returns: their shape first for outputs ``[B, T, V]``
    (:func:`~initlab.arguments.check_token_targets`), then their values, and something to
    learn from them (:func:`~initlab.arguments.check_learnable`): each mistake is one line.
    With a ``loss`` of the caller's, targets are passed as given (±1 labels for a hinge
    loss, one-hot rows), checked real only."""
    from initlab.arguments import check_token_targets
    from initlab.data.tasks import batch_targets, check_target_form
    from initlab.data.values import as_tensor

    if targets is None or isinstance(targets, Tensor):  # as_tensor would copy it to the CPU
        y = None if targets is None else targets.detach()
    else:
        y = as_tensor(targets, "targets", "diagnose", labels=True)
    x = as_inputs(model, inputs, y)
    if y is not None and loss is not None:
        if y.dtype.is_complex or not bool(y.isfinite().all()):
            raise InitlabError("diagnose: targets must be real, finite numbers")
    elif y is not None:  # what needs no output first, as the loader's order
        check_target_form(y, x, "diagnose: targets")
    output = check_runs(model, x, "diagnose", given=inputs)
    if y is not None and loss is None:
        check_token_targets(output, y, "diagnose")
        shape = tuple(output.shape) if isinstance(output, Tensor) and output.dim() <= 3 else ()
        outputs = shape or getattr(_last_linear(model), "out_features", 1)  # [B, K] or [B, T, V]
        y = batch_targets(y, outputs, x, what="diagnose: targets")
        check_learnable(output, y, "diagnose")
    return x, None if y is None else y.to(x.device)


def _last_linear(model: nn.Module) -> nn.Module | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _reads_logits(targets: Tensor | None, loss: Loss | None) -> bool:
    """Whether the outputs are class logits: integer targets under the default loss or a
    task loss of initlab's that is a cross-entropy (``initlab diagnose`` passes the task's)."""
    if targets is None or targets.is_floating_point():
        return False
    return loss is None or getattr(loss, "task", None) in ("classification", "sequence")
