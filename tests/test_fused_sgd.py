"""SGD and SGD with momentum fused into the stacked linear layers' backward
(initlab.train.layers.FusedSGD) train exactly as the optimizer's own update does.

The same models and minibatches are trained by a fused stack and by the same stack with
fusing off (the stacked optimizer, itself tested against ``torch.optim``); parameters after
``STEPS`` steps agree within ``TOL = 50 eps(float32) sqrt(STEPS * batch)`` relative, each
step summing ``batch`` products, with that as an absolute floor near zero.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.data import load
from initlab.train import layers
from initlab.train.engine import Meter, StackTrainer
from initlab.train.schedule import Member, StackSettings

STEPS, BATCH = 12, 32
TOL = 50 * torch.finfo(torch.float32).eps * math.sqrt(STEPS * BATCH)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def models(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [
        nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                      nn.Linear(32, 10))
        for _ in range(3)
    ]  # fmt: skip


def train(
    digits, optimizer: str, fused_steps: int, lrs: tuple[float, ...] = (0.05,) * 3
) -> StackTrainer:
    """``STEPS`` steps of a stacked trainer, fusing for the first ``fused_steps``."""
    shared = StackSettings(optimizer=optimizer, batch_size=BATCH, epochs=1, strategy="stacked")
    members = [Member(seed=s, lr=lr, momentum=0.9) for s, lr in enumerate(lrs)]
    trainer = StackTrainer(models(), digits, shared, members)
    trainer.prepare()
    assert trainer.fusable
    meter = Meter(shared.task, trainer.size, trainer.device)
    for k, idx in enumerate(trainer.batches()[:STEPS]):
        trainer.fusable = k < fused_steps
        trainer.step(idx, meter)
    return trainer


@pytest.mark.parametrize("lrs", [(0.05,) * 3, (0.05, 0.01, 0.2)], ids=["one-lr", "lr-per-model"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("fused_steps", [STEPS, STEPS // 2], ids=["fused", "then-unfused"])
def test_fused_updates_equal_the_optimizers(digits, monkeypatch, optimizer, fused_steps, lrs):
    """Fused all along, and fused for half the steps and then not (the optimizer goes on
    from the momentum buffers the fused layers kept, as after a model diverges); with one
    learning rate, and with each model its own (a learning-rate sweep)."""
    calls = []
    original = layers._sgd_in_place

    def counting(ctx, x, g, fused):
        calls.append(fused.momentum)
        return original(ctx, x, g, fused)

    monkeypatch.setattr(layers, "_sgd_in_place", counting)
    fused = train(digits, optimizer, fused_steps, lrs)
    mu = 0.9 if optimizer == "momentum" else 0.0
    assert calls == [mu] * (2 * fused_steps)  # both linear layers, every fused step
    plain = train(digits, optimizer, 0, lrs)
    for name, value in fused.stack.params.items():
        torch.testing.assert_close(
            value.detach(), plain.stack.params[name].detach(), rtol=TOL, atol=TOL, msg=name
        )
    if optimizer == "momentum":
        for i, state in enumerate(fused.opt.state):
            other = plain.opt.state[i]["momentum_buffer"]
            torch.testing.assert_close(state["momentum_buffer"], other, rtol=TOL, atol=TOL)


def test_the_momentum_buffer_keeps_the_weights_layout():
    """The fused ``baddbmm_`` writes the buffer through the weight's ``[M, in, out]``
    storage; a buffer of another layout would make the layer fall back to gradients."""
    from initlab.train.optimizers import StackedOptimizer

    weight = torch.randn(3, 4, 5).transpose(1, 2).requires_grad_(True)  # [M, out, in]
    opt = StackedOptimizer("momentum", [weight], [0.1] * 3, [0.9] * 3, [0.0] * 3)
    buffer = opt.momentum_buffer(weight)
    assert buffer.stride() == weight.stride() and not buffer.any()
    assert opt.momentum_buffer(weight) is buffer


def test_a_diverging_model_stops_fusing_and_the_others_train_on_alike(digits):
    """A non-finite loss switches the stack to the masked, unfused update for good; the
    healthy models' momentum continues from the buffers their fused steps kept."""
    from initlab.train.engine import train_stack

    shared = StackSettings(optimizer="momentum", batch_size=BATCH, epochs=1, strategy="stacked")
    three = models()
    with torch.no_grad():
        three[1][4].weight.mul_(1e20)  # one fused step, then its logits overflow
    members = [Member(seed=s, lr=0.05, momentum=0.9) for s in range(3)]
    together = train_stack(three, digits, shared, members)
    assert together[1].status == "diverged"
    assert int(together[1].message.rsplit(" ", 1)[1]) >= 1  # after a fused step
    healthy = models()
    alone = train_stack([healthy[0], healthy[2]], digits, shared, [members[0], members[2]])
    rel = 50 * torch.finfo(torch.float32).eps * math.sqrt(digits.num_train)
    for a, b in zip([together[0], together[2]], alone, strict=True):
        assert a.status == b.status == "ok"
        assert a.test_loss == pytest.approx(b.test_loss, rel=rel, abs=rel)


def test_a_layer_whose_bias_is_a_slice_of_a_parameter_is_not_fused_with_momentum():
    """Separate q, k, v projections take their biases as slices of ``in_proj_bias``: such a
    layer has no momentum buffer of its own, so it keeps plain gradients."""
    from initlab.train.optimizers import StackedOptimizer
    from initlab.train.stack import ModelStack

    torch.manual_seed(0)
    stack = ModelStack([nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)) for _ in range(2)],
                       torch.device("cpu"))  # fmt: skip
    first, second = [mod for mod in stack._graph.modules() if hasattr(mod, "fused")]
    second.bias = second.bias[:, :]  # a view of the parameter, as a sliced bias is
    opt = StackedOptimizer("momentum", list(stack.params.values()), [0.1] * 2, [0.9] * 2,
                           [0.0] * 2)  # fmt: skip
    assert stack.fuse_sgd(0.1, 0.9, opt.momentum_buffer)
    assert first.fused.lr == 0.1 and first.fused.buffers[0] is opt.state[0]["momentum_buffer"]
    assert second.fused.lr is None and second.fused.buffers is None
    assert "momentum_buffer" not in opt.state[2]  # the second layer's weight
    stack.fuse_sgd(None)
    assert first.fused.lr is None and first.fused.buffers is None
