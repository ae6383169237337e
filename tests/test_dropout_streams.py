"""Each model's own dropout masks: the same draw alone or in a stack, scaled like F.dropout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.train.dropout_streams import (
    DropoutStreams,
    ModelDropout,
    StackedDropout,
    use_model_dropout,
)

CPU = torch.device("cpu")


def test_a_stacked_slice_gets_the_masks_its_model_gets_alone():
    p, seeds = 0.4, [11, 22, 33]
    x = torch.randn(3, 64, 20)
    stacked = StackedDropout(p, DropoutStreams(seeds, CPU))(x)
    for m, seed in enumerate(seeds):
        alone = ModelDropout(p, torch.Generator().manual_seed(seed))(x[m])
        assert torch.equal(stacked[m], alone), m  # the same draw, masks 0 or 1/(1-p)


def test_masks_keep_each_element_with_probability_one_minus_p_scaled_to_keep_the_mean():
    p, n = 0.3, 200_000
    y = ModelDropout(p, torch.Generator().manual_seed(0))(torch.ones(n))
    kept = y != 0
    assert torch.all(kept == torch.isclose(y, torch.tensor(1 / (1 - p))))
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)


def test_models_masks_are_independent_and_follow_their_own_seed():
    p, n = 0.5, 20_000
    x = torch.ones(3, n)
    kept = StackedDropout(p, DropoutStreams([1, 2, 1], CPU))(x) != 0
    both = (kept[0] & kept[1]).float().mean().item()  # independent: (1 - p)^2
    assert abs(both - (1 - p) ** 2) < 5 * math.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)
    assert torch.equal(kept[0], kept[2])  # same seed, same masks


@pytest.mark.parametrize("module", ["model", "stacked"])
def test_evaluation_p_zero_and_p_one_behave_as_nn_dropout(module):
    def make(p):
        gen = torch.Generator().manual_seed(0)
        return (
            ModelDropout(p, gen)
            if module == "model"
            else StackedDropout(p, DropoutStreams([0], CPU))
        )

    x = torch.randn(1, 8, 5)
    assert make(0.5).eval()(x) is x
    assert make(0.0)(x) is x
    assert torch.equal(make(1.0)(x), torch.zeros_like(x))


def test_kept_streams_draw_the_same_masks_again():
    streams = DropoutStreams([5, 6], CPU)
    layer = StackedDropout(0.5, streams)
    x = torch.ones(2, 100)
    with streams.kept():
        first = layer(x)
    assert torch.equal(layer(x), first)


def test_every_nn_dropout_of_a_module_is_replaced_and_other_dropout_kept():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Sequential(nn.Dropout2d(0.1)))
    model.add_module("enc", nn.TransformerEncoderLayer(4, 2, 8, dropout=0.3))
    use_model_dropout(model, gen)
    assert isinstance(model[1], ModelDropout) and model[1].p == 0.2
    assert type(model[2][0]) is nn.Dropout2d  # not elementwise: drawn by the global RNG
    encoder = model.enc
    assert all(
        isinstance(getattr(encoder, n), ModelDropout) for n in ("dropout", "dropout1", "dropout2")
    )
