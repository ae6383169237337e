"""The batched engine's parts: forward/backward vs autograd, optimizers vs torch.optim,
evaluation, per-layer statistics vs the hook probe, chunk sizes."""

import math

import pytest
import torch
import torch.nn.functional as F

from initlab.config import RunConfig
from initlab.data import load
from initlab.models.mlp import MLP
from initlab.train import build_initialized_model, evaluate, run_config
from initlab.train.batched import default_chunk_size, train_group_states
from initlab.train.batched.evaluate import evaluate_stack
from initlab.train.batched.memory import MAX_CHUNK, MIN_CHUNK, model_bytes
from initlab.train.batched.network import backward, forward
from initlab.train.batched.optim import StackedOptimizer
from initlab.train.batched.stack import stack_modules
from initlab.train.batched.tracking import _Collector

BASE = dict(dataset="digits", hidden=(32, 16), epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def mlps(m, **arch):
    torch.manual_seed(0)
    hidden = arch.pop("hidden", (10, 10))
    models = [MLP(12, hidden, 5, **arch) for _ in range(m)]
    for model in models:  # non-trivial batch-norm affine parameters
        for p in model.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
    return models


@pytest.mark.parametrize("activation", ["gelu", "tanh", "relu", "linear", "softsign"])
def test_hand_written_backward_equals_autograd(activation):
    models = mlps(3, activation=activation, batch_norm=True, residual=True)
    net = stack_modules(models)
    x, y = torch.randn(3, 8, 12), torch.randint(0, 5, (3, 8))
    masks = [torch.bernoulli(torch.full((3, 8, 10), 0.7)) / 0.7 for _ in range(2)]
    sink = _Collector()
    trace = forward(net, x, train=True, masks=masks, keep=True)
    dlogits = (torch.softmax(trace.logits, 2) - F.one_hot(y, 5)) / 8  # sum of per-model means
    backward(net, trace, dlogits, sink)
    params = [p.clone().requires_grad_(True) for p in net.params]
    buffers = [b.clone() for b in net.buffers]
    ref = type(net)(params, buffers, net.layers, activation, 0.0, 0, net.widths)
    with torch.enable_grad():
        out = forward(ref, x, train=True, masks=masks, keep=True).logits
        total = sum(F.cross_entropy(out[m], y[m]) for m in range(3))
        grads = torch.autograd.grad(total, params)
    for k, g in enumerate(grads):
        torch.testing.assert_close(sink.grads[k], g, rtol=1e-4, atol=1e-6)


def test_stacked_forward_equals_each_module():
    models = mlps(3, batch_norm=True, activation="selu", hidden=(10, 10, 7), residual=True)
    for model in models:
        model.train()
        model(torch.randn(16, 12))  # move the running statistics off their initial values
        model.eval()
    net = stack_modules(models)
    x = torch.randn(20, 12)
    logits = forward(net, x, train=False).logits  # a shared input, as in evaluation
    for m, model in enumerate(models):
        torch.testing.assert_close(logits[m], model(x).detach(), rtol=1e-5, atol=1e-6)
        restored = MLP(12, (10, 10, 7), 5, "selu", batch_norm=True, residual=True)
        restored.load_state_dict(net.state_dict(m))
        torch.testing.assert_close(restored.eval()(x), model(x))


def test_training_forward_updates_running_statistics_like_batchnorm():
    models = mlps(2, batch_norm=True)
    net = stack_modules(models)
    x = torch.randn(2, 16, 12)
    logits = forward(net, x, train=True).logits
    for m, model in enumerate(models):
        model.train()
        torch.testing.assert_close(logits[m], model(x[m]).detach(), rtol=1e-5, atol=1e-6)
        state = net.state_dict(m)
        for k in range(2):
            norm = model.blocks[k].norm
            torch.testing.assert_close(state[f"blocks.{k}.norm.running_mean"], norm.running_mean)
            torch.testing.assert_close(state[f"blocks.{k}.norm.running_var"], norm.running_var)


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_stacked_optimizers_follow_torch_optim(kind, decay):
    lrs, moms = (0.1, 0.03, 0.01), (0.9, 0.5, 0.0)
    configs = [
        RunConfig(optimizer=kind, lr=lr, momentum=mu, weight_decay=decay)
        for lr, mu in zip(lrs, moms, strict=True)
    ]
    gen = torch.Generator().manual_seed(0)
    w, b = torch.randn(3, 6, 4, generator=gen), torch.randn(3, 1, 4, generator=gen)  # [M, in, out]
    opt = StackedOptimizer(configs, [w, b])
    ref = [[w[m].clone().requires_grad_(), b[m].clone().requires_grad_()] for m in range(3)]
    ref_opts = [_torch_optimizer(c, params) for c, params in zip(configs, ref, strict=True)]
    for _ in range(4):
        dz, inp = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 6, generator=gen)
        opt.begin_step()
        opt.linear(0, 1, dz, inp)
        for m, (params, ro) in enumerate(zip(ref, ref_opts, strict=True)):
            params[0].grad = inp[m].T @ dz[m]
            params[1].grad = dz[m].sum(0, keepdim=True)
            ro.step()
    for m in range(3):
        torch.testing.assert_close(w[m], ref[m][0].detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b[m], ref[m][1].detach(), rtol=1e-5, atol=1e-6)


