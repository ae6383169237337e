"""Recurrent layers at init: how far a gradient reaches back in time, and the gates.

An ``nn.RNN``/``nn.LSTM``/``nn.GRU`` runs its time steps inside one kernel, so the probe's
per-layer table has no row for it. :class:`RecurrentRecorder` keeps the input of each such
module's first call during diagnosis's forward pass; :func:`recurrent_frame` then unrolls
each of its layers (and directions) step by step with the module's own weights, in PyTorch's
gate order, and measures, on the batch's first :data:`SEQUENCES` sequences of ``T`` steps:

- ``state_std_first`` / ``state_std_last``: the std of the hidden state ``h`` at the first
  and the last step (a state that dies or blows up along the sequence);
- ``gradient_reach``: ``‖∂L/∂h_1‖ / ‖∂L/∂h_T‖`` for ``L = <h_T, v>`` with a fixed-seed
  unit-normal ``v``: the share of a gradient arriving at the last step that reaches back to
  the first through the recurrence (Pascanu, Mikolov & Bengio 2013); ``per_step`` =
  ``gradient_reach^(1/(T-1))``, its geometric mean factor per step. A plain tanh RNN with
  recurrent matrix ``W`` multiplies it by about ``‖W‖ · tanh'`` each step: PyTorch's default
  ``U(±1/sqrt(H))`` gives ``W`` a spectral radius near ``1/sqrt(3)``, an orthogonal ``W`` 1;
  an LSTM's cell carries it by the forget gate ``f`` (about 0.5 with PyTorch's zero-mean
  biases, ``σ(1) ≈ 0.73`` with a forget-gate bias of 1, Jozefowicz et al. 2015);
- ``gate_mean``: the mean forget gate ``f`` of an LSTM, or the GRU's update gate ``z`` (the
  share of the old state kept; NaN for a plain RNN);
- ``gate_saturated``: the share of sigmoid gate values below 0.01 or above 0.99.

``exploding_through_time`` fires when ``gradient_reach`` exceeds :data:`REACH_HIGH`, and
``saturated_gates`` when more than half of a layer's gate values are saturated. There is no
"vanishing" verdict: at init every scheme loses most of a gradient over a few dozen steps
(at T = 32 and widths 64–256, ``per_step`` is 0.49–0.59 for PyTorch's default RNN and LSTM,
0.70–0.82 for an orthogonal tanh RNN and 0.75–0.77 for an LSTM with initlab's orthogonal
recurrent matrices and forget-gate bias 1: a reach of 1e-10 to 2e-3), so the columns compare
inits and ``initlab compare`` says which trains better. Inter-layer dropout is not applied
(diagnosis reads the weights), a call given an initial state starts from it, and a
``PackedSequence`` input or an LSTM with ``proj_size`` is not unrolled: its module stays
in :attr:`~initlab.probe.diagnosis.Diagnosis.unseen`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pandas as pd
import torch
from torch import Tensor, nn

from initlab.probe.findings import SATURATION_FRAC, Finding

SEQUENCES = 16
"""How many of the batch's sequences are unrolled (the measures pool them)."""
REACH_HIGH = 1e3
"""``exploding_through_time`` fires when a gradient grows by more than this on its way back."""
COLUMNS = [
    "layer", "cell", "steps", "state_std_first", "state_std_last",
    "gradient_reach", "per_step", "gate_mean", "gate_saturated",
]  # fmt: skip
SHOWN = {
    "layer": "layer",
    "cell": "cell",
    "steps": "T",
    "state_std_first": "h std (t=1)",
    "state_std_last": "h std (t=T)",
    "gradient_reach": "grad reach",
    "per_step": "per step",
    "gate_mean": "forget/keep",
    "gate_saturated": "gate sat",
}
"""The printed columns of :func:`recurrent_frame` with their short headers."""
LEGEND = (
    "grad reach: share of a gradient at step T that reaches step 1 through the recurrence "
    "(per step: its geometric mean factor); forget/keep: mean LSTM forget gate or GRU "
    "update gate; gate sat: sigmoid gates below 0.01 or above 0.99."
)


