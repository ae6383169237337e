"""The stacked conv leaves (``initlab.train.stacked_conv``) against each model alone.

Every comparison is across code paths (one grouped conv vs M convs, batch norm over M·C
channels vs C), so tolerances follow CONTRIBUTING.md: ``50 · eps · sqrt(n) · scale`` with
``n`` the longest reduction behind a value (a conv's batch·height·width) and ``scale`` the
magnitude of the values compared. Integers (``num_batches_tracked``) compare exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.config import RunConfig
from initlab.data import load
from initlab.train.build import build_initialized_model
from initlab.train.engine import train_stack
from initlab.train.schedule import Member, StackSettings
from initlab.train.stack import ModelStack
from initlab.train.stacked import NotStackable, stacked_module

CPU = torch.device("cpu")
EPS = torch.finfo(torch.float32).eps
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def assert_near(
    actual: torch.Tensor, expected: torch.Tensor, n: int, what: str = "", floor: float = 0.0
) -> None:
    """Within ``50 · eps · sqrt(n)`` relative to ``expected``'s magnitude, or to ``floor``
    where the terms summed are larger than the result (a conv bias before a batch norm has
    a gradient of 0 up to rounding of terms the size of the other gradients)."""
    rel = 50 * EPS * math.sqrt(n)
    scale = max(float(expected.detach().abs().max()), floor, 1e-6)
    torch.testing.assert_close(
        actual.detach(), expected.detach(), rtol=rel, atol=rel * scale, msg=what or None
    )


class Block(nn.Module):
    """conv-bn-relu-conv-bn plus the identity, then relu (the benchmark's residual block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def resnet(width: int = 6) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        Block(width), Block(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 5),
    )  # fmt: skip


def test_the_stacked_resnet_trains_as_each_model_alone():
    """Three SGD-momentum steps, each model on its own minibatch: outputs, losses,
    gradients, running statistics, then eval-mode outputs on a shared batch."""
    torch.manual_seed(0)
    models = [resnet() for _ in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    stack = ModelStack(models, CPU, "stacked")
    assert stack.strategy == "stacked"
    opt = torch.optim.SGD(stack.params.values(), lr=0.05, momentum=0.9)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in alone]
    n = 8 * 8 * 8  # batch x the stem's output height x width
    for _ in range(3):
        x, y = 1 + 2 * torch.randn(3, 8, 3, 16, 16), torch.randint(0, 5, (3, 8))
        out = stack.forward(x, train=True)
        loss = torch.stack([F.cross_entropy(out[m], y[m]) for m in range(3)])
        loss.sum().backward()
        grads = dict(zip(stack.params, stack.grads(), strict=True))
        for m, model in enumerate(alone):
            out_m = model(x[m])
            loss_m = F.cross_entropy(out_m, y[m])
            loss_m.backward()
            assert_near(out[m], out_m, n, "output")
            assert_near(loss[m], loss_m, n, "loss")
            floor = max(float(p.grad.abs().max()) for p in model.parameters())
            for name, p in model.named_parameters():
                assert_near(grads[name][m], p.grad, n, name, floor)
            opts[m].step()
            opts[m].zero_grad()
        opt.step()
        stack.zero_grad()
    for m, model in enumerate(alone):
        for name, b in model.named_buffers():
            if name.endswith("num_batches_tracked"):
                assert int(stack.buffers[name][m]) == int(b) == 3
            else:
                assert_near(stack.buffers[name][m], b, n, name)
    x = torch.randn(8, 3, 16, 16)
    out = stack.forward(x, train=False, shared=True)
    for m, model in enumerate(alone):
        assert_near(out[m], model.eval()(x), n, "eval output")


@pytest.mark.parametrize(
    "options",
    [{}, {"affine": False}, {"track_running_stats": False}, {"momentum": 0.5, "eps": 0.1}],
    ids=str,
)
def test_batch_norm_2d_uses_each_models_own_statistics(options):
    """Training: each model's batch statistics and running-statistics update; eval: each
    model's own running statistics (made different per model)."""
    torch.manual_seed(1)
    models = [nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4, **options)) for _ in range(3)]
    for m, model in enumerate(models):
        bn = model[1]
        if bn.running_mean is not None:
            bn.running_mean.normal_(m, 1.0)
            bn.running_var.uniform_(0.5 + m, 2.0 + m)
    alone = [copy.deepcopy(m) for m in models]
    stack = ModelStack(models, CPU, "stacked")
    x = 3 + torch.randn(3, 5, 2, 7, 6)
    n = 5 * 5 * 4
    for train in (True, False):
        out = stack.forward(x, train=train)
        for m, model in enumerate(alone):
            assert_near(out[m], model.train(train)(x[m]), n, f"train={train}")
    for m, model in enumerate(alone):
        for name, b in model.named_buffers():
            assert_near(stack.buffers[name][m].float(), b.float(), n, name)


CONV_OPTIONS = [
    dict(kernel_size=3, stride=2),
    dict(kernel_size=(3, 1), padding=(1, 0), bias=False),
    dict(kernel_size=3, padding="same", dilation=2),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=2, stride=2, padding_mode="circular"),
]
POOLS = [
    lambda: nn.MaxPool2d(2, ceil_mode=True),
    lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    lambda: nn.AdaptiveMaxPool2d((2, 3)),
    lambda: nn.AdaptiveAvgPool2d(1),
]


