"""The one engine: M models stacked train as each would alone, with per-model everything.

Tolerances: continuous metrics after one epoch agree to ``TOL = 50 eps(float32) sqrt(n)``
relative (n: training examples, each a summation term of an epoch), and accuracies to two
examples of the split (a float rounding may flip one argmax near a tie).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab.config import RunConfig
from initlab.data import load
from initlab.train import run_config, train_configs, trial
from initlab.train.build import build_initialized_model
from initlab.train.engine import train_stack
from initlab.train.schedule import Member, StackSettings
from initlab.train.stack import ModelStack

HERE = Path(__file__).resolve()
EPS = torch.finfo(torch.float32).eps
BASE = dict(dataset="digits", hidden=(32, 16), epochs=1, batch_size=32, track="off")
INITS = ("he_normal", "glorot_uniform", "orthogonal", "lecun_normal")


class TinyResNet(nn.Module):
    """conv-BN-ReLU stem, one residual block with BatchNorm2d and a skip, pooled classifier."""

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width))
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(h)))))
        h = torch.relu(h + branch)
        return self.head(h.mean((2, 3)))


def tiny_resnet(width: int = 8) -> nn.Module:
    return TinyResNet(width)


class Branchy(nn.Module):
    """Data-dependent Python control flow: vmap cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.a(x) if float(x.mean()) > 0 else self.b(x)


def branchy() -> nn.Module:
    return Branchy()


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def tol(n: int) -> float:
    return 50 * EPS * math.sqrt(n)


def assert_close(stacked, alone, data) -> None:
    """Same status and, within tolerance, the same epoch records and test metrics."""
    rel = tol(data.num_train)
    assert stacked.status == alone.status and len(stacked.epochs) == len(alone.epochs)
    for a, b in zip(stacked.epochs, alone.epochs, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=rel, abs=rel), key
        assert abs(a["train_accuracy"] - b["train_accuracy"]) <= 2 / data.num_train
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 2 / data.num_val
    assert stacked.test_loss == pytest.approx(alone.test_loss, rel=rel, abs=rel)
    assert abs(stacked.test_accuracy - alone.test_accuracy) <= 2 / data.num_test


def group(lr: float = 0.05, **settings) -> list[RunConfig]:
    """Four configs differing in init, seed and learning rate (``lr``, 2 lr, 3 lr, 4 lr)."""
    return [
        RunConfig(**{**BASE, **settings}, init=init, seed=k, lr=lr * (k + 1))
        for k, init in enumerate(INITS)
    ]


@pytest.mark.parametrize(
    "settings",
    [
        dict(batch_norm=True),
        dict(model="cnn", batch_norm=True, optimizer="momentum", lr=0.005),
        dict(model=f"{HERE}:tiny_resnet", model_args={"width": 8}, optimizer="momentum", lr=0.01),
    ],
    ids=["mlp-batchnorm", "cnn", "user-resnet"],
)
def test_stacked_training_equals_training_alone(digits, settings):
    """(Small learning rates: with large ones a float rounding grows chaotically, and
    max-pool ties on digits' many exact zeros can route a gradient differently.)"""
    configs = group(**settings)
    stacked = train_configs(configs, digits)
    assert [r.config for r in stacked] == configs
    for config, result in zip(configs, stacked, strict=True):
        assert_close(result, run_config(config, digits), digits)
    learned = statistics.mean(r.epochs[0]["val_accuracy"] for r in stacked)
    assert learned > 0.15  # above chance (0.1): the comparison is not of untrained models


def test_batch_norm_running_statistics_are_per_model():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)) for _ in range(2)]
    stack = ModelStack(models, torch.device("cpu"))
    x = torch.stack([torch.zeros(16, 4), 10 + torch.randn(16, 4)])
    stack.forward(x, train=True)
    mean = stack.buffers["1.running_mean"]
    for m in range(2):
        with torch.no_grad():
            expected = 0.1 * models[m][0](x[m]).mean(0)
        torch.testing.assert_close(mean[m], expected, rtol=tol(16), atol=tol(16))
    assert stack.buffers["1.num_batches_tracked"].tolist() == [1, 1]


