"""``initlab plan`` and ``initlab.plan``: one row per parameter, the residual structure."""

import json

import numpy as np
import torch
from torch import nn

import initlab
from initlab.cli import main
from initlab.config import RunConfig
from initlab.models.resnet import resnet
from initlab.train.grouping import group_key
from initlab.train.run import run_config


def test_plan_rows_cover_every_parameter_and_leave_the_model_alone():
    torch.manual_seed(0)
    model = resnet(depth=8, width=4, num_classes=3, norm=True, in_channels=1)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    plan = initlab.plan(model, "he_normal", residual_init="zero_last_norm")
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    rows = {r["name"]: r for r in plan.parameters}
    assert set(rows) == {n for n, _ in model.named_parameters()}
    bn2 = rows["layer2.0.bn2.weight"]
    assert bn2["role"] == "branch 2, last norm" and bn2["rms_after"] == 0.0
    assert bn2["rms_before"] == 1.0 and "zeroed (zero_last_norm)" in bn2["rule"]
    conv = rows["layer1.0.conv1.weight"]
    assert conv["role"] == "branch 1, layer 1 of 2" and conv["rule"] == "he_normal"
    # He normal: std = sqrt(2 / fan_in), fan_in = 4·3·3; 144 draws → relative error ~ 1/sqrt(2·144)
    assert abs(conv["std_after"] / (2 / 36) ** 0.5 - 1) < 4 / (2 * 144) ** 0.5
    assert rows["layer2.0.shortcut.0.weight"]["role"] == "skip projection (branch 2)"
    assert rows["bn1.weight"]["role"] == "norm" and rows["fc.weight"]["role"] == "output"
    data = plan.to_json()
    assert data["residual"]["depth"] == 3 and data["residual"]["method"] == "fx"
    assert data["residual"]["rule"] == "zero_last_norm"


def test_plan_leaves_the_global_random_state_as_it_was():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    initlab.plan(model, "he_normal")
    assert torch.equal(torch.rand(3), expected)


def test_plan_command_writes_json_and_refuses_bad_input(tmp_path, capsys):
    path = tmp_path / "plan.json"
    args = ["plan", "--model", "initlab.models.gpt:gpt", "--model-arg", "depth=1"]
    assert main([*args, "--init", "normal(std=0.02)", "--residual-init", "depth_scaled",
                 "--out", str(path)]) == 0  # fmt: skip
    data = json.loads(path.read_text())
    roles = {r["name"]: r["role"] for r in data["parameters"]}
    assert roles["tok_emb.weight"] == "embedding" and roles["head.weight"] == "output"
    proj = next(r for r in data["parameters"] if r["name"] == "blocks.0.mlp.proj.weight")
    assert abs(proj["std_after"] / (0.02 / 2**0.5) - 1) < 0.05  # 16384 draws
    assert "L = 2 branches" in capsys.readouterr().out
    rules = {r["name"]: r["rule"] for r in data["parameters"]}
    assert rules["head.weight"] == "glorot_uniform"  # the output layer as compare builds it
    assert main([*args, "--init", "he_normal", "--output-init", "same", "--bias", "keep",
                 "--out", str(path)]) == 0  # fmt: skip
    rules = {r["name"]: r["rule"] for r in json.loads(path.read_text())["parameters"]}
    assert rules["head.weight"] == "he_normal" and rules["head.bias"] == "kept"
    assert main([*args, "--output-init", "glorot_unifrom"]) == 2  # also with the default init
    assert "did you mean 'glorot_uniform'" in capsys.readouterr().err
    assert main([*args, "--residual-init", "fixpu"]) == 2
    assert "did you mean 'fixup'" in capsys.readouterr().err
    assert main([*args, "--residual-init", "zero_last_norm"]) == 0  # pre-norm: nothing to zero
    assert "rule none (zero_last_norm changed nothing)" in capsys.readouterr().out
    assert main(["plan", "--model", "mlp"]) == 2


def test_skipinit_and_fixup_runs_train_beside_plain_ones(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((48, 1, 8, 8)).astype("float32")
    labels = rng.integers(0, 3, 48)
    np.savez(
        tmp_path / "img.npz",
        x_train=images[:32], y_train=labels[:32], x_test=images[32:], y_test=labels[32:],
    )  # fmt: skip
    base = RunConfig(
        model="initlab.models.resnet:resnet",
        model_args={"depth": 8, "width": 2, "num_classes": 3, "norm": False, "in_channels": 1},
        dataset=str(tmp_path / "img.npz"),
        init="he_normal",
        epochs=1,
        batch_size=16,
    )
    rules = ("none", "skipinit", "fixup", "default+skipinit")
    configs = [
        base.replace(init="default", residual_init="skipinit")
        if r == "default+skipinit"
        else base.replace(residual_init=r)
        for r in rules
    ]
    keys = [group_key(c) for c in configs]
    assert keys[0] != keys[1] and keys[1] != keys[2] and keys[1] == keys[3]  # new parameters
    assert group_key(base.replace(residual_init="zero")) == keys[0]  # same parameters
    results = [run_config(c) for c in configs]
    assert [r.status in ("ok", "stuck") for r in results] == [True] * 4, [
        r.message for r in results
    ]
    assert all(np.isfinite(r.final_train_loss) for r in results)


def test_residual_init_option_on_diagnose_compare_and_sweep(tmp_path, capsys):
    resnet_args = ["--model", "initlab.models.resnet:resnet", "--model-arg", "depth=8",
                   "--model-arg", "width=4", "--model-arg", "in_channels=1"]  # fmt: skip
    assert main(["diagnose", *resnet_args, "--data", "digits", "--batch", "64",
                 "--init", "he_normal", "--residual-init", "zero_last_layer"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    header = next(line.split("┃") for line in lines if "W std" in line)
    column = [cell.strip() for cell in header].index("W std")
    rows = [line.split("│") for line in lines if "conv2" in line]
    assert len(rows) == 3 and all(float(r[column]) == 0.0 for r in rows)  # each last conv
    assert main(["compare", "--data", "digits", "--residual-init", "fixpu"]) == 2
    assert "did you mean 'fixup'" in capsys.readouterr().err
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[fixed]\ndataset = "digits"\n[sweep]\ninit = ["he_normal"]\n')
    assert main(["sweep", str(spec), "--residual-init", "skipnit", "--dry-run"]) == 2
    assert "did you mean 'skipinit'" in capsys.readouterr().err
