"""Fan rules: the tensor rule (PyTorch's) and the module rule (initlab's, fixes pytorch#7865)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.initializers import Fans, fans_of_module, fans_of_tensor


def test_fans_dataclass():
    fans = Fans(784, 300)
    assert (fans.fan_in, fans.fan_out, fans.fan_avg) == (784, 300, 542.0)
    assert fans.fan("fan_avg") == 542.0 and fans.fan("fan_out") == 300.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        fans.fan_in = 3  # type: ignore[misc]
    for bad in [(-1, 2), (1.5, 2), (True, 2)]:
        with pytest.raises(InitlabError, match=r"Fans\.fan_in"):
            Fans(*bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape", [(300, 784), (784, 300), (16, 8, 3, 3), (6, 2, 5), (4, 3, 2, 5, 7), (1, 1)]
)
def test_tensor_rule_is_torchs(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert fans_of_tensor(torch.empty(shape)) == Fans(*expected)
    assert fans_of_tensor(shape) == Fans(*expected) == fans_of_tensor(torch.Size(shape))


def test_tensor_rule_below_two_dimensions_follows_keras():
    assert fans_of_tensor(torch.empty(7)) == Fans(7, 7)
    assert fans_of_tensor(torch.tensor(3.0)) == Fans(1, 1)
    assert fans_of_tensor(()) == Fans(1, 1)


@pytest.mark.parametrize("bad", ["abc", (3, -1), (2.5, 3), 7])
def test_tensor_rule_rejects_non_shapes(bad):
    with pytest.raises(InitlabError):
        fans_of_tensor(bad)


@pytest.mark.parametrize(
    ("module", "fans"),
    [
        (nn.Linear(784, 300), Fans(784, 300)),
        (nn.Conv1d(4, 6, 5), Fans(20, 30)),
        (nn.Conv2d(3, 16, (5, 3)), Fans(45, 240)),
        (nn.Conv3d(2, 4, 3), Fans(54, 108)),
    ],
)
def test_module_rule_agrees_with_tensor_rule_for_linear_and_plain_convs(module, fans):
    assert fans_of_module(module) == fans == fans_of_tensor(module.weight)


def test_grouped_conv_fan_out_counts_out_per_group():
    conv = nn.Conv2d(8, 16, 3, groups=4)  # weight [16, 2, 3, 3]
    assert fans_of_module(conv) == Fans(2 * 9, 4 * 9, groups=4)
    assert fans_of_tensor(conv.weight) == Fans(2 * 9, 16 * 9)  # fan_out overcounted by groups


@pytest.mark.parametrize(
    ("module", "module_fans", "tensor_fans"),
    [
        # weight [in, out/groups, *k]: the tensor rule swaps the fans (pytorch#7865)
        (nn.ConvTranspose1d(4, 6, 5), Fans(4 * 5, 6 * 5), Fans(6 * 5, 4 * 5)),
        (nn.ConvTranspose2d(3, 10, (3, 2)), Fans(3 * 6, 10 * 6), Fans(10 * 6, 3 * 6)),
        (nn.ConvTranspose2d(8, 12, 3, groups=2), Fans(4 * 9, 6 * 9, 2), Fans(6 * 9, 8 * 9)),
        # stride 2 in 3 dimensions: each output sums 8 / 8 = 1 tap per input channel
        (nn.ConvTranspose3d(2, 5, 2, stride=2), Fans(2, 5 * 8), Fans(5 * 8, 2 * 8)),
        (nn.ConvTranspose2d(8, 4, 3, stride=2), Fans(round(8 * 9 / 4), 4 * 9), Fans(36, 72)),
    ],
)
def test_transposed_conv_module_rule_unswaps_the_fans(module, module_fans, tensor_fans):
    assert fans_of_module(module) == module_fans
    assert fans_of_tensor(module.weight) == tensor_fans


@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (4, 2), (3, 2), (3, 1)])
def test_he_keeps_the_signal_through_a_strided_transposed_conv(kernel, stride):
    """An up-sampling ConvTranspose2d(32, 32, 2, stride=2) drawn He with fan_in = 32·4 gave
    E[z²]/E[x²] = 0.5 where He's rule needs 2·(1/2 of a ReLU's input): the std halved at
    each decoder stage. Each output sums K/S taps per channel on average: E[z²] = 2 E[x²]."""
    from initlab.initializers import get

    layer = nn.ConvTranspose2d(64, 64, kernel, stride=stride, bias=False)
    fans = fans_of_module(layer)
    get("kaiming_normal")(layer.weight, torch.Generator().manual_seed(1), fans=fans)
    x = torch.randn(16, 64, 40, 40, generator=torch.Generator().manual_seed(0))
    inner = slice(kernel, kernel + 32)  # away from the edges; an even count of pixels, so
    z = layer(x)[..., inner, inner]  # taps alternating 1 and 2 (k 3, s 2) average K/S
    ratio = float(z.pow(2).mean() / x.pow(2).mean())
    # the weights' own sample variance (64·64·K draws) dominates the error: 4 standard errors
    se = math.sqrt(2 / (64 * 64 * kernel * kernel))
    assert ratio == pytest.approx(2.0, rel=4 * se)


@pytest.mark.parametrize(
    "module", [nn.BatchNorm1d(4), nn.Embedding(10, 3), nn.ReLU(), nn.LSTM(3, 4)]
)
def test_module_rule_refuses_unknown_modules(module):
    with pytest.raises(InitlabError, match="pass fans=Fans"):
        fans_of_module(module)


def test_module_rule_refuses_unmaterialized_lazy_modules():
    with pytest.raises(InitlabError, match="lazy"):
        fans_of_module(nn.LazyLinear(5))
    lazy = nn.LazyConv2d(4, 3)
    lazy(torch.zeros(1, 2, 5, 5))
    assert fans_of_module(lazy) == Fans(18, 36)
