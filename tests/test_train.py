import math

import torch

from initlab.config import RunConfig
from initlab.data import load
from initlab.train import build_initialized_model, evaluate, run_config, train_model

SMALL = dict(dataset="digits", hidden=(32, 16), epochs=5, batch_size=32, lr=0.1)


def test_zero_init_keeps_hidden_units_identical_after_training():
    """Zeros in the hidden layers: every hidden unit computes the same function, gets the same
    gradient, and so stays identical to its neighbours forever — the symmetry problem."""
    data = load("digits")
    for activation in ("relu", "tanh"):
        config = RunConfig(**SMALL, init="zeros", activation=activation)
        model = build_initialized_model(config, data.input_shape, data.num_classes)
        result = train_model(model, data, lr=0.1, epochs=2, seed=0)
        assert len(result.epochs) == 2
        for block in model.blocks:
            w = block.linear.weight.detach()
            # every unit's incoming weights equal the first unit's
            assert torch.equal(w, w[:1].expand_as(w)), activation
        # ...so the network cannot use its input: it does no better than the majority class
        assert result.test_accuracy < 0.2


def test_random_init_learns_the_task():
    result = run_config(RunConfig(**SMALL, init="he_normal"))
    assert result.status == "ok"
    assert result.test_accuracy > 0.8
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]


def test_same_seed_same_numbers_and_different_seed_different_numbers():
    a = run_config(RunConfig(**SMALL, init="glorot_uniform", seed=1))
    b = run_config(RunConfig(**SMALL, init="glorot_uniform", seed=1))
    c = run_config(RunConfig(**SMALL, init="glorot_uniform", seed=2))
    strip = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r.epochs]  # noqa: E731
    assert strip(a) == strip(b) and a.test_accuracy == b.test_accuracy
    assert strip(a) != strip(c)


def test_a_run_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    run_config(RunConfig(**{**SMALL, "epochs": 1}, init="he_uniform", dropout=0.3))
    assert torch.equal(state, torch.get_rng_state())


def test_nan_loss_is_recorded_as_diverged_not_raised():
    result = run_config(RunConfig(**{**SMALL, "lr": 1e8}, init="random_normal(stddev=5.0)"))
    assert result.status == "diverged"
    assert "non-finite" in result.message
    assert math.isnan(result.test_accuracy)


def test_evaluate_restores_the_training_mode():
    data = load("digits")
    model = build_initialized_model(RunConfig(**SMALL, dropout=0.5), data.input_shape, 10)
    model.train()
    loss, acc = evaluate(model, data.x_val, data.y_val)
    assert model.training and loss > 0 and 0 <= acc <= 1
    model.eval()
    evaluate(model, data.x_val, data.y_val)
    assert not model.training


def test_every_optimizer_trains():
    for name, lr in [("sgd", 0.1), ("momentum", 0.02), ("adam", 1e-3), ("adamw", 1e-3)]:
        result = run_config(RunConfig(**{**SMALL, "lr": lr}, optimizer=name))
        assert result.status == "ok", name
        assert result.test_accuracy > 0.7, name


def test_preflight_and_run_do_not_import_each_other_even_when_deferred():
    import ast
    from pathlib import Path

    import initlab.train.preflight as preflight

    tree = ast.parse(Path(preflight.__file__).read_text())
    names = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "initlab.train.run" not in names
    assert "initlab.train.build" in names
