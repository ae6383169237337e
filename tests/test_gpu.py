"""The engine's accelerator code paths, each against the same training on the CPU.

Skipped without CUDA (they run on a lent GPU machine: ``benchmarks/gpu_check.sh``).
``INITLAB_TEST_DEVICE=cpu`` runs them on the CPU instead, to check the tests themselves on a
machine without a GPU (``INITLAB_TEST_DEVICE=cuda:1`` picks another GPU).

What is covered: every stacking strategy (``stacked``, ``vmap``, ``looped``) for initlab's MLP
with batch norm, its CNN, a user ResNet and a user transformer, each model of the stack
against the same config trained alone on the CPU; per-model batch-norm statistics and
dropout masks on the device; bf16 autocast; compare's whole path (store, run keys, device
column) is in tests/test_cli_user_model.py.

Tolerances: TF32 is switched off for the comparisons (cuDNN convolutions use it by default:
10 mantissa bits), so both sides compute in fp32 and differ only in summation order
(cuBLAS/cuDNN against MKL/oneDNN). One epoch of 33-45 small-learning-rate steps then keeps
losses within ``rel = abs = 1e-3``, as the engine's first CUDA test assumed
(tests/test_engine_inputs.py): 20 times the CPU-to-CPU bound of tests/test_engine.py
(50 eps sqrt(n) = 2.2e-4 for digits), since each device reorders every reduction, not
one. An accuracy moves by the borderline examples of a model still learning: 5 of digits'
360 validation examples (1.4%) between two CPU paths for the ResNet after one epoch, so
``ACCURACY = 0.03``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab.config import RunConfig
from initlab.data import load
from initlab.train import run_config, train_configs
from initlab.train.build import build_initialized_model
from initlab.train.engine import train_stack
from initlab.train.schedule import Member, StackSettings
from initlab.train.stack import ModelStack

DEVICE = os.environ.get("INITLAB_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
pytestmark = pytest.mark.skipif(not DEVICE, reason="needs CUDA (runs on GPU machines)")

HERE = Path(__file__).resolve()
EXAMPLES = HERE.parents[1] / "examples"
BASE = dict(dataset="digits", hidden=(32, 16), epochs=1, batch_size=32, track="off")
INITS = ("he_normal", "glorot_uniform", "orthogonal")
REL = 1e-3
ACCURACY = 0.03
WORKLOADS = {
    "mlp-batchnorm": dict(batch_norm=True, lr=0.05),
    "cnn": dict(model="cnn", batch_norm=True, optimizer="momentum", lr=0.005),
    "user-resnet": dict(
        model=f"{EXAMPLES / 'my_models.py'}:resnet",
        model_args={"width": 8},
        optimizer="momentum",
        lr=0.01,
    ),
    "user-transformer": dict(
        model=f"{HERE.parent / 'test_stacked_attention.py'}:small_transformer",
        dataset=f"{EXAMPLES / 'my_data.py'}:tokens",
        optimizer="adam",
        lr=1e-3,
    ),
}


@pytest.fixture(autouse=True)
def fp32_products():
    """TF32 off while a test runs (fp32 products round as the CPU's), then as it was."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def datasets():
    return {}


def data_of(config: RunConfig, cache: dict):
    if config.dataset not in cache:
        cache[config.dataset] = load(config.dataset)
    return cache[config.dataset]


def configs_of(workload: str, device: str = DEVICE) -> list[RunConfig]:
    """Three configs differing in init, seed and learning rate (lr, 2 lr, 3 lr)."""
    settings = {**BASE, **WORKLOADS[workload]}
    lr = settings.pop("lr")
    return [
        RunConfig(**settings, init=init, seed=k, lr=lr * (k + 1), device=device)
        for k, init in enumerate(INITS)
    ]


def assert_close(device_run, cpu_run, data) -> None:
    """Same status, losses within ``REL``, accuracies within ``ACCURACY`` (module docs)."""
    assert device_run.status == cpu_run.status, (device_run.message, cpu_run.message)
    for a, b in zip(device_run.epochs, cpu_run.epochs, strict=True):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=REL, abs=REL), key
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= ACCURACY
    assert device_run.test_loss == pytest.approx(cpu_run.test_loss, rel=REL, abs=REL)


@pytest.mark.parametrize("strategy", ["stacked", "vmap", "looped"])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_every_strategy_on_the_device_trains_as_each_model_alone_on_the_cpu(
    workload, strategy, datasets
):
    configs = configs_of(workload)
    data = data_of(configs[0], datasets)
    shared = StackSettings(
        task=data.task,
        optimizer=configs[0].optimizer,
        epochs=1,
        batch_size=32,
        strategy=strategy,
        device=torch.device(DEVICE),
    )
    models = [build_initialized_model(c, data.input_shape, data.num_classes) for c in configs]
    members = [Member(c.seed, c.lr) for c in configs]
    on_device = train_stack(models, data, shared, members)
    for config, result in zip(configs, on_device, strict=True):
        assert result.strategy == strategy, result.message
        assert_close(result, run_config(config.replace(device="cpu"), data), data)


def test_compare_path_on_the_device_matches_the_cpu(datasets):
    """``train_configs`` (what compare and sweep call): the stack's auto strategy."""
    configs = configs_of("mlp-batchnorm")
    data = data_of(configs[0], datasets)
    on_device = train_configs(configs, data)
    on_cpu = train_configs([c.replace(device="cpu") for c in configs], data)
    for a, b in zip(on_device, on_cpu, strict=True):
        assert_close(a, b, data)


