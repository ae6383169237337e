"""The batched engine reproduces the single engine, model by model, to float tolerance."""

import math

import pytest
import torch

from initlab.config import RunConfig
from initlab.data import load
from initlab.train import run_config
from initlab.train.batched import group_configs, group_key, train_group, train_group_states

RTOL = 1e-4
BASE = dict(dataset="digits", hidden=(32, 16), epochs=2, batch_size=32)
MIXED = [  # inits, seeds and learning rates differ inside one group
    dict(init="he_normal", seed=0, lr=0.1),
    dict(init="glorot_uniform", seed=1, lr=0.05, output_init="zeros"),
    dict(init="orthogonal", seed=2, lr=0.02, bias="torch_default"),
]
ADAM_LRS = (3e-3, 1e-3, 5e-4)


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def configs(**settings):
    """The three MIXED configs with ``settings`` on top (per-optimizer learning rates)."""
    out = []
    for k, mixed in enumerate(MIXED):
        config = {**BASE, **mixed, **settings}
        if config.get("optimizer") in ("adam", "adamw"):
            config["lr"] = ADAM_LRS[k]
        out.append(RunConfig(**config))
    return out


def assert_same(batched, single, rtol=RTOL):
    """Same status, message, epoch records (but seconds) and test metrics."""
    assert batched.config == single.config
    assert (batched.status, batched.message) == (single.status, single.message)
    assert len(batched.epochs) == len(single.epochs)
    for b, s in zip(batched.epochs, single.epochs, strict=True):
        assert b.keys() == s.keys()
        for key in b.keys() - {"seconds"}:
            assert b[key] == pytest.approx(s[key], rel=rtol), key
    for key in ("test_loss", "test_accuracy"):
        b, s = getattr(batched, key), getattr(single, key)
        assert (math.isnan(b) and math.isnan(s)) or b == pytest.approx(s, rel=rtol), key


def check_group_against_single(group, data, rtol=RTOL):
    results = train_group(group, data)
    assert [r.config for r in results] == group
    for config, result in zip(group, results, strict=True):
        assert_same(result, run_config(config, data), rtol)
    return results


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_every_optimizer_matches_the_single_engine(optimizer, digits):
    extra = dict(momentum=0.8, weight_decay=1e-3) if optimizer == "momentum" else {}
    results = check_group_against_single(configs(optimizer=optimizer, **extra), digits)
    assert all(r.status == "ok" for r in results)
    assert all(r.train_seconds > 0 for r in results)


def test_per_model_weight_decay_and_momentum(digits):
    settings = [(0.0, 0.9), (1e-3, 0.5), (1e-2, 0.0)]
    group = [
        c.replace(weight_decay=wd, momentum=mu)
        for c, (wd, mu) in zip(configs(optimizer="momentum"), settings, strict=True)
    ]
    check_group_against_single(group, digits)
    decays = (0, 0.1, 0)
    adamw = [
        c.replace(weight_decay=d) for c, d in zip(configs(optimizer="adamw"), decays, strict=True)
    ]
    check_group_against_single(adamw, digits)


def test_batch_norm_matches(digits):
    check_group_against_single(configs(batch_norm=True), digits)
    check_group_against_single(configs(batch_norm=True, optimizer="momentum"), digits)


def test_dropout_masks_are_the_single_engines(digits):
    """Each model draws its masks from its own "dropout" stream with the single engine's
    calls, so even with dropout the numbers agree."""
    check_group_against_single(configs(dropout=0.3, hidden=(32, 32), residual=True), digits)


@pytest.mark.parametrize(
    "activation",
    ["linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu", "elu", "gelu", "silu",
     "softsign", "softplus"],
)  # fmt: skip
def test_every_activation(activation, digits):
    group = [c.replace(epochs=1, hidden=(24, 24), residual=True) for c in configs()[:2]]
    check_group_against_single([c.replace(activation=activation) for c in group], digits)


def test_residual_rules_and_data_dependent_inits_inside_a_group(digits):
    group = configs(hidden=(16, 16, 16), residual=True, epochs=1)
    group[0] = group[0].replace(residual_init="zero")
    group[1] = group[1].replace(residual_init="fixup")
    group[2] = group[2].replace(init="lsuv")
    check_group_against_single(group, digits)


def test_linear_classifier_and_deep_narrow_nets(digits):
    check_group_against_single(configs(hidden=()), digits)
    check_group_against_single(configs(hidden=(8, 8, 8, 8), epochs=1), digits)


