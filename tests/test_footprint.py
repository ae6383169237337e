"""Model sizes and training memory, computed without allocating the model: arithmetic for
MLPs, the meta device for the CNN and user factories; the too-big warning and refusal."""

import math
import tracemalloc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.cli import main
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.models import build_model
from initlab.sweep import estimate, footprint
from initlab.sweep.footprint import memory_warnings, profile, run_bytes

GB = 10**9


@pytest.mark.parametrize(
    "settings",
    [
        {"hidden": (16, 8)},
        {"hidden": (16, 16), "batch_norm": True, "dropout": 0.2, "residual": True},
        {"hidden": ()},
        {"model": "cnn", "batch_norm": True},
    ],
)
def test_sizes_equal_those_of_the_real_model(settings):
    config = RunConfig(dataset="digits", **settings)
    model = build_model(
        config.model,
        (1, 8, 8),
        10,
        hidden=config.hidden,
        batch_norm=config.batch_norm,
        dropout=config.dropout,
        residual=config.residual,
    )
    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        if isinstance(module, torch.nn.Linear):
            macs += module.in_features * module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            macs += output[0].numel() * module.in_channels * math.prod(module.kernel_size)

    for module in model.modules():
        module.register_forward_hook(count)
    model.eval()(torch.zeros(1, 1, 8, 8))
    size = profile(config)
    assert size.parameters == sum(p.numel() for p in model.parameters())
    assert size.macs == macs and size.activations > 64


def test_memory_formula_counts_weights_gradients_optimizer_state_and_activations():
    sgd = RunConfig(dataset="digits", hidden=(16,), batch_size=10)
    size = profile(sgd)
    activations = 64 + 2 * 16 + 2 * 10  # input, linear + activation outputs, logits + grad
    assert size.activations == activations
    assert run_bytes(sgd, size) == 4 * size.parameters * 2 + 4 * 10 * activations
    adam = sgd.replace(optimizer="adam")
    assert run_bytes(adam, size) - run_bytes(sgd, size) == 8 * size.parameters
    bf16 = sgd.replace(precision="bf16")
    assert run_bytes(sgd, size) - run_bytes(bf16, size) == 2 * 10 * activations