class RecurrentRecorder:
    """``with RecurrentRecorder(model) as rec: model(x)``: ``rec.calls`` maps each
    ``nn.RNNBase`` module's name to ``(module, input, initial state)`` of its first call
    (detached), or to ``None`` when it cannot be unrolled (a ``PackedSequence``, ``proj_size``)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.calls: dict[str, tuple[nn.RNNBase, Tensor, object] | None] = {}
        self._handles: list = []

    def __enter__(self) -> RecurrentRecorder:
        for name, module in self.model.named_modules():
            if isinstance(module, nn.RNNBase):
                hook = self._hook(name or "(model)")
                self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Callable:
        def record(module: nn.RNNBase, args: tuple, kwargs: dict) -> None:
            if name in self.calls:
                return
            x = args[0] if args else kwargs.get("input")
            state = args[1] if len(args) > 1 else kwargs.get("hx")
            usable = isinstance(x, Tensor) and x.is_floating_point() and x.dim() in (2, 3)
            if not usable or getattr(module, "proj_size", 0):
                self.calls[name] = None
                return
            self.calls[name] = (module, x.detach(), _detached(state))

        return record


def _detached(state: object) -> object:
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple):
        return tuple(_detached(s) for s in state)
    return None


def recurrent_frame(calls: dict, seed: int = 0) -> pd.DataFrame:
    """One row (:data:`COLUMNS`) per layer and direction of each recorded call."""
    rows = []
    for name, call in calls.items():
        if call is not None:
            with torch.enable_grad():
                rows += unroll(name, *call, seed=seed)[1]
    return pd.DataFrame(rows, columns=COLUMNS)


def unroll(
    name: str, module: nn.RNNBase, x: Tensor, state: object = None, seed: int = 0
) -> tuple[Tensor, list[dict]]:
    """Unroll every layer of ``module`` on the first :data:`SEQUENCES` sequences of ``x``
    (``[T, B, F]``, ``[B, T, F]`` batch first, or one ``[T, F]``) from the initial ``state``
    (``h``, or ``(h, c)`` for an LSTM; ``None``: zeros): the last layer's outputs ``[T, B,
    D·H]`` (what ``module(x)[0]`` holds, time first) and one row of measures per layer and
    direction, named ``name`` (``name.l1_reverse`` for one of several)."""
    if x.dim() == 2:
        x = x.unsqueeze(1)
    elif module.batch_first:
        x = x.transpose(0, 1)
    x = x[:, :SEQUENCES].to(next(module.parameters()).dtype)
    directions = 2 if module.bidirectional else 1
    rows = []
    for layer in range(module.num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            h0, c0 = _initial(module, state, layer * directions + direction, x.shape[1])
            sequence = x.flip(0) if direction else x
            states, measures = _unroll(module, suffix, sequence, h0, c0, seed)
            label = f"{name}.{suffix}" if module.num_layers > 1 or directions > 1 else name
            rows.append({"layer": label, "cell": _cell_name(module), **measures})
            outputs.append(states.flip(0) if direction else states)
        x = torch.cat(outputs, dim=-1).detach()
    return x, rows


def _cell_name(module: nn.RNNBase) -> str:
    """``LSTM``, ``GRU``, ``RNN (tanh)`` or ``RNN (relu)``."""
    if isinstance(module, nn.RNN):
        return f"RNN ({module.nonlinearity})"
    return type(module).__name__


def _initial(module: nn.RNNBase, state: object, index: int, batch: int) -> tuple[Tensor, Tensor]:
    """The initial ``h`` and ``c`` ``[batch, H]`` of one layer-direction: zeros, or the
    call's own (``[L·D, B, H]``, or ``[L·D, H]`` for one sequence)."""
    weight = next(module.parameters())
    zeros = torch.zeros(batch, module.hidden_size, dtype=weight.dtype, device=weight.device)
    pair = state if isinstance(state, tuple) else (state, None)

    def pick(s: object) -> Tensor:
        if not isinstance(s, Tensor):
            return zeros
        one = s[index] if s.dim() == 3 else s[index].unsqueeze(0)
        return one[:batch].to(weight.dtype).expand_as(zeros)

    return pick(pair[0]), pick(pair[1])


