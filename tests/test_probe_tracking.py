"""Per-layer tracking during training: rows at step 0 and after each epoch, training unchanged."""

import pytest
import torch

from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.probe import METRICS, Tracker
from initlab.probe.tracking import PROBE_SIZE
from initlab.train import train_model
from initlab.train.run import build_initialized_model, load_data, run_config

CONFIG = RunConfig(
    dataset="digits", hidden=(16, 16), batch_norm=True, dropout=0.2, epochs=2, batch_size=64
)


@pytest.fixture(scope="module")
def data():
    return load_data(CONFIG)


def train(data, track):
    model = build_initialized_model(CONFIG, data.input_shape, data.num_classes)
    result = train_model(model, data, epochs=2, batch_size=64, seed=0, track=track)
    return model, result


def moments(rows):
    return sorted({(r["epoch"], r["step"]) for r in rows})


def test_epoch_tracking_records_step_zero_and_every_epoch(data):
    _, result = train(data, "epoch")
    steps = -(-data.num_train // 64)
    assert moments(result.layer_stats) == [(0, 0), (1, steps), (2, 2 * steps)]
    row = result.layer_stats[0]
    assert set(row) == {"epoch", "step", "layer", "metric", "value"}
    assert {r["metric"] for r in result.layer_stats} == set(METRICS)
    assert {r["layer"] for r in result.layer_stats} == {
        "blocks.0.linear",
        "blocks.1.linear",
        "output",
    }
    per_moment = len(result.layer_stats) // 3
    assert per_moment == 3 * len(METRICS)


def test_tracking_does_not_change_the_training(data):
    """BatchNorm running stats, dropout's RNG stream and the weights all come out identical."""
    plain_model, plain = train(data, "off")
    tracked_model, tracked = train(data, 5)
    assert plain.layer_stats == [] and tracked.layer_stats
    for key, value in plain_model.state_dict().items():
        assert torch.equal(value, tracked_model.state_dict()[key]), key
    assert plain.test_accuracy == tracked.test_accuracy
    assert [e["train_loss"] for e in plain.epochs] == [e["train_loss"] for e in tracked.epochs]


def test_step_tracking_every_n_steps(data):
    _, result = train(data, 7)
    steps = {s for _, s in moments(result.layer_stats)}
    assert 0 in steps and steps - {0} and all(s % 7 == 0 for s in steps)


def test_a_tracker_object_and_its_fixed_probe_batch(data):
    from initlab.data.dataset import first_look

    tracker = Tracker.for_data("epoch", data)
    assert torch.equal(tracker.inputs, first_look(data, PROBE_SIZE)[0])
    _, result = train(data, tracker)
    assert result.layer_stats == tracker.rows


def test_run_config_passes_its_track_setting(data):
    off = run_config(CONFIG.replace(track="off", epochs=1), data)
    on = run_config(CONFIG.replace(track="epoch", epochs=1), data)
    assert off.layer_stats == [] and moments(on.layer_stats)[0] == (0, 0)
    assert len(moments(on.layer_stats)) == 2


@pytest.mark.parametrize("bad", ["weekly", 0, -3, True])
def test_bad_track_values_are_refused(data, bad):
    with pytest.raises(InitlabError, match="track"):
        train(data, bad)