def _torch_optimizer(config, params):
    from initlab.train.optim import build_optimizer

    return build_optimizer(
        config.optimizer,
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def test_batched_evaluation_equals_the_single_engines(digits):
    configs = [RunConfig(**BASE, seed=s, batch_norm=s == 1) for s in range(2)]
    models = [build_initialized_model(c, digits.input_shape, 10) for c in configs]
    net = stack_modules(models[:1] * 2)
    losses, accs = evaluate_stack(net, digits.x_val, digits.y_val)
    loss, acc = evaluate(models[0], digits.x_val, digits.y_val)
    assert losses == pytest.approx([loss, loss], rel=1e-6)
    assert accs == [acc, acc]


def assert_same_rows(batched, single):
    assert len(batched) == len(single) > 0
    for a, b in zip(batched, single, strict=True):
        assert {k: a[k] for k in a if k != "value"} == {k: b[k] for k in b if k != "value"}
        if not (math.isnan(a["value"]) and math.isnan(b["value"])):
            assert a["value"] == pytest.approx(b["value"], rel=1e-3, abs=1e-6), a


@pytest.mark.parametrize(
    "settings",
    [
        dict(batch_norm=True, dropout=0.2, activation="tanh"),
        dict(activation="linear", hidden=(16, 16), residual=True, track=7),
        dict(activation="linear", hidden=(16, 16)),
    ],
)
def test_layer_stats_equal_the_hook_probes(settings, digits):
    configs = [RunConfig(**{**BASE, **settings}, seed=s, lr=0.05) for s in range(2)]
    configs[1] = configs[1].replace(init="zeros")
    outcome = train_group_states(configs, digits)
    for config, result in zip(configs, outcome.results, strict=True):
        assert_same_rows(result.layer_stats, run_config(config, digits).layer_stats)


def test_a_custom_statistics_function_sees_every_layer(digits):
    seen = []

    def stats(layer, m):
        seen.append((layer.name, m, tuple(layer.pre.shape), tuple(layer.weight_grad.shape)))
        return {"pre_norm": float(layer.pre[m].norm())}

    configs = [RunConfig(**{**BASE, "epochs": 1}, seed=s) for s in range(2)]
    results = train_group_states(configs, digits, stats=stats).results
    assert ("blocks.0.linear", 1, (2, 256, 32), (2, 32, 64)) in seen
    assert ("output", 0, (2, 256, 10), (2, 10, 16)) in seen
    rows = results[0].layer_stats
    assert {r["metric"] for r in rows} == {"pre_norm"}
    assert [(r["epoch"], r["step"]) for r in rows if r["layer"] == "output"] == [(0, 0), (1, 34)]
    off = train_group_states([c.replace(track="off") for c in configs], digits).results
    assert off[0].layer_stats == []


def test_chunk_size_comes_from_the_memory_and_cache_budgets():
    seed = RunConfig()
    per_model = model_bytes(seed, 784, 10, 55_000)
    assert 2e6 < per_model < 5e6  # about 3 MB for the seed protocol with SGD
    shape = (1, 28, 28)
    assert default_chunk_size([seed], shape, 10, 55_000) == 8  # 9 MiB of weights / 1.07 MB
    tiny = seed.replace(hidden=(16,))
    assert default_chunk_size([tiny], (1, 8, 8), 10, 1000) == MAX_CHUNK
    small = default_chunk_size([tiny], (1, 8, 8), 10, 1000, budget=257 * 2**20)
    assert 1 <= small < MAX_CHUNK  # the memory bound wins
    big = seed.replace(hidden=(2000, 2000))
    assert default_chunk_size([big], shape, 10, 55_000) == MIN_CHUNK
    adam = default_chunk_size([seed.replace(optimizer="adam")], shape, 10, 55_000, 2**28)
    assert adam == 1


def test_groups_are_split_into_near_equal_chunks():
    from initlab.train.batched.engine import split_evenly

    configs = [RunConfig(seed=s) for s in range(15)]
    assert [len(c) for c in split_evenly(configs, 7)] == [5, 5, 5]
    assert [len(c) for c in split_evenly(configs, 15)] == [15]
    assert [len(c) for c in split_evenly(configs, 4)] == [4, 4, 4, 3]
    assert [c for chunk in split_evenly(configs, 6) for c in chunk] == configs