def test_a_hundred_million_wide_layer_is_sized_and_warned_about_without_allocating(
    monkeypatch,
):
    monkeypatch.setattr(footprint, "machine_memory", lambda device="auto": (16 * GB, "RAM"))
    config = RunConfig(hidden=(100_000_000,), epochs=1)  # fashion-mnist: 784 inputs
    tracemalloc.start()
    try:
        lines = memory_warnings([config, config.replace(seed=1)])
        estimate.check_buildable([config])
        cost = estimate.run_cost(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"peak {peak / 1e6:.0f} MB"  # the weights alone would be 318 GB
    assert profile(config).parameters == 784 * 10**8 + 10**8 + 10**9 + 10
    assert len(lines) == 1 and lines[0].startswith("warning: one model of run he_normal")
    assert "needs about 662 GB to train" in lines[0] and "16 GB of RAM: it will not fit" in lines[0]
    assert cost.flops > 1e16
    assert memory_warnings([RunConfig(hidden=(100,))]) == []


def test_a_model_beyond_any_machine_is_refused():
    config = RunConfig(hidden=(10**7, 10**7))
    with pytest.raises(InitlabError, match=r"has 1e\+14 parameters, more than 1e\+12"):
        estimate.check_buildable([config])


def test_dry_run_shows_model_sizes_and_the_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(footprint, "machine_memory", lambda device="auto": (16 * GB, "RAM"))
    path = tmp_path / "big.toml"
    path.write_text('[fixed]\nhidden = [100000000]\n[sweep]\ninit = ["he_normal", "zeros"]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert (
        "mlp 100000000 (batch 32, sgd): 79,500,000,010 parameters; training memory 662 GB "
        "= 636 GB weights, gradients and optimizer state + 25.6 GB activations" in captured.out
    )
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and "it will not fit" in warnings[0]


FACTORIES = """
import torch
import torch.nn.functional as F
from torch import nn
from torch import nn

def build(width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

def eager(width=8):
    model = build(width)
    assert model[1].weight.sum().item() == model[1].weight.sum().item()  # needs real data
    return model
"""


def test_user_factories_are_sized_on_the_meta_device_or_skipped_with_a_note(tmp_path):
    (tmp_path / "factories.py").write_text(FACTORIES)
    spec = f"{tmp_path / 'factories.py'}:build"
    config = RunConfig(dataset="digits", model=spec, model_args={"width": 32})
    size = profile(config)
    assert size.parameters == 64 * 32 + 32 + 32 * 10 + 10 and size.macs == 64 * 32 + 32 * 10
    eager = config.replace(model=f"{tmp_path / 'factories.py'}:eager")
    with pytest.raises(footprint.NoEstimate, match="cannot be built on the meta device"):
        profile(eager)
    estimate.check_buildable([eager])  # the sweep's preflight builds it for real
    table = estimate.model_table([config, eager])
    assert table["params"].tolist()[0] == size.parameters and math.isnan(table["params"][1])
    assert "meta device" in table["note"][1]
    assert estimate.run_cost(eager) is None
    unknown_data = config.replace(dataset="data.npz")
    assert profile(unknown_data).macs is None and estimate.run_cost(unknown_data) is None
    builtin_on_user_data = RunConfig(dataset="data.npz", hidden=(16,))
    with pytest.raises(footprint.NoEstimate, match="sized once the data is read"):
        profile(builtin_on_user_data)
    estimate.check_buildable([builtin_on_user_data])
    assert memory_warnings([builtin_on_user_data]) == []
    assert "sized once the data is read" in estimate.model_table([builtin_on_user_data])["note"][0]


COUNTED = """
from pathlib import Path

import torch
from torch import nn

def eager(width=8):
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        log.write(torch.empty(0).device.type + "\\n")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    assert model[1].weight.sum().item() == model[1].weight.sum().item()  # needs real data
    return model
"""


def test_a_factory_that_fails_on_meta_is_built_on_the_cpu_once_per_arguments(tmp_path, capsys):
    """Each run's model is sized once per batch size by the estimate and again by the memory
    warnings: a factory failing on meta was built for real every time (12 builds for 3 runs)."""
    (tmp_path / "counted.py").write_text(COUNTED)
    factory = f"{tmp_path / 'counted.py'}:eager"
    spec = tmp_path / "b.toml"
    spec.write_text(
        f'[fixed]\nmodel = "{factory}"\ndataset = "digits"\n[sweep]\nbatch_size = [16, 32, 64]\n'
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    calls = (tmp_path / "calls.log").read_text().split()
    assert calls.count("cpu") == 1, calls
    assert "cannot be built on the meta device" in capsys.readouterr().out


def test_a_dry_run_refuses_a_factory_that_fails_on_the_cpu_as_well_as_on_meta(tmp_path, capsys):
    """``width = 128.0`` fails on meta and for real: the dry run says so in one line, exit 2,
    as the sweep does (it used to list the runs with 'no size estimate')."""
    (tmp_path / "factories.py").write_text(FACTORIES)
    spec = tmp_path / "w.toml"
    spec.write_text(
        f'[fixed]\nmodel = "{tmp_path / "factories.py"}:build"\ndataset = "digits"\n'
        "[sweep]\nmodel_args.width = [16, 128.0]\n"
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "raised TypeError" in err and "width=128.0" in err and "no size estimate" not in err
    assert not (tmp_path / "out").exists()


def test_machine_memory_is_the_gpus_for_cuda_runs_else_ram(monkeypatch):
    ram, what = footprint.machine_memory("cpu")
    assert what == "RAM" and ram > 10**8
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    props = type("Props", (), {"total_memory": 80 * GB})
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    assert footprint.machine_memory("cuda:1") == (80 * GB, "GPU cuda:1")
    assert footprint.machine_memory("auto") == (80 * GB, "GPU cuda:0")
    assert footprint.machine_memory("cuda:7")[1] == "RAM"  # no such GPU: the run will say so
    assert footprint.machine_memory("cpu") == (ram, "RAM")


class TinyAttention(nn.Module):
    """Token ids ``[B, T]`` → embedding ``d`` → one attention (q, k, v, out) → vocabulary."""

    def __init__(self, vocab: int = 50, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.qkv, self.out, self.head = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.embed(ids)).chunk(3, dim=-1)
        return self.head(self.out(F.scaled_dot_product_attention(q, k, v, is_causal=True)))


def test_a_sequence_models_multiply_adds_count_every_position_and_the_attention():
    """A Linear on ``[T, d]`` tokens does T products of its weight; attention adds
    ``q k^T`` and ``softmax · v``, ``T² d`` each (the causal kernel is counted whole)."""
    vocab, d, length = 50, 16, 12
    with torch.device("meta"):
        model = TinyAttention(vocab, d)
    size = footprint._meta_profile(model, (length,), tokens=True)
    linear = length * (d * 3 * d + d * d + d * vocab)
    assert size.macs == linear + 2 * length * length * d