def test_a_diverging_model_is_frozen_and_the_others_go_on(digits):
    group = configs()
    bad = group[1].replace(lr=1e8, init="random_normal(stddev=5.0)")
    group = [group[0], bad, group[2]]
    outcome = train_group_states(group, digits)
    results = outcome.results
    assert results[1].status == "diverged"
    assert results[1].message.startswith("loss became non-finite at epoch 1, step ")
    for config, result in zip(group, results, strict=True):
        assert_same(result, run_config(config, digits))
    # the frozen state is the one the model had when its loss became non-finite
    assert all(
        torch.isfinite(v).all() or v.dtype != torch.float32 for v in outcome.states[0].values()
    )


def test_chunking_does_not_change_the_numbers(digits):
    group = configs(optimizer="momentum") + configs(optimizer="momentum", seed=7)[:1]
    whole = train_group(group, digits)
    for chunk_size in (1, 3):
        for a, b in zip(whole, train_group(group, digits, chunk_size=chunk_size), strict=True):
            assert_same(a, b, rtol=1e-5)


def test_zero_init_stays_symmetric_inside_the_batch(digits):
    group = [c.replace(activation="tanh") for c in configs()]
    group[0] = group[0].replace(init="zeros", output_init="zeros")
    outcome = train_group_states(group, digits)
    zero = outcome.states[0]
    for k in range(2):
        w = zero[f"blocks.{k}.linear.weight"]
        assert torch.equal(w, w[:1].expand_as(w))
    assert outcome.results[0].test_accuracy < 0.2
    other = outcome.states[1]["blocks.0.linear.weight"]  # its neighbours are not symmetric
    assert not torch.equal(other, other[:1].expand_as(other))


def test_on_epoch_sees_every_record_in_order(digits):
    seen = []
    group = configs()
    results = train_group(group, digits, on_epoch=lambda c, r: seen.append((c.seed, r["epoch"])))
    assert seen == [(c.seed, e) for e in (1, 2) for c in group]
    assert [r["epoch"] for r in results[0].epochs] == [1, 2]


def test_the_global_random_state_is_left_alone(digits):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    train_group([c.replace(epochs=1, dropout=0.2) for c in configs()], digits)
    assert torch.equal(state, torch.get_rng_state())


def test_grouping_sets_aside_cnns_and_splits_shapes():
    mlp = RunConfig(**BASE)
    cnn = mlp.replace(model="cnn")
    wide = mlp.replace(hidden=(64,))
    assert group_key(cnn) is None
    assert group_key(mlp) == group_key(mlp.replace(lr=0.5, seed=3, init="zeros", momentum=0.5))
    assert group_key(mlp) == group_key(mlp.replace(activation="ReLU", dataset="Digits"))
    for change in (dict(hidden=(64,)), dict(batch_size=16), dict(optimizer="adam"),
                   dict(epochs=3), dict(batch_norm=True), dict(track="off")):  # fmt: skip
        assert group_key(mlp.replace(**change)) != group_key(mlp)
    a, b = mlp.replace(seed=1), mlp.replace(seed=2)
    groups = group_configs([a, cnn, wide, b, cnn])
    assert groups == [[a, b], [cnn], [wide], [cnn]]


def test_train_group_refuses_what_it_cannot_batch(digits):
    from initlab.errors import InitlabError

    mlp = RunConfig(**BASE)
    with pytest.raises(InitlabError, match="cannot be trained by the batched"):
        train_group([mlp.replace(model="cnn")], digits)
    with pytest.raises(InitlabError, match="cannot train together"):
        train_group([mlp, mlp.replace(hidden=(8,))], digits)
    with pytest.raises(InitlabError, match="at least one"):
        train_group([], digits)


def test_an_error_inside_a_chunk_fails_its_runs_like_the_single_engine(digits):
    """Batch norm refuses a last batch of one example (1077 = 4 * 269 + 1), in both engines."""
    group = [c.replace(batch_norm=True, batch_size=4, epochs=1) for c in configs()[:2]]
    results = train_group(group, digits)
    for config, result in zip(group, results, strict=True):
        single = run_config(config, digits)
        assert result.status == single.status == "failed"
        assert result.message == single.message


def test_every_run_setting_is_classified_and_unknown_ones_go_to_the_single_engine(monkeypatch):
    from dataclasses import fields

    from initlab.train.batched import grouping

    names = {f.name for f in fields(RunConfig)}
    assert names == set(grouping.PER_MODEL) | set(grouping.SHARED)  # classify new settings
    monkeypatch.setitem(grouping._DEFAULTS, "label_smoothing", 0.0)
    config = RunConfig(**BASE)
    object.__setattr__(config, "label_smoothing", 0.0)
    assert group_key(config) is not None
    object.__setattr__(config, "label_smoothing", 0.1)
    assert group_key(config) is None