def test_dropout_masks_are_independent_across_models():
    p, n = 0.5, 4000
    model = nn.Sequential(nn.Linear(1, 1), nn.Dropout(p))
    nn.init.ones_(model[0].weight)
    nn.init.zeros_(model[0].bias)
    stack = ModelStack([model, model, model], torch.device("cpu"))
    kept = stack.forward(torch.ones(n, 1), train=True, shared=True).squeeze(-1) != 0  # [3, n]
    sd = math.sqrt(p * (1 - p) / n)
    for m in range(3):
        assert abs(kept[m].float().mean() - (1 - p)) < 5 * sd
    for a, b in [(0, 1), (0, 2), (1, 2)]:  # independent: P(both kept) = (1 - p)^2
        both = (kept[a] & kept[b]).float().mean()
        assert abs(both - (1 - p) ** 2) < 5 * math.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)


def test_dropout_results_agree_in_distribution(digits):
    configs = [RunConfig(**BASE, dropout=0.3, lr=0.1, seed=s) for s in range(6)]
    stacked = [r.epochs[0]["val_loss"] for r in train_configs(configs, digits)]
    alone = [run_config(c, digits).epochs[0]["val_loss"] for c in configs]
    spread = math.sqrt((statistics.variance(stacked) + statistics.variance(alone)) / 6)
    assert abs(statistics.mean(stacked) - statistics.mean(alone)) < 4 * spread + tol(1077)


@pytest.mark.parametrize("strategy", ["batched", "looped"])
def test_a_models_dropout_does_not_depend_on_what_shares_its_stack(digits, monkeypatch, strategy):
    """Model m draws its masks from its own stream: the run alone and the same run second in
    a stack (another first model, other neighbours) train alike, whichever strategy runs."""
    monkeypatch.setenv("INITLAB_STRATEGY", strategy)
    runs = [
        RunConfig(**BASE, dropout=0.3, lr=0.1, init=init, seed=seed)
        for init, seed in [("he_normal", 5), ("glorot_uniform", 1), ("orthogonal", 2)]
    ]
    together = train_configs(runs, digits)
    assert together[1].strategy == ("stacked" if strategy == "batched" else "looped")
    assert_close(together[1], run_config(runs[1], digits), digits)


def test_adamw_with_weight_decay_zero_trains_without_decay(digits):
    """0 is no decay (it once meant AdamW's default 0.01): the unset run shrinks its weights
    by ``1 - lr·0.01`` a step and ends elsewhere."""
    unset = RunConfig(**BASE, optimizer="adamw", lr=0.01, seed=3)
    runs = [unset, unset.replace(weight_decay=0.0), unset.replace(weight_decay=0.01)]
    default, zero, explicit = (r.epochs[0]["val_loss"] for r in train_configs(runs, digits))
    assert default == pytest.approx(explicit, rel=tol(digits.num_train))
    assert abs(default - zero) > 10 * tol(digits.num_train) * default  # far beyond rounding


def test_divergence_freezes_one_model_and_leaves_the_others_unchanged(digits):
    good = group()[:3]
    bad = RunConfig(**BASE, init="random_normal(stddev=5.0)", lr=1e8, seed=9)
    together = train_configs([good[0], bad, good[1], good[2]], digits)
    assert together[1].status == "diverged"
    assert together[1].message.startswith("loss became non-finite at epoch 1, step ")
    assert math.isnan(together[1].test_accuracy) and together[1].epochs == []
    for result, alone in zip(
        [together[0], *together[2:]], train_configs(good, digits), strict=True
    ):
        assert_close(result, alone, digits)