def _unroll(
    module: nn.RNNBase, suffix: str, x: Tensor, h0: Tensor, c0: Tensor, seed: int
) -> tuple[Tensor, dict[str, float]]:
    """The hidden states ``[T, B, H]`` of one layer-direction, and its measures."""
    w_ih, w_hh = getattr(module, f"weight_ih_{suffix}"), getattr(module, f"weight_hh_{suffix}")
    b_ih = getattr(module, f"bias_ih_{suffix}", None) if module.bias else None
    b_hh = getattr(module, f"bias_hh_{suffix}", None) if module.bias else None
    inputs = nn.functional.linear(x.detach(), w_ih.detach(), _d(b_ih))
    step = _CELLS[module.mode]
    h, c = h0.detach().clone().requires_grad_(True), c0.detach().clone()
    states, gates = [], []
    for t in range(x.shape[0]):
        recurrent = nn.functional.linear(h, w_hh.detach(), _d(b_hh))
        h, c, gate = step(module, inputs[t], recurrent, h, c)
        h.retain_grad()
        states.append(h)
        if gate is not None:
            gates.append(gate.detach())
    v = torch.randn(states[-1].shape, generator=torch.Generator().manual_seed(seed))
    (states[-1] * v.to(states[-1])).sum().backward()
    last, first = float(states[-1].grad.norm()), float(states[0].grad.norm())
    reach = first / last if last > 0 else math.nan
    steps = len(states)
    per_step = reach ** (1 / (steps - 1)) if steps > 1 and math.isfinite(reach) else math.nan
    stack = torch.stack([s.detach() for s in states])
    gate_values = torch.stack(gates) if gates else None
    measures = {
        "steps": steps,
        "state_std_first": float(stack[0].std(unbiased=False)),
        "state_std_last": float(stack[-1].std(unbiased=False)),
        "gradient_reach": reach if steps > 1 else math.nan,
        "per_step": per_step,
        "gate_mean": math.nan if gate_values is None else float(gate_values[:, 0].mean()),
        "gate_saturated": _saturated(gate_values),
    }
    return stack, measures


