"""Arguments of ``initlab.compare`` and ``initlab.diagnose`` that were refused with a
misleading line, or accepted and failed late: an Initializer or a plan among ``inits``, a
``progress`` that takes one argument, ``uint8`` token ids, and integer targets for a model
with one output. Each is one :class:`InitlabError` line saying what was passed and what to
pass instead, raised before any training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.errors import InitlabError, surface

VOCAB, LENGTH, BATCH = 20, 5, 16


def mlp(outputs: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, outputs))


def data() -> tuple[torch.Tensor, ...]:
    """64 examples of 4 features, 2 classes: train and test alike."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    return x, y, x, y


def compare(inits: object, **kwargs: object):
    return initlab.compare(inits, 1, model=mlp, data=data(), epochs=1, device="cpu", **kwargs)


def one_line(call, match: str) -> str:
    """``call()`` fails with one InitlabError line matching ``match`` (no chained cause)."""
    with pytest.raises(InitlabError, match=match) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and caught.value.__cause__ is None
    return message


def token_lm() -> nn.Module:
    """Token ids [B, T] -> next-token logits [B, T, V]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(VOCAB, 8), nn.Linear(8, VOCAB))


def token_classifier() -> nn.Module:
    """Token ids [B, T] -> class logits [B, 3]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(VOCAB, 8), nn.Flatten(), nn.Linear(8 * LENGTH, 3))


def token_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(1))


# 1. inits: an Initializer, a Plan, a dict


def test_an_initializer_object_among_inits_is_named_with_its_spec_string():
    """It read "got ['default', he_normal]": a valid name refused, as the repr is the spec."""
    he = initlab.initializers.get("he_normal")
    message = one_line(lambda: compare(["default", he]), "is an Initializer object")
    assert message == (
        "inits: he_normal is an Initializer object; pass its spec string 'he_normal', "
        "e.g. inits=['default', 'he_normal']"
    )
    gained = initlab.initializers.parse("orthogonal(gain=2.0)")
    message = one_line(lambda: compare(gained), "Initializer object")
    assert "pass its spec string 'orthogonal(gain=2.0)'" in message
    assert len(compare(["default", repr(he)]).runs) == 2  # the string it names trains


@pytest.mark.parametrize("kind", ["plan", "dict"])
def test_a_plan_among_inits_points_to_trials_without_its_repr(kind):
    plan = initlab.recommend(mlp(), data()[0])
    wrong = plan if kind == "plan" else dict(plan)
    for inits in (["default", wrong], wrong):
        message = one_line(lambda inits=inits: compare(inits), "initlab.trials")
        assert f"not a {type(wrong).__name__}:" in message
        assert "initlab.trials(model=..., data=...)" in message
        assert "he_normal'" not in message.split("e.g.")[0] and "PlanEntry" not in message


def test_another_object_among_inits_is_shown_short_on_one_line():
    message = one_line(lambda: compare(["default", mlp()]), r"got Sequential\(")
    assert "(Sequential)" in message and len(message) < 200


# 2. progress takes (config, epoch_record, result)


def test_a_progress_of_one_argument_is_refused_before_training(tmp_path):
    """It failed with a TypeError after the first run had trained, its results lost."""
    called = []
    message = one_line(
        lambda: compare(["default"], progress=lambda r: called.append(r), out=tmp_path / "o"),
        r"progress\(config, epoch_record, result\)",
    )
    assert "<lambda>(r)" in message and not called and not (tmp_path / "o").exists()
    one_line(lambda: compare(["default"], progress=3), "progress takes a function")


def test_progress_that_takes_three_arguments_still_runs():
    seen = []

    class Recorder:
        def __call__(self, config, record, result=None):
            seen.append(result is None)

    def keyword_result(config, record, *, result=None):
        pass  # takes only two positionally

    compare(["default"], progress=Recorder())
    assert seen and seen[-1] is False  # the epochs, then the finished run
    compare(["default"], progress=lambda *args: seen.append(len(args)))
    assert seen[-1] == 3
    one_line(lambda: compare(["default"], progress=keyword_result), "3 positional arguments")


