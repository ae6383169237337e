"""diagnose, recommend, plan and find_structure leave the model exactly as it was.

Their docs say so, but the structure tracer ran the forward's Python code (``torch.fx``)
without putting buffers back: a model whose training forward does ``self.count += 1`` had
count 1 after ``diagnose`` and 2 after ``recommend``. Every place that runs the user's model
only to look at it now goes through one context manager,
:func:`initlab.preserve.preserved` (modes, parameters, buffers, the RNG).

Comparisons are exact (``torch.equal``): what is checked is that the very tensors of the
model hold copies of their own earlier values again, not that a computation came out close.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import initlab
from initlab.arguments import check_runs
from initlab.preserve import preserved
from initlab.probe.hooks import collect
from initlab.probe.trace import first_calls
from initlab.residual import find_structure


class Counting(nn.Module):
    """A residual MLP with a counter its training forward bumps (``every_call``: and one
    every call bumps), a BatchNorm, and a ``parametrizations.spectral_norm`` layer (its power
    iteration writes ``_u``/``_v`` whenever the weight is computed in training mode).
    ``traceable=False``: a data-dependent ``if`` that ``torch.fx`` cannot trace (the
    structure comes from a run)."""

    def __init__(
        self, spectral: bool = True, traceable: bool = True, every_call: bool = True
    ) -> None:
        super().__init__()
        self.every_call = every_call
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.traceable = traceable
        first = nn.Linear(8, 16)
        self.inp = nn.utils.parametrizations.spectral_norm(first) if spectral else first
        self.norm = nn.BatchNorm1d(16)
        self.branch = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.every_call:
            self.calls += 1
        if self.training:
            self.count += 1
        h = torch.relu(self.norm(self.inp(x)))
        if not self.traceable and bool(h.sum() > -1e30):  # fx cannot take this branch
            h = h * 1.0
        return self.head(h + self.branch(h))


def snapshot(model: nn.Module) -> dict:
    """Every parameter's and buffer's values, each module's mode, and the global RNG."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return {
        "tensors": {name: t.detach().clone() for name, t in tensors},
        "modes": {name: m.training for name, m in model.named_modules()},
        "rng": torch.get_rng_state(),
    }


def assert_as_it_was(model: nn.Module, before: dict, step: str) -> None:
    """``model`` as :func:`snapshot` saw it, exactly (restored copies of the same tensors)."""
    after = snapshot(model)
    changed = [n for n, t in before["tensors"].items() if not torch.equal(t, after["tensors"][n])]
    assert not changed, f"{step} changed {changed}"
    assert after["modes"] == before["modes"], f"{step} changed the modes"
    assert torch.equal(after["rng"], before["rng"]), f"{step} advanced the RNG"


def built(**kwargs) -> nn.Module:
    """A :class:`Counting` model with mixed modes (its norm in eval mode), each module's own
    flag to be restored (a whole-model ``train(was_training)`` would not)."""
    torch.manual_seed(0)
    model = Counting(**kwargs)
    model.norm.eval()
    return model


X = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("traceable", [True, False])
def test_structure_traces_and_plan_leave_the_model_as_it_was(traceable):
    """find_structure by fx (it bumped the counters) and from one run; the doctor's
    activation tracer; plan, with and without data."""
    model = built(traceable=traceable)
    before = snapshot(model)
    structure = find_structure(model, X)
    assert structure.depth == 1
    assert structure.method == ("fx" if traceable else "run")
    assert_as_it_was(model, before, "find_structure")
    first_calls(model, X, [("head", model.head)])
    assert_as_it_was(model, before, "first_calls")
    initlab.plan(model, "default")
    initlab.plan(model, "default", data=X)
    assert_as_it_was(model, before, "plan")


def test_diagnose_and_recommend_leave_counters_and_running_stats_as_they_were():
    """The reported bug: count 1 after diagnose, 2 after recommend."""
    model = built(spectral=False, every_call=False)
    before = snapshot(model)
    initlab.diagnose(model, X, Y)
    assert_as_it_was(model, before, "diagnose")
    initlab.recommend(model, X)
    assert_as_it_was(model, before, "recommend")
    assert int(model.count) == 0 and int(model.calls) == 0


def test_the_probe_reads_a_parametrized_weight_once_inside_the_preserved_block():
    """Reading a spectral-normed layer's weight after the probe, in training mode, ran its
    power iteration again (``_u``/``_v`` changed); the weight and its gradient are now the
    ones the forward pass used, cached (the gradient was missing)."""
    model = built()
    model.norm.train()
    before = snapshot(model)
    layers = collect(model, X, Y)
    for layer in layers:
        layer.metrics()
    assert_as_it_was(model, before, "collect")
    inp = next(layer for layer in layers if layer.name == "inp")
    assert inp.weight_grad is not None
    assert inp.weight.shape == (16, 8)


def test_preserved_restores_rebound_buffers():
    """A forward that rebinds a buffer (``self.calls = self.calls + 1``) is undone too (its
    parameters are put back in their slots, not copied: a forward does not write them)."""

    class Clipping(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls = self.calls + 1
            return self.layer(x)

    torch.manual_seed(0)
    model = Clipping()
    buffer, before = model.calls, snapshot(model)
    with preserved(model, "train"):
        model(torch.randn(2, 4))
    assert_as_it_was(model, before, "preserved")
    assert model.calls is buffer


def test_diagnose_and_recommend_leave_a_spectral_norm_as_it_was():
    """``parametrizations.spectral_norm``'s ``_u``/``_v`` after diagnose and recommend."""
    model = built()
    before = snapshot(model)
    initlab.diagnose(model, X, Y)
    assert_as_it_was(model, before, "diagnose")
    initlab.recommend(model, X)
    assert_as_it_was(model, before, "recommend")


def test_check_runs_leaves_the_buffers_as_they_were():
    """The input check runs the model in eval mode: a counter of every call moved."""
    model = built()
    before = snapshot(model)
    check_runs(model, X, "recommend")
    assert_as_it_was(model, before, "check_runs")