def plain_mlp(hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def test_a_model_with_learning_rate_zero_keeps_its_weights(digits):
    torch.manual_seed(0)
    models = [plain_mlp() for _ in range(3)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    members = [Member(seed=0, lr=0.1), Member(seed=1, lr=0.0), Member(seed=2, lr=0.1)]
    for kind in ("momentum", "adamw"):
        train_stack(
            models, digits, StackSettings(optimizer=kind, epochs=1), members, write_back=True
        )
        for key, value in models[1].state_dict().items():
            assert torch.equal(value, before[1][key]), (kind, key)
        assert not torch.equal(models[0][1].weight, before[0]["1.weight"])


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("sgd", lambda p, lr, mu, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd)),
        ("momentum", lambda p, lr, mu, wd: torch.optim.SGD(p, lr=lr, momentum=mu, weight_decay=wd)),
        ("adam", lambda p, lr, mu, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd)),
        ("adamw", lambda p, lr, mu, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd)),
    ],
)
@pytest.mark.parametrize("lrs", [[0.1, 0.01, 0.05], [0.05] * 3], ids=["per-model", "uniform"])
def test_stacked_optimizers_match_torch_optim(kind, make, lrs):
    """Per-model learning rates (tensor columns) and one shared rate (a scalar fast path)."""
    from initlab.train.optimizers import StackedOptimizer, effective_weight_decay

    gen = torch.Generator().manual_seed(0)
    mus, wds = [0.9, 0.5, 0.0], [0.0, 0.01, 0.1]
    stacked = [torch.randn(3, 5, 4, generator=gen), torch.randn(3, 4, generator=gen)]
    stacked = [t.requires_grad_(True) for t in stacked]
    alone = [[t[m].detach().clone().requires_grad_(True) for t in stacked] for m in range(3)]
    opt = StackedOptimizer(kind, stacked, lrs, mus, wds)
    refs = [make(alone[m], lrs[m], mus[m], effective_weight_decay(kind, wds[m])) for m in range(3)]
    for _ in range(4):
        grads = [torch.randn(t.shape, generator=gen) for t in stacked]
        for t, g in zip(stacked, grads, strict=True):
            t.grad = g.clone()
        opt.step()
        for m in range(3):
            for t, g in zip(alone[m], grads, strict=True):
                t.grad = g[m].clone()
            refs[m].step()
    for m in range(3):
        for t, ref in zip(stacked, alone[m], strict=True):
            torch.testing.assert_close(t[m].detach(), ref.detach(), rtol=tol(20), atol=tol(20))