# 3. uint8 token ids: as compare reads them


def test_uint8_ids_of_a_sequence_are_token_ids_as_compare_trains_them():
    """compare trains a token model on uint8 [N, T] ids with [N, T] targets (a sequence),
    where diagnose refused them as float32."""
    ids = token_ids()
    data = (ids.to(torch.uint8), ids, ids.to(torch.uint8), ids)
    trained = initlab.compare(
        ["default"], 1, model=token_lm, data=data, epochs=1, batch_size=8, device="cpu"
    )
    assert len(trained.runs) == 1
    reference = initlab.diagnose(token_lm(), ids, ids)
    for given in (ids.to(torch.uint8), ids.numpy().astype(np.uint8)):
        got = initlab.diagnose(token_lm(), given, ids)
        assert list(got.layers["type"]) == ["Embedding", "Linear"]
        np.testing.assert_array_equal(got.layers["pre_msq"], reference.layers["pre_msq"])


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_])
def test_unsigned_ids_read_as_features_name_the_dtype_passed(dtype):
    """The line said "but they are float32" for the uint8 ids the user passed."""
    ids = token_ids().numpy().astype(dtype)
    labels = np.arange(BATCH) % 3
    name = np.dtype(dtype).name
    for targets in (labels, None):
        message = one_line(
            lambda targets=targets: initlab.diagnose(token_classifier(), ids, targets),
            f"takes the inputs as token ids, but they are {name}",
        )
        assert message.startswith("diagnose: ") and "float32" not in message
        assert "x.astype('int64')" in message


# 4. integer targets for one output


def test_integer_labels_for_one_output_are_refused_not_healthy():
    """Cross-entropy over one class: loss 0, every gradient 0, read 'no findings: healthy'."""
    x, y, _, _ = data()
    message = one_line(lambda: initlab.diagnose(mlp(1), x, y), "nothing to learn")
    assert message == (
        "diagnose: the model has 1 output and the targets are integers (int64), read as class "
        "labels: a 1-output model with cross-entropy has nothing to learn (loss 0, every "
        "gradient 0); pass float targets for regression (e.g. y.float()) or a loss= of your "
        "own (e.g. loss=torch.nn.functional.mse_loss), or give the model one output per class"
    )
    with surface("cli"):
        cli = one_line(lambda: initlab.diagnose(mlp(1), x, y), "nothing to learn")
    assert "--task regression" in cli and "loss=" not in cli


def test_integer_counts_for_one_output_get_the_hint_and_float_targets_work():
    """Counts read 'labels must lie in [0, 1) for the model's 1 outputs', with no hint."""
    x, _, _, _ = data()
    counts = torch.randint(0, 9, (64,), generator=torch.Generator().manual_seed(2))
    one_line(lambda: initlab.diagnose(mlp(1), x, counts.numpy().astype(np.int32)), r"y\.float")
    regression = initlab.diagnose(mlp(1), x, counts.float())
    assert (regression.layers["weight_grad_norm"] > 0).all()
    mse = initlab.diagnose(mlp(1), x, counts, loss=lambda out, t: (out[:, 0] - t).pow(2).mean())
    assert (mse.layers["weight_grad_norm"] > 0).all()
    assert len(initlab.diagnose(mlp(2), x, counts % 2).layers) == 2  # two classes: as before


def test_initlabs_own_dataset_or_one_split_as_data_say_what_to_pass():
    from initlab.data import load

    digits = load("digits")
    with pytest.raises(InitlabError, match=r"pass its name \(data='digits'\) or its splits"):
        initlab.compare(["he_normal"], data=digits, seeds=1, epochs=1)
    with pytest.raises(InitlabError, match=r"an \(x, y\) pair is one split"):
        initlab.compare(["he_normal"], data=(digits.x_train, digits.y_train), seeds=1, epochs=1)