def test_batch_norm_statistics_and_dropout_masks_are_per_model_on_the_device():
    device = torch.device(DEVICE)
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)) for _ in range(2)]
    stack = ModelStack(models, device)
    x = torch.stack([torch.zeros(16, 4), 10 + torch.randn(16, 4)])
    stack.forward(x.to(device), train=True)
    mean = stack.buffers["1.running_mean"].cpu()
    for m in range(2):
        with torch.no_grad():
            expected = 0.1 * models[m][0](x[m]).mean(0)
        torch.testing.assert_close(mean[m], expected, rtol=REL, atol=REL)
    p, n = 0.5, 20_000
    dropout = nn.Sequential(nn.Linear(1, 1), nn.Dropout(p))
    nn.init.ones_(dropout[0].weight)
    nn.init.zeros_(dropout[0].bias)
    stack = ModelStack([dropout] * 3, device)
    ones = torch.ones(n, 1, device=device)
    kept = (stack.forward(ones, train=True, shared=True).squeeze(-1) != 0).cpu()  # [3, n]
    for m in range(3):
        assert abs(kept[m].float().mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    both_sd = math.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)
    for a, b in [(0, 1), (0, 2), (1, 2)]:  # independent: P(both kept) = (1 - p)^2
        assert abs((kept[a] & kept[b]).float().mean() - (1 - p) ** 2) < 5 * both_sd


@pytest.mark.parametrize("workload", ["mlp-batchnorm", "user-resnet", "user-transformer"])
def test_bf16_autocast_trains_on_the_device(workload, datasets):
    configs = [c.replace(precision="bf16", epochs=2) for c in configs_of(workload)[:2]]
    data = data_of(configs[0], datasets)
    chance = 1 / data.num_classes
    for result in train_configs(configs, data):
        assert result.status == "ok", result.message
        assert result.epochs[-1]["val_accuracy"] > chance + 0.05


def test_a_model_diverging_on_the_device_is_frozen_where_the_cpu_freezes_it(datasets):
    """The host reads the losses after every step on a GPU too: the diverged model's step
    and frozen state match the CPU's, and the others train as they would alone."""
    data = data_of(RunConfig(**BASE), datasets)
    shared = dict(task=data.task, optimizer="momentum", epochs=1, batch_size=32)
    members = [Member(seed=s, lr=0.05, momentum=0.9) for s in range(3)]
    runs = {}
    for where in (DEVICE, "cpu"):
        torch.manual_seed(0)
        models = [nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
                  for _ in members]  # fmt: skip
        with torch.no_grad():
            models[1][3].weight.mul_(1e20)  # its logits overflow within a few steps
        settings = StackSettings(**shared, device=torch.device(where))
        results = train_stack(models, data, settings, members, write_back=True)
        runs[where] = results, models
    (on_device, frozen), (on_cpu, frozen_cpu) = runs[DEVICE], runs["cpu"]
    assert on_device[1].status == on_cpu[1].status == "diverged"
    assert on_device[1].message == on_cpu[1].message
    for a, b in zip(frozen[1].parameters(), frozen_cpu[1].parameters(), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=REL, atol=REL * b.abs().max().item())
    for m in (0, 2):
        assert on_device[m].status == "ok"
        assert on_device[m].test_loss == pytest.approx(on_cpu[m].test_loss, rel=REL, abs=REL)


def test_diagnose_and_recommend_take_a_numpy_batch_for_a_model_on_the_device():
    """The per-model functions run where the user put the model: a numpy batch goes to the
    model's device (it raised a device mismatch), and the model stays there."""
    import numpy as np

    import initlab

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).to(DEVICE)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 8)).astype("float32"), rng.integers(0, 3, 32)
    diagnosis = initlab.diagnose(model, x, y)
    assert list(diagnosis.layers["layer"]) == ["0", "2"]
    assert initlab.recommend(model, x)["0"] == "he_normal"
    assert all(p.device.type == torch.device(DEVICE).type for p in model.parameters())


def test_checkpoints_resume_on_the_device_and_move_from_the_cpu(tmp_path):
    """A stack interrupted on the device resumes there with the uninterrupted run's numbers;
    a checkpoint saved on the CPU resumes on the device (the run key leaves the device out;
    the dropout RNG, of another layout there, is seeded anew)."""
    from initlab.checkpoints import Checkpoints

    digits = load("digits")
    runs = [
        RunConfig(**{**BASE, "epochs": 3}, dropout=0.1, optimizer="adam", lr=0.003, init=i, seed=k)
        for k, i in enumerate(INITS)
    ]
    here = [c.replace(device=DEVICE) for c in runs]

    def stop_at(epoch, last):
        def hook(config, record):
            if record["epoch"] == epoch and config is last:
                raise KeyboardInterrupt

        return hook

    for first, then, folder in ((here, here, "same"), (runs, here, "moved")):
        saves = Checkpoints(str(tmp_path / folder), every=0.0)
        with pytest.raises(KeyboardInterrupt):
            train_configs(first, digits, checkpoints=saves, on_epoch=stop_at(2, first[-1]))
        heard: list = []
        hook = lambda c, r, heard=heard: heard.append(r["epoch"])  # noqa: E731
        resumed = train_configs(then, digits, checkpoints=saves, on_epoch=hook)
        assert sorted(heard) == [2, 2, 2, 3, 3, 3] and all(r.status == "ok" for r in resumed)
        assert all(r.device.startswith(DEVICE.split(":")[0]) for r in resumed)
        if folder == "same":
            for a, b in zip(resumed, train_configs(here, digits), strict=True):
                assert a.test_loss == pytest.approx(b.test_loss, rel=REL, abs=REL)