def test_a_model_vmap_cannot_run_falls_back_with_a_note(digits):
    configs = [RunConfig(**BASE, model=f"{HERE}:branchy", lr=0.2, seed=k) for k in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = train_configs(configs, digits)
    assert any("one at a time" in str(w.message) for w in caught)
    for config, result in zip(configs, results, strict=True):
        assert (
            result.status == "ok" and "one at a time (torch.func.vmap cannot run" in result.message
        )
        assert_close(result, run_config(config, digits), digits)


def test_vmaps_per_op_fallback_warning_does_not_reach_the_user():
    """nn.Bilinear has no batching rule: torch warns of a 'performance drop' on every vmap
    of it; the trial decides on speed, the user has nothing to do. Switched off at its
    source for the vmap call only: no warnings filter is left in the user's process."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Bilinear(4, 4, 3).requires_grad_(True)) for _ in range(2)]
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = ModelStack([_Pair(m) for m in models], torch.device("cpu"), "vmap")
        stack.forward(torch.randn(2, 5, 4), train=True).sum().backward()
    assert stack.strategy == "vmap"
    assert not [w for w in caught if "performance drop" in str(w.message)]
    assert warnings.filters == filters


class _Pair(nn.Module):
    """``bilinear(x, x)``: one input, as a stack passes it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner[0](x, x)


@pytest.mark.parametrize("strategy", ["stacked", "vmap", "looped"])
def test_every_strategy_gives_nn_linear_gradients(strategy):
    """The stacked Linear (custom backward in the weight's layout), vmap and the per-model
    modules against plain autograd on each model alone."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)) for _ in range(3)]
    stack = ModelStack(models, torch.device("cpu"), strategy)
    assert stack.strategy == strategy
    x = torch.randn(3, 4, 6)
    stack.forward(x, train=True).square().sum().backward()
    grads = dict(zip(stack.params, stack.grads(), strict=True))
    for m, model in enumerate(models):
        model(x[m]).square().sum().backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][m], p.grad, rtol=tol(6), atol=tol(6))
    assert type(stack.materialize(0)[0]) is nn.Linear  # tracking sees the user's classes


def test_group_key_shares_what_must_agree_and_only_that():
    from initlab.train.grouping import group_configs, group_key

    mlp = RunConfig(**BASE)
    assert group_key(mlp) == group_key(mlp.replace(lr=0.5, seed=3, init="zeros", momentum=0.5))
    assert group_key(mlp) == group_key(mlp.replace(activation="ReLU", dataset="Digits"))
    for change in (
        dict(hidden=(8,)), dict(optimizer="adam"), dict(task="regression"),
        dict(precision="bf16"), dict(model="cnn"), dict(model_args={"width": 4}),
    ):  # fmt: skip
        assert group_key(mlp.replace(**change)) != group_key(mlp), change
    a, b, wide = mlp, mlp.replace(seed=1), mlp.replace(hidden=(64,))
    assert group_configs([a, wide, b]) == [[a, b], [wide]]


def test_chunking_never_changes_the_numbers(digits):
    from initlab.train.memory import split_evenly

    assert [len(c) for c in split_evenly(list(range(15)), 7)] == [5, 5, 5]
    configs = group()[:3]
    whole = train_configs(configs, digits)
    for a, b in zip(whole, train_configs(configs, digits, chunk_size=2), strict=True):
        assert_close(a, b, digits)


@pytest.mark.parametrize("settings", [dict(batch_norm=True), dict(dropout=0.2)], ids=str)
def test_the_stacked_modules_train_as_the_models_alone(digits, settings):
    """initlab's MLP (a plain composition) with its leaves stacked vs one module per model."""
    configs = group(**settings)[:3]
    shared = StackSettings(epochs=1, batch_size=32)
    members = [Member(c.seed, c.lr) for c in configs]
    runs = {}
    for strategy in ("stacked", "looped"):
        models = [build_initialized_model(c, (1, 8, 8), 10) for c in configs]
        runs[strategy] = train_stack(
            models, digits, dataclasses.replace(shared, strategy=strategy), members
        )
    for a, b in zip(runs["stacked"], runs["looped"], strict=True):
        if settings.get("dropout"):  # different masks: only the learning is comparable
            assert a.epochs[0]["val_accuracy"] > 0.15 and b.epochs[0]["val_accuracy"] > 0.15
        else:
            assert_close(a, b, digits)


def test_the_stack_uses_its_leaves_where_torch_fx_traces_the_forward():
    mlp = [plain_mlp() for _ in range(2)]
    assert ModelStack(mlp, torch.device("cpu")).strategy == "stacked"
    assert ModelStack([tiny_resnet()] * 2, torch.device("cpu")).strategy == "stacked"
    assert ModelStack([branchy()] * 2, torch.device("cpu")).strategy == "vmap"
    assert ModelStack(mlp[:1], torch.device("cpu")).strategy == "looped"
    with pytest.raises(ValueError, match="cannot be stacked"):
        ModelStack([branchy()] * 2, torch.device("cpu"), "stacked")


def test_a_stack_of_one_trains_its_model_in_place_of_the_plain_loop(digits):
    """M = 1 runs the real module (no functional_call, no select): its parameters are views
    of the stack, so an update of the stack is the module's update and back."""
    torch.manual_seed(0)
    stack = ModelStack([plain_mlp()], torch.device("cpu"))
    module = stack.modules()[0]
    with torch.no_grad():
        stack.params["1.weight"].add_(1.0)
    torch.testing.assert_close(module[1].weight, stack.params["1.weight"][0].detach())
    stack.forward(digits.x_train[:8].unsqueeze(0), train=True).sum().backward()
    (grad,) = [g for k, g in zip(stack.params, stack.grads(), strict=True) if k == "1.weight"]
    assert grad.shape == stack.params["1.weight"].shape and torch.equal(
        grad[0], module[1].weight.grad
    )


def test_choosing_a_strategy_leaves_weights_statistics_and_rng_alone():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)) for _ in range(3)]
    stack = ModelStack(models, torch.device("cpu"))
    before = {k: v.detach().clone() for k, v in {**stack.params, **stack.buffers}.items()}
    x = 5 + torch.randn(3, 8, 4)
    rng = torch.get_rng_state()
    trial.prepare(stack, x, lambda out: out.square().sum())
    assert stack.strategy in ("stacked", "looped")
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in {**stack.params, **stack.buffers}.items():
        assert torch.equal(v.detach(), before[k]), k
    assert all(g is None for g in stack.grads())