def _d(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _saturated(gates: Tensor | None) -> float:
    """The share of sigmoid gate values below 0.01 or above 0.99."""
    if gates is None:
        return math.nan
    return float(((gates < 0.01) | (gates > 0.99)).double().mean())


def _rnn(module: nn.RNNBase, xi: Tensor, hh: Tensor, h: Tensor, c: Tensor) -> tuple:
    """``h' = φ(W_ih x + b_ih + W_hh h + b_hh)``, φ = tanh or relu."""
    z = xi + hh
    return (torch.relu(z) if module.mode == "RNN_RELU" else torch.tanh(z)), c, None


def _lstm(module: nn.RNNBase, xi: Tensor, hh: Tensor, h: Tensor, c: Tensor) -> tuple:
    """Gates ``i, f, g, o`` (PyTorch's order): ``c' = f c + i g``, ``h' = o tanh(c')``;
    the recorded gates are ``[f, i, o]`` (sigmoids; ``f`` first)."""
    i, f, g, o = (xi + hh).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    return o * torch.tanh(c), c, torch.stack([f, i, o])


def _gru(module: nn.RNNBase, xi: Tensor, hh: Tensor, h: Tensor, c: Tensor) -> tuple:
    """Gates ``r, z, n`` (PyTorch's order): ``n = tanh(x_n + r (W_hn h + b_hn))``,
    ``h' = (1 - z) n + z h``; the recorded gates are ``[z, r]`` (``z`` first: the share kept)."""
    xr, xz, xn = xi.chunk(3, dim=-1)
    hr, hz, hn = hh.chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h, c, torch.stack([z, r])


_CELLS = {"RNN_TANH": _rnn, "RNN_RELU": _rnn, "LSTM": _lstm, "GRU": _gru}


def recurrent_findings(frame: pd.DataFrame) -> list[Finding]:
    """``exploding_through_time`` for the recurrent layers whose ``gradient_reach`` exceeds
    :data:`REACH_HIGH`, ``saturated_gates`` for those whose ``gate_saturated`` exceeds
    :data:`~initlab.probe.findings.SATURATION_FRAC` (the worst one named in the message)."""
    found = []
    for name, column, threshold in (
        ("exploding_through_time", "gradient_reach", REACH_HIGH),
        ("saturated_gates", "gate_saturated", SATURATION_FRAC),
    ):
        values = pd.to_numeric(frame.get(column, pd.Series(dtype=float)), errors="coerce")
        over = frame[values > threshold]
        if len(over):
            worst = over.loc[values[over.index].idxmax()]
            message, suggestion = _said(name, worst)
            layers, number = tuple(over["layer"]), {column: float(worst[column])}
            found.append(Finding(name, layers, number, threshold, message, suggestion))
    return found


def _said(name: str, worst: pd.Series) -> tuple[str, str]:
    """The message and suggestion of finding ``name`` about its ``worst`` layer."""
    where = f"{worst['layer']} ({worst['cell']})"
    if name == "exploding_through_time":
        return (
            f"{where}: a gradient at step {int(worst['steps'])} grows "
            f"{worst['gradient_reach']:.3g}× on its way back to step 1 "
            f"(×{worst['per_step']:.3g} per step; limit {REACH_HIGH:g})",
            "the recurrence amplifies: give the recurrent matrix a spectral radius of about 1 "
            "(orthogonal, as every initlab scheme sets it: `initlab doctor`), or clip gradients",
        )
    return (
        f"{where}: {worst['gate_saturated']:.0%} of its gate values are below 0.01 or above "
        f"0.99 (limit {SATURATION_FRAC:.0%})",
        "saturated gates pass almost no gradient: the input matrices are too large for these "
        "inputs; give them a fan-in scale (glorot_uniform, lecun_normal) or standardize the "
        "inputs",
    )


GROWTH = 10.0
"""A recurrent layer whose hidden state's std grows more than this from the first step to
the last is named as the cause of ``large_logits`` (:func:`blame_logits`)."""


def blame_logits(findings: list[Finding], frame: pd.DataFrame) -> list[Finding]:
    """``findings`` with ``large_logits``' suggestion naming a recurrent layer whose state
    grows along the sequence (``state_std_last > GROWTH × state_std_first``, or
    ``exploding_through_time``), when there is one: the layer table has no row for it, so
    the suggestion blamed the inputs (token ids) instead."""
    if frame.empty or not any(f.name == "large_logits" for f in findings):
        return findings
    growth = frame["state_std_last"] / frame["state_std_first"]
    hot = frame[(growth > GROWTH) | (frame["gradient_reach"] > REACH_HIGH)]
    if hot.empty:
        return findings
    worst = hot.loc[growth[hot.index].idxmax()]
    cause = (
        f"the logits read {worst['layer']} ({worst['cell']}), whose hidden state grows along "
        f"the sequence (std {worst['state_std_first']:.3g} at step 1, "
        f"{worst['state_std_last']:.3g} at step {int(worst['steps'])}): give its recurrent "
        "matrix a spectral radius of about 1 (orthogonal, as every initlab scheme sets it)"
    )
    return [replace(f, suggestion=cause) if f.name == "large_logits" else f for f in findings]
