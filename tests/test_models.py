import pytest
import torch
from torch import nn

from initlab.errors import InitlabError, UnknownNameError
from initlab.models import MLP, SmallCNN, build_model


def test_mlp_structure_and_output_shape():
    model = MLP(784, (300, 100), 10, "tanh", batch_norm=True, dropout=0.2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 300), (300, 100), (100, 10)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_mlp_without_hidden_layers_is_a_linear_classifier():
    model = MLP(64, (), 10)
    assert [type(m) for m in model.modules() if isinstance(m, nn.Linear)] == [nn.Linear]


def test_residual_blocks_add_their_input_only_where_widths_agree():
    model = MLP(8, (16, 16, 16), 3, "linear", residual=True)
    assert [b.residual for b in model.blocks] == [False, True, True]
    for block in model.blocks:  # a zero branch makes a residual block the identity
        nn.init.zeros_(block.linear.weight)
        nn.init.zeros_(block.linear.bias)
    x = torch.randn(4, 8)
    h = model.blocks[0](x)
    assert torch.equal(model.blocks[2](model.blocks[1](h)), h)


@pytest.mark.parametrize(
    "kwargs",
    [dict(hidden=(300, 0)), dict(hidden=(-3,)), dict(dropout=1.0), dict(num_classes=0)],
)
def test_mlp_rejects_impossible_sizes(kwargs):
    args = dict(input_size=784, hidden=(10,), num_classes=10) | kwargs
    with pytest.raises(InitlabError):
        MLP(args["input_size"], args["hidden"], args["num_classes"], dropout=args.get("dropout", 0))


def test_unknown_activation_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'relu'"):
        MLP(4, (4,), 2, "rleu")


@pytest.mark.parametrize("shape", [(1, 40), (1, 28, 28), (3, 8, 8)])
def test_cnn_handles_1d_and_2d_inputs(shape):
    model = build_model("cnn", shape, 10)
    assert isinstance(model, SmallCNN)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_rejects_flat_or_tiny_inputs():
    with pytest.raises(InitlabError, match="MLP"):
        SmallCNN((784,), 10)
    with pytest.raises(InitlabError, match="too small"):
        SmallCNN((1, 2, 2), 10)


def test_unknown_architecture():
    with pytest.raises(UnknownNameError, match="did you mean 'mlp'"):
        build_model("mpl", (4,), 2)
