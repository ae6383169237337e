import numpy as np
import pytest
import torch
from torch import nn

from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.models.gpt import gpt
from initlab.models.resnet import BasicBlock, resnet
from initlab.train import run_config


def test_resnet_depth_is_6n_plus_2_with_and_without_norm():
    for depth, norm in ((8, True), (20, False)):
        model = resnet(depth, width=4, num_classes=7, norm=norm, in_channels=1)
        blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
        assert len(blocks) == 3 * (depth - 2) // 6
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 1 + 2 * len(blocks) + 2  # stem, branches, two projections
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert has_bn is norm
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(InitlabError, match="6n\\+2"):
        resnet(depth=21)


def test_gpt_is_causal_and_uses_attn_scale():
    torch.manual_seed(0)
    model = gpt(vocab_size=11, width=16, depth=2, heads=2, context=8).eval()
    idx = torch.randint(0, 11, (3, 8))
    out = model(idx)
    assert out.shape == (3, 8, 11)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    atol = 50 * torch.finfo(torch.float32).eps * 16**0.5
    with torch.no_grad():
        torch.testing.assert_close(model(changed)[:, :5], out[:, :5], atol=atol, rtol=0)
        assert not torch.allclose(model(changed)[:, 5:], out[:, 5:], atol=1e-3)
        for block in model.blocks:
            block.attn.attn_scale = 1.0 / block.attn.head_dim  # the muP setting
        assert not torch.allclose(model(idx), out, atol=1e-4)
    with pytest.raises(InitlabError, match="multiple of heads"):
        gpt(width=10, heads=4)


def test_both_train_through_the_engine(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 16, (96, 9))
    np.savez(
        tmp_path / "tok.npz",
        x_train=tokens[:64, :8], y_train=tokens[:64, 1:],
        x_test=tokens[64:, :8], y_test=tokens[64:, 1:],
    )  # fmt: skip
    config = RunConfig(
        model="initlab.models.gpt:gpt",
        model_args={"vocab_size": 16, "width": 16, "depth": 1, "heads": 2, "context": 8},
        dataset=str(tmp_path / "tok.npz"),
        task="sequence",
        init="default",
        epochs=1,
        batch_size=16,
        optimizer="adam",
        lr=1e-2,
    )
    result = run_config(config)
    assert result.status in ("ok", "stuck"), result.message
    assert np.isfinite(result.final_train_loss)
    images = rng.standard_normal((48, 1, 16, 16)).astype("float32")
    labels = rng.integers(0, 3, 48)
    np.savez(
        tmp_path / "img.npz",
        x_train=images[:32],
        y_train=labels[:32],
        x_test=images[32:],
        y_test=labels[32:],
    )
    config = config.replace(
        model="initlab.models.resnet:resnet",
        model_args={"depth": 8, "width": 4, "num_classes": 3, "norm": False, "in_channels": 1},
        dataset=str(tmp_path / "img.npz"),
        task="auto",
        init="he_normal",
    )
    result = run_config(config)
    assert result.status in ("ok", "stuck"), result.message
    assert np.isfinite(result.final_train_loss)
