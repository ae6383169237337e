"""``initlab.trials``' keywords and ``initlab.recommend``'s note on frozen layers.

The trials took ``epochs``, ``data_seed`` and ``track`` as compare settings and overwrote
them (the budget's schedule, the seed design, no tracking) without a word; ``seeds=`` and
``inits=`` were pointed at ``seed`` (the probe batch's) and ``init`` (the starting scheme)
instead of ``trials=`` and ``candidates=``; and ``recommend`` planned re-draws of frozen
(pretrained) layers with no note, where ``compare`` notes exactly that."""

import warnings

import pytest
import torch
from torch import nn

import initlab
from initlab.config import RunConfig
from initlab.doctor import trials as trial_module
from initlab.errors import InitlabError
from initlab.sweep.values import check_setting


def small_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[RunConfig, int]]:
    """Every config the trials train (the timing trial's included), with the number of
    training examples it was given."""
    calls: list[tuple[RunConfig, int]] = []
    real = trial_module.train_configs

    def counting(configs, data, on_epoch=None):
        calls.extend((c, len(data.y_train)) for c in configs)
        return real(configs, data, on_epoch=on_epoch)

    monkeypatch.setattr(trial_module, "train_configs", counting)
    return calls


def refused(**keywords) -> str:
    """The one-line message ``initlab.trials`` refuses ``keywords`` with."""
    given = dict(model=small_net, data="digits", trials=2, budget="8s", device="cpu")
    with pytest.raises(InitlabError) as caught:
        initlab.trials(**{**given, **keywords})
    message = str(caught.value)
    assert "\n" not in message
    return message


OVERRIDDEN = [
    (dict(epochs=2), r"epochs=2: the budget sets how long every trial trains \(budget='8s'"),
    (dict(data_seed=7), r"data_seed=7: the trials cross 2 init seed\(s\) with 2 data-order"),
    (dict(track=1), r"track=1: the trials record no per-layer statistics \(track='off'\)"),
]


@pytest.mark.parametrize(("keywords", "message"), OVERRIDDEN, ids=["epochs", "data_seed", "track"])
def test_a_setting_the_trials_override_is_refused_before_anything_trains(
    keywords, message, trained, tmp_path
):
    """They were accepted, then overwritten: epochs=2 trained 107 epochs."""
    with pytest.raises(InitlabError, match=message) as caught:
        initlab.trials(
            model=small_net, data="digits", trials=2, budget="8s", out=tmp_path / "o", **keywords
        )
    assert "\n" not in str(caught.value) and "leave" in str(caught.value)
    assert not trained and not (tmp_path / "o").exists()


def test_every_overridden_setting_is_named_in_one_line(trained):
    message = refused(epochs=2, limit_train=100, data_seed=7)
    assert message.startswith("epochs=2: ") and "; also data_seed=7: " in message
    assert "give a longer or shorter budget" in message and "trials=N sets how many" in message
    assert "limit_train" not in message and not trained


def test_limit_train_and_track_off_are_honoured(trained):
    """``limit_train`` keeps the first examples (the data is loaded with it), which the runs
    now record; ``track='off'`` is what the trials do anyway."""
    with pytest.warns(initlab.InitlabNote):
        evidence = initlab.trials(
            model=small_net, data="digits", trials=1, budget=4, device="cpu",
            candidates="he_normal", batch_size=16, limit_train=100, track="off",
        )  # fmt: skip
    assert trained and all(n <= 100 for _, n in trained)
    assert all(0 < r.config.limit_train <= 100 for r in evidence.results)
    assert all(r.config.track == "off" for r in evidence.results)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (dict(seeds=3), r"unknown setting 'seeds'; did you mean 'trials'\? \(trials=3 trains"),
        (dict(n_seeds=3), r"did you mean 'trials'\?.*seed is the probe batch's seed"),
        (dict(inits=["he_normal"]), r"did you mean 'candidates'\? \(candidates=\['he_normal'\]"),
        (dict(initializers="he_normal,lsuv"), r"candidates=\['he_normal', 'lsuv'\] lists"),
        (dict(trails=3), r"unknown setting 'trails'; did you mean 'trials'\?"),
        (dict(budjet=3), r"did you mean 'budget'\?"),
        (dict(learning_rate=0.1), r"did you mean 'lr'\?"),
        (dict(n_epochs=3), r"unknown setting 'n_epochs' \(epochs\?\): the budget sets"),
        (dict(init=["he_normal", "lsuv"]), r"init takes one scheme.*candidates=\['he_normal'"),
        (dict(init="he_normal,lsuv"), r"to compare several, list them as candidates=\["),
        (dict(init=["lsuv"]), r"init takes one scheme as a string, got \['lsuv'\]: init='lsuv'"),
    ],
    ids=lambda v: str(v),
)
def test_a_misremembered_keyword_points_at_the_trials_own(keywords, message, trained):
    with pytest.raises(InitlabError, match=message):
        initlab.trials(model=small_net, data="digits", trials=2, budget="8s", **keywords)
    assert not trained


def test_compare_keeps_its_own_suggestions():
    """The pointers are the trials': compare's seeds= is its own, a setting 'seeds' is
    still told 'seed'."""
    with pytest.raises(InitlabError, match="did you mean 'seed'"):
        check_setting("seeds", 3)


def test_a_setting_a_factory_does_not_use_is_refused_as_compare_refuses_it(trained):
    assert "does not use it" in refused(hidden=(5,))
    assert not trained


def frozen_net() -> nn.Module:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    model[0].requires_grad_(False)  # a "pretrained" first layer
    return model


def test_recommend_notes_the_frozen_layers_its_plan_re_draws():
    model, x = frozen_net(), torch.randn(32, 8)
    with pytest.warns(initlab.InitlabNote) as notes:
        plan = initlab.recommend(model, x)
    (note,) = [str(n.message) for n in notes if "frozen" in str(n.message)]
    assert note.startswith("0.weight, 0.bias of Sequential are frozen (requires_grad=False): ")
    assert "the plan re-draws them and they never train" in note
    assert note.endswith("initialize(model, {**plan, '0': 'default'})")
    assert "frozen" in plan.to_frame().set_index("layer").loc["0", "reason"]
    assert "frozen" not in plan.to_frame().set_index("layer").loc["2", "reason"]
    kept = model[0].weight.clone()
    initlab.initialize(model, {**plan, "0": "default"})  # the note's fix keeps the layer
    assert torch.equal(model[0].weight, kept)


def test_recommend_says_nothing_of_a_model_with_nothing_frozen_or_in_the_doctor():
    from initlab.doctor.plan import plan_for

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initlab.recommend(nn.Sequential(nn.Linear(8, 3)), torch.randn(4, 8))
        plan = plan_for(frozen_net(), torch.randn(4, 8))  # the doctor's own plans
    assert not [w for w in caught if "frozen" in str(w.message)]
    assert not any("frozen" in e.reason for e in plan.entries)


def test_a_model_that_is_one_frozen_layer_is_told_to_stay_as_it_is():
    model = nn.Linear(8, 3).requires_grad_(False)
    with pytest.warns(initlab.InitlabNote, match="weight, bias of Linear are frozen") as notes:
        initlab.recommend(model, torch.randn(4, 8))
    assert str(notes[0].message).endswith("to keep them, leave the model as it is")