@pytest.mark.parametrize("pool", range(len(POOLS)), ids=lambda i: f"pool{i}")
@pytest.mark.parametrize("options", CONV_OPTIONS, ids=str)
def test_conv_options_and_pools_match_each_model(options, pool):
    """Outputs, parameter gradients and the input gradient of conv → tanh → pool → conv."""
    torch.manual_seed(2)
    models = [
        nn.Sequential(nn.Conv2d(4, 6, **options), nn.Tanh(), POOLS[pool](), nn.Conv2d(6, 3, 1))
        for _ in range(3)
    ]
    alone = [copy.deepcopy(m) for m in models]
    stack = ModelStack(models, CPU, "stacked")
    x = torch.randn(3, 5, 4, 9, 11, requires_grad=True)
    out = stack.forward(x, train=True)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    grads = dict(zip(stack.params, stack.grads(), strict=True))
    n = 5 * 9 * 11
    for m, model in enumerate(alone):
        xm = x[m].detach().requires_grad_(True)
        out_m = model(xm)
        (out_m * weights[m]).sum().backward()
        assert_near(out[m], out_m, n, "output")
        assert_near(x.grad[m], xm.grad, n, "input gradient")
        for name, p in model.named_parameters():
            assert_near(grads[name][m], p.grad, n, name)


class MyConv(nn.Conv2d):
    """A user's conv subclass: its forward may differ from nn.Conv2d's."""


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(MyConv(2, 3, 3)),
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, momentum=None)),
        lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU()),
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2, return_indices=True)),
    ],
    ids=["conv-subclass", "cumulative-batchnorm", "conv1d", "pool-indices"],
)
def test_unsupported_layers_refuse_and_the_stack_falls_back(make):
    models = [make() for _ in range(2)]
    state = {**dict(models[0].named_parameters()), **dict(models[0].named_buffers())}
    with pytest.raises(NotStackable):
        stacked_module(models[0], {k: v.unsqueeze(0) for k, v in state.items()})
    with pytest.raises(ValueError, match="cannot be stacked"):
        ModelStack(models, CPU, "stacked")
    assert ModelStack(models, CPU).strategy == "vmap"


@pytest.mark.parametrize("layer", [lambda: nn.Conv2d(2, 3, 3), lambda: nn.BatchNorm2d(2)])
def test_unbatched_inputs_are_refused_at_the_first_forward(layer):
    stack = ModelStack([nn.Sequential(layer()) for _ in range(2)], CPU, "stacked")
    with pytest.raises(NotStackable, match="inputs other than"):
        stack.forward(torch.randn(2, 2, 5, 5), train=True)
    assert all(int(v.sum()) == 0 for k, v in stack.buffers.items() if "num_batches" in k)


def test_the_benchmarks_resnet_is_stacked(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))  # its helpers (machine, bench_ceiling)
    small_resnet = runpy.run_path(str(BENCH), run_name="bench_engine")["small_resnet"]
    torch.manual_seed(0)
    models = [small_resnet() for _ in range(2)]
    stack = ModelStack(models, CPU, "stacked")
    assert stack.strategy == "stacked"
    x = torch.randn(2, 4, 3, 32, 32)
    out = stack.forward(x, train=True)
    for m, model in enumerate(models):
        assert_near(out[m], model(x[m]), 4 * 16 * 16, "output")


def test_the_engine_trains_initlabs_cnn_stacked_as_looped():
    """initlab's CNN with batch norm (Conv2d, BatchNorm2d, MaxPool2d, Flatten, Linear) on
    digits: a stacked and a looped run of the engine (training, validation, test)."""
    data = load("digits")
    base = dict(dataset="digits", model="cnn", batch_norm=True, epochs=1, track="off")
    configs = [
        RunConfig(**base, init=init, seed=k, lr=0.005 * (k + 1), optimizer="momentum")
        for k, init in enumerate(("he_normal", "glorot_uniform", "orthogonal"))
    ]
    shared = StackSettings(optimizer="momentum", epochs=1, batch_size=32)
    members = [Member(c.seed, c.lr) for c in configs]
    runs = {}
    for strategy in ("stacked", "looped"):
        models = [build_initialized_model(c, (1, 8, 8), 10) for c in configs]
        runs[strategy] = train_stack(
            models, data, dataclasses.replace(shared, strategy=strategy), members
        )
    rel = 50 * EPS * math.sqrt(data.num_train)
    for a, b in zip(runs["stacked"], runs["looped"], strict=True):
        assert a.status == b.status == "ok"
        for key in ("train_loss", "val_loss"):
            assert a.epochs[0][key] == pytest.approx(b.epochs[0][key], rel=rel, abs=rel), key
        assert abs(a.epochs[0]["val_accuracy"] - b.epochs[0]["val_accuracy"]) <= 2 / data.num_val
        assert a.test_loss == pytest.approx(b.test_loss, rel=rel, abs=rel)
