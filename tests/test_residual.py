import pytest
import torch

from initlab import initialize
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.models import MLP
from initlab.notes import InitlabNote
from initlab.probe.metrics import weight_duplicates
from initlab.residual import apply_residual_rule, residual_branches
from initlab.train.build import build_initialized_model
from initlab.train.run import load_data, train_model

DEPTH, WIDTH = 32, 128


def stream_growth(rule: str, activation: str, scheme: str) -> float:
    """E[h_L²] / E[h_0²] through the residual stream of a 32-block MLP at init."""
    torch.manual_seed(0)
    model = MLP(WIDTH, [WIDTH] * DEPTH, 10, activation, residual=True)
    initialize(model, scheme, generator=torch.Generator().manual_seed(0), residual_init=rule)
    x = torch.randn(512, WIDTH)
    with torch.no_grad():
        h = x
        for block in model.blocks:
            h = block(h)
    return float((h**2).mean() / (x**2).mean())


def test_zero_mean_branches_grow_the_stream_and_fixup_bounds_it_by_e():
    plain = stream_growth("none", "linear", "lecun_normal")
    assert plain > 1e6  # each branch adds the stream's own variance: ~2^L
    assert stream_growth("zero", "linear", "lecun_normal") == pytest.approx(1.0, abs=1e-6)
    # (1 + 1/L)^L < e; 128 units leave a few percent of finite-width slack
    assert 1.5 < stream_growth("fixup", "linear", "lecun_normal") < 1.1 * torch.e


def test_relu_branches_explode_and_the_rules_cut_it_down():
    plain = stream_growth("none", "relu", "he_normal")
    assert plain > 1e10
    assert stream_growth("skipinit", "relu", "he_normal") == pytest.approx(1.0, abs=1e-6)
    assert stream_growth("fixup", "relu", "he_normal") < 1e3  # the branch means still add up
    # zeroing the layer a ReLU follows would leave each branch dead (relu'(0) = 0): the zero
    # rule leaves them as drawn, says so, and the stream explodes as without a rule
    with pytest.warns(InitlabNote, match="leaves all 32 branches as initialized"):
        assert stream_growth("zero", "relu", "he_normal") == plain


def test_zero_rule_is_not_symmetric_after_training():
    config = RunConfig(
        dataset="digits",
        hidden=(32, 32, 32),
        residual=True,
        residual_init="zero",
        epochs=2,
        lr=0.05,
        activation="tanh",  # tanh'(0) = 1; relu'(0) = 0 leaves a one-layer branch at 0 forever
    )
    data = load_data(config)
    model = build_initialized_model(config, data.input_shape, data.num_classes, data=data)
    zeroed = [branch[-1] for branch in residual_branches(model)]
    units = [layer.out_features for layer in zeroed]
    # at init every unit of each zeroed layer is the same (all-zero) row: complete symmetry
    assert zeroed and [weight_duplicates(layer.weight, layer.bias) for layer in zeroed] == units
    settings = ("optimizer", "lr", "momentum", "batch_size", "epochs", "seed")
    result = train_model(model, data, **{k: getattr(config, k) for k in settings})
    assert result.status == "ok" and result.test_accuracy > 0.5
    # the residual stream hands each unit its own gradient: no two rows stay equal (up to
    # the dtype-derived rounding floor of the duplicate test)
    assert [weight_duplicates(layer.weight, layer.bias) for layer in zeroed] == [0] * len(zeroed)


def test_rule_names_and_branch_discovery():
    model = MLP(8, [16, 16, 16], 3, residual=True)
    assert len(residual_branches(model)) == 2  # 8→16 cannot add its input
    assert apply_residual_rule(model, "none") == 0
    with pytest.raises(InitlabError, match="residual rule"):
        apply_residual_rule(model, "fix-up")
    with pytest.raises(InitlabError, match="did you mean 'fixup'"):
        RunConfig(residual_init="fixpu")
