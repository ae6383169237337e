"""``initlab.diagnose`` (and ``recommend``, ``initialize(data=...)``) take a batch by the rules
of ``--data`` (:mod:`initlab.data.tasks`): integer labels of any dtype, uint8 inputs, and each
mistake — string labels, one-hot rows, negative labels, NaN targets — as one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.arguments import as_inputs
from initlab.errors import InitlabError

BATCH, FEATURES, CLASSES = 32, 64, 10


def model() -> nn.Module:
    """A 10-class MLP on digits-sized inputs, the same weights every call."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, FEATURES)).astype(np.float32)
    return x, np.arange(BATCH) % CLASSES


def one_line(match: str, *args, **kwargs) -> str:
    """``initlab.diagnose(*args, **kwargs)`` fails with one InitlabError line matching."""
    with pytest.raises(InitlabError, match=match) as caught:
        initlab.diagnose(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and caught.value.__cause__ is None
    return message


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8])
def test_integer_labels_of_any_dtype_are_class_labels(batch, dtype):
    """int32 labels raised 'expected target dtype to be Long or Byte, but got Int'."""
    x, y = batch
    reference = initlab.diagnose(model(), x, y.astype(np.int64))
    got = initlab.diagnose(model(), x, y.astype(dtype))
    assert got.layers["weight_grad_norm"].tolist() == reference.layers["weight_grad_norm"].tolist()
    assert got.names == reference.names


@pytest.mark.parametrize("labels", [np.array, list])
def test_string_labels_are_one_line_saying_how_to_map_them(batch, labels):
    """They raised a raw TypeError (array) or ValueError 'too many dimensions' (list)."""
    x, y = batch
    names = labels([f"class {k}" for k in y])
    message = one_line("not a numeric array", model(), x, names)
    assert message.startswith("diagnose: targets") and "numpy.unique" in message


def test_one_hot_targets_are_refused_with_the_argmax_hint(batch):
    """They were fitted silently as 10 regression outputs (an MSE loss), as the loader refuses."""
    x, y = batch
    one_hot = np.eye(CLASSES, dtype=np.float32)[y]
    message = one_line(r"one-hot rows: pass class indices \(y.argmax\(1\)\)", model(), x, one_hot)
    assert message.startswith("diagnose: targets [32, 10]")
    mse = initlab.diagnose(model(), x, one_hot, loss=nn.functional.mse_loss)  # the caller's loss
    assert len(mse.layers) == 2


def test_uint8_inputs_become_floats_as_the_loader_makes_them(batch):
    """A uint8 batch raised 'mat1 and mat2 must have the same dtype (Byte and Float)'."""
    x, y = batch
    pixels = (np.abs(x) * 4).astype(np.uint8)
    assert as_inputs(model(), pixels).dtype == torch.float32
    reference = initlab.diagnose(model(), pixels.astype(np.float32), y)
    got = initlab.diagnose(model(), pixels, y)
    np.testing.assert_array_equal(got.layers["pre_msq"], reference.layers["pre_msq"])
    assert len(initlab.recommend(model(), pixels).entries) == 2
    net = model()
    initlab.initialize(net, "lsuv", data=pixels)
    assert torch.isfinite(net[0].weight).all()


def test_signed_integer_inputs_stay_token_ids():
    embed = nn.Sequential(nn.Embedding(20, 8), nn.Flatten(), nn.Linear(24, 3))
    ids = torch.randint(0, 20, (8, 3), dtype=torch.int32)
    assert as_inputs(embed, ids).dtype == torch.int64
    table = initlab.diagnose(embed, ids, torch.arange(8) % 3).layers
    assert list(table["type"]) == ["Embedding", "Linear"]  # the table is a layer too


def test_bad_targets_are_one_line_each(batch):
    x, y = batch
    negative = y.copy()
    negative[5] = -1
    one_line(r"diagnose: targets has 1 negative class labels \(min -1\)", model(), x, negative)
    nan = np.random.default_rng(1).standard_normal(BATCH).astype(np.float32)
    nan[3] = np.nan
    one_line(r"diagnose: targets has 1 NaN/inf value\(s\)", model(), x, nan)


def test_one_hot_looking_token_targets_of_a_sequence_batch_are_token_ids():
    """Integer [B, T] targets for integer [B, T] inputs are a sequence, as the loader reads
    them, even when each row holds a single 1."""
    net = nn.Sequential(nn.Embedding(4, 8), nn.Linear(8, 4))
    ids = torch.eye(4, dtype=torch.int64)[torch.arange(8) % 4]
    assert len(initlab.diagnose(net, ids, ids).layers) == 2  # the embedding and the head
    with pytest.raises(InitlabError, match="one-hot rows"):
        initlab.diagnose(net, ids.float(), ids)  # float inputs: no sequence, as in the loader


def test_a_forward_that_fails_only_in_training_mode_is_one_line():
    """A batch of one through BatchNorm passes the eval-mode input check, then failed in the
    probe's training-mode pass with a traceback (initlab diagnose --batch 1)."""
    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(InitlabError, match=r"in 'train' mode failed on inputs of shape \[1, 8\]"):
        initlab.diagnose(model, torch.randn(1, 8), torch.tensor([0]))
    initlab.diagnose(model, torch.randn(1, 8), torch.tensor([0]), mode="eval")  # fine there


def test_targets_for_a_loss_of_the_callers_are_passed_as_given():
    """±1 labels for a hinge loss were refused as 'negative class labels' once diagnose took
    the loader's label rules; the caller's loss reads them as they are."""
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    y = torch.tensor([-1, 1] * 16)

    def hinge(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.clamp(1 - out.squeeze(1) * target, min=0).mean()

    found = initlab.diagnose(model, torch.randn(32, 8), y, loss=hinge).layers
    assert found["pre_grad_std"].notna().all()
    with pytest.raises(InitlabError, match="negative class labels"):
        initlab.diagnose(model, torch.randn(32, 8), y)  # the default loss: class labels


def test_token_ids_past_the_embedding_and_a_loss_by_name_are_told_as_compare_tells_them():
    """diagnose said 'cannot run on inputs of shape [4, 5] (IndexError: index out of range in
    self)' where compare names the id and the table; loss='mse' was "'str' object is not
    callable"."""
    model = nn.Sequential(nn.Embedding(10, 8), nn.Flatten(), nn.Linear(40, 3))
    ids = torch.arange(20).reshape(4, 5)
    with pytest.raises(InitlabError, match=r"inputs has token id 19 .* 0 \(Embedding\) has 10"):
        initlab.diagnose(model, ids)
    mlp = nn.Sequential(nn.Linear(8, 3))
    x, y = torch.randn(4, 8), torch.randn(4, 3)
    with pytest.raises(InitlabError, match=r"loss takes a function loss\(output, targets\)"):
        initlab.diagnose(mlp, x, y, loss="mse")
    with pytest.raises(InitlabError, match=r"failed in 0 \(Linear\) on a batch \[4, 7\]"):
        initlab.diagnose(mlp, torch.randn(4, 7))
