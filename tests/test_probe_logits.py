"""``large_logits``: the output layer's scale when its outputs are class logits."""

import itertools
import math

import torch
from torch import nn

import initlab
from initlab.models import MLP
from initlab.models.gpt import gpt
from initlab.probe import diagnose


def _mlp(init: str, output: str = "same", depth: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = MLP(784, [256] * depth, 10, "relu")
    initlab.initialize(model, init, output_init=output, generator=torch.Generator().manual_seed(1))
    return model


def _batch(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_a_readout_tied_to_pytorchs_unit_normal_embedding_has_large_logits():
    torch.manual_seed(0)
    model = gpt(vocab_size=64, width=64, depth=2)
    ids = torch.randint(0, 64, (32, 16), generator=torch.Generator().manual_seed(0))
    assert "large_logits" not in diagnose(model, ids, ids.roll(-1, 1)).names  # untied: 0.6
    model.head.weight = model.tok_emb.weight  # N(0, 1) rows: logits of std ~ sqrt(64)
    found = diagnose(model, ids, ids.roll(-1, 1)).finding("large_logits")
    assert found.values["logit_std"] > 5 and f"ln 64 = {math.log(64):.3g}" in found.message
    assert "normal(std=0.02)" in found.suggestion
    # the readout is the token table: --output-init no longer sets it, --embedding-init does
    assert "tok_emb.weight (tied)" in found.suggestion and "--embedding-init" in found.suggestion
    assert "--output-init" not in found.suggestion


def test_growing_hidden_layers_below_the_exploding_ratio_still_give_large_logits():
    # std 0.2 on 256 ReLU inputs: x2.3 a layer, ~12x over four layers (below the ratio 30)
    d = diagnose(_mlp("random_normal(stddev=0.2)", depth=4), *_batch())
    assert "exploding_activations" not in d.names and "large_logits" in d.names
    assert "fix their init first" in d.finding("large_logits").suggestion


def test_healthy_inits_and_regression_outputs_have_no_large_logits():
    x, y = _batch()
    for init, output in (
        ("he_normal", "same"),
        ("he_normal", "glorot_uniform"),
        ("orthogonal", "same"),
    ):
        assert "large_logits" not in diagnose(_mlp(init, output), x, y).names
    # float targets: a regression output's scale is the targets', not a softmax's
    big = _mlp("random_normal(stddev=0.2)")
    assert "large_logits" not in diagnose(big, x, torch.randn(len(x), 10)).names


def test_an_output_row_without_a_class_count_still_gets_its_finding():
    import pandas as pd

    from initlab.probe.logits import logit_findings

    row = {"layer": "head", "pre_std": 10.0, "weight_std": 1.0, "post_std": float("nan")}
    frame = pd.DataFrame([{**row, "units": float("nan"), "fan_out": float("nan")}])
    [found] = logit_findings(frame)
    assert "ln" not in found.message and found.values["classes"] == 0


class _Residual(nn.Module):
    """16 branches without a norm, He inside, a Glorot readout: the stream grows ~2^16."""

    def __init__(self, width: int = 64, depth: int = 16) -> None:
        super().__init__()
        self.inp = nn.Linear(32, width)
        self.fc1 = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.fc2 = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for fc1, fc2 in zip(self.fc1, self.fc2, strict=True):
            x = x + fc2(torch.relu(fc1(x)))
        return self.head(x)


def test_large_logits_from_a_growing_stream_blame_the_stream_not_the_readout():
    """The readout already was glorot_uniform, and the advice was to give it glorot_uniform."""
    torch.manual_seed(0)
    model = _Residual()
    initlab.initialize(model, "he_normal", output_init="glorot_uniform")
    x, y = torch.randn(256, 32), torch.randint(0, 10, (256,))
    found = diagnose(model, x, y).finding("large_logits")
    assert "own init is not the cause" in found.suggestion
    assert "residual rule" in found.suggestion and "--output-init" not in found.suggestion
    # a readout that is itself too large is still told so
    d = diagnose(_mlp("random_normal(stddev=0.2)", depth=4), *_batch())
    assert "--output-init glorot_uniform" in d.finding("large_logits").suggestion


def test_large_logits_from_unscaled_inputs_say_so():
    """With no hidden layer (or none that grows), 'the hidden activations grow' was wrong."""
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    x, y = 100 * torch.randn(256, 64), torch.randint(0, 10, (256,))
    found = diagnose(model, x, y).finding("large_logits")
    assert "standardize the inputs" in found.suggestion and "hidden" not in found.suggestion


def test_large_logits_from_small_gains_everywhere_do_not_blame_standardized_data():
    """A VGG on standardized digits: each layer a little above unit gain (max pooling,
    dropout in train mode), logits of std 3.9, and the advice was to standardize the
    inputs, which already were."""
    gen = torch.Generator().manual_seed(0)
    widths = [64, 256, 256, 256, 256]
    layers: list[nn.Module] = []
    for fan_in, units in itertools.pairwise(widths):
        linear = nn.Linear(fan_in, units)
        with torch.no_grad():  # 1.2x He: the activations grow 1.2x a layer, 1.7x in all
            linear.weight.normal_(0.0, 1.2 * math.sqrt(2 / fan_in), generator=gen)
            linear.bias.zero_()
        layers += [linear, nn.ReLU()]
    head = nn.Linear(256, 10)
    with torch.no_grad():
        head.weight.normal_(0.0, 1.9 / math.sqrt(256), generator=gen)  # own gain 1.9 < 2
        head.bias.zero_()
    x, y = torch.randn(512, 64, generator=gen), torch.randint(0, 10, (512,), generator=gen)
    found = diagnose(nn.Sequential(*layers, head), x, y).finding("large_logits")
    assert "own init is not the cause" in found.suggestion
    assert "standardize the inputs" not in found.suggestion
    assert "no one layer stands out" in found.suggestion and "--output-init" in found.suggestion


def test_a_large_first_layer_bias_is_not_read_as_large_data():
    """E[z²] = fan_in Var(w) E[x²] + E[b²]: a bias of 3 made standardized inputs read as
    'mean square about 9.9: standardize the inputs'."""
    gen = torch.Generator().manual_seed(1)
    first, head = nn.Linear(64, 256), nn.Linear(256, 10)
    with torch.no_grad():
        first.weight.normal_(0.0, math.sqrt(2 / 64), generator=gen)
        first.bias.fill_(3.0)
        head.weight.normal_(0.0, 1.9 / math.sqrt(256), generator=gen)
        head.bias.zero_()
    x, y = torch.randn(512, 64, generator=gen), torch.randint(0, 10, (512,), generator=gen)
    found = diagnose(nn.Sequential(first, nn.ReLU(), head), x, y).finding("large_logits")
    assert found is not None and "standardize the inputs" not in found.suggestion