def test_the_strategy_trial_times_one_thread_and_restores_the_thread_count():
    """Process CPU time counts every thread: at two threads it charged a batched step whose
    products use both threads twice against looped's small ones (auto kept looped for 7
    seed MLPs, 3x slower). The timed steps run at one thread; the caller's count comes back."""
    models = [nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 2)) for _ in range(3)]
    stack = ModelStack(models, torch.device("cpu"))
    seen: list[int] = []

    def loss(out: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return out.square().sum()

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trial.prepare(stack, torch.randn(3, 8, 7), loss)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen[0] == 2 and seen[-7:] == [1] * 7  # warm-up as called; 1 + 2 x 3 timed steps


def test_vmap_and_looped_train_a_user_resnet_alike(digits):
    """auto rarely keeps vmap on a CPU (looped is faster): compare the two forced."""
    configs = group(model=f"{HERE}:tiny_resnet", model_args={"width": 4}, lr=0.01)[:2]
    shared = StackSettings(optimizer="momentum", epochs=1, batch_size=32)
    members = [Member(c.seed, c.lr) for c in configs]
    runs = {}
    for strategy in ("vmap", "looped"):
        models = [build_initialized_model(c, (1, 8, 8), 10) for c in configs]
        strategy_plan = dataclasses.replace(shared, strategy=strategy)
        runs[strategy] = train_stack(models, digits, strategy_plan, members)
    for a, b in zip(runs["vmap"], runs["looped"], strict=True):
        assert_close(a, b, digits)


class PartlyFrozen(nn.Module):
    """A first layer frozen (``requires_grad=False``, as a pretrained one would be)."""

    def __init__(self) -> None:
        super().__init__()
        self.flat, self.a, self.b = nn.Flatten(), nn.Linear(64, 16), nn.Linear(16, 10)
        self.a.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(self.flat(x))))


@pytest.mark.parametrize("strategy", ["stacked", "vmap", "looped"])
def test_frozen_parameters_stay_each_models_own_and_untrained(digits, strategy):
    models = [PartlyFrozen(), PartlyFrozen()]  # different draws: each keeps its own
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    shared = StackSettings(optimizer="adam", epochs=1, batch_size=32, strategy=strategy)
    train_stack(models, digits, shared, [Member(0, 0.01), Member(1, 0.01)], write_back=True)
    for model, old in zip(models, before, strict=True):
        now = model.state_dict()
        assert torch.equal(now["a.weight"], old["a.weight"]) and torch.equal(
            now["a.bias"], old["a.bias"]
        )
        assert not torch.equal(now["b.weight"], old["b.weight"])  # the rest trains


def test_a_last_batch_of_one_example_joins_the_one_before_and_batch_norm_trains():
    from initlab.train.schedule import steps_per_epoch

    assert [steps_per_epoch(n, 32) for n in (32, 33, 64, 65, 66, 4033)] == [1, 1, 2, 2, 3, 126]
    assert steps_per_epoch(5, 1) == 5 and steps_per_epoch(1, 32) == 1
    # 65 examples in batches of 32: a last batch of one, which BatchNorm1d refuses to train
    configs = [
        RunConfig(**{**BASE, "batch_norm": True, "limit_train": 65, "seed": s}) for s in (0, 1)
    ]
    results = train_configs(configs, load("digits", limit_train=65))
    assert all(r.status in ("ok", "stuck") for r in results), [r.message for r in results]
