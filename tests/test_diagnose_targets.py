"""``initlab.diagnose``'s targets for a model of per-position logits ``[B, T, V]`` (a GPT),
read by the rules of ``--data`` (:mod:`initlab.data.tasks`): token ids ``[B, T]`` of any
integer dtype or as whole-number floats, -100 padding; their shape checked before their
values; one-hot token rows, flat targets and ``[B, V, T]`` logits each one line saying
what to pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import initlab
from initlab.errors import InitlabError
from test_diagnose_inputs import one_line  # the one-line-error check diagnose's inputs use

BATCH, LENGTH, VOCAB = 8, 6, 16


class TinyLM(nn.Module):
    """Token ids ``[B, T]`` → logits ``[B, T, V]`` (``[B, V, T]`` when ``transposed``)."""

    def __init__(self, outputs: int = VOCAB, transposed: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.transposed = nn.Embedding(VOCAB, 8), transposed
        self.hidden, self.head = nn.Linear(8, 8), nn.Linear(8, outputs)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(torch.tanh(self.hidden(self.embed(x))))
        return logits.transpose(1, 2) if self.transposed else logits


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``x`` and next-token targets ``y`` ``[B, T]``, the last two padding."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, (BATCH, LENGTH + 1))
    x, y = tokens[:, :-1].copy(), tokens[:, 1:].copy()
    y[:, -2:] = -100
    return x, y


def gradients(diagnosis: initlab.probe.Diagnosis) -> list[float]:
    return diagnosis.layers["weight_grad_norm"].tolist()


def test_one_hot_token_rows_are_refused_naming_the_token_ids(batch):
    """They were read as regression targets (MSE against the one-hot rows): healthy."""
    x, y = batch
    one_hot = np.eye(VOCAB)[np.where(y < 0, 0, y)]
    message = one_line("one-hot token rows", TinyLM(), x, one_hot)
    assert f"[{BATCH}, {LENGTH}, {VOCAB}]" in message
    assert f"token ids [N, T] = [{BATCH}, {LENGTH}]" in message and "y.argmax(-1)" in message
    mse = initlab.diagnose(TinyLM(), x, one_hot, loss=nn.functional.mse_loss)
    assert len(mse.layers) == 3  # a loss of the caller's takes them as given


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_number_float_token_targets_are_token_ids_as_compare_reads_them(batch, dtype):
    """They failed with 'regression outputs [8, 6, 16] do not match targets [8, 6]'."""
    x, y = batch
    reference = initlab.diagnose(TinyLM(), x, y)
    got = initlab.diagnose(TinyLM(), x, y.astype(dtype))
    assert gradients(got) == pytest.approx(gradients(reference), rel=1e-6, abs=1e-12)  # same path
    assert got.names == reference.names
    other = initlab.diagnose(TinyLM(), x, np.where(y < 0, y, (y + 1) % VOCAB).astype(dtype))
    assert gradients(other) != gradients(reference)  # the comparison tells targets apart


def test_whole_number_floats_stay_regression_targets_for_one_output_per_position(batch):
    """Outputs ``[B, T, 1]`` take floats ``[B, T]`` as regression targets, whole or not."""
    x, y = batch
    targets = np.abs(y).astype(np.float32)
    got = initlab.diagnose(TinyLM(outputs=1), x, targets)
    mse = initlab.diagnose(TinyLM(outputs=1), x, targets, loss=_mse_per_position)
    assert gradients(got) == pytest.approx(gradients(mse))


def _mse_per_position(out: Tensor, y: Tensor) -> Tensor:
    return nn.functional.mse_loss(out.squeeze(-1), y)


def test_whole_number_floats_of_one_output_per_example_stay_regression_targets():
    """Outputs ``[B]`` (one value per example, squeezed) keep whole floats as numbers."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    x, y = torch.randn(BATCH, 4), torch.arange(BATCH, dtype=torch.float32)
    got = initlab.diagnose(net, x, y)
    mse = initlab.diagnose(net, x, y, loss=nn.functional.mse_loss)
    assert gradients(got) == pytest.approx(gradients(mse), rel=1e-6, abs=1e-12)


def test_non_whole_float_targets_for_logits_name_the_token_ids(batch):
    x, y = batch
    message = one_line("not all whole numbers", TinyLM(), x, y + 0.5)
    assert f"token ids [{BATCH}, {LENGTH}]" in message and "regression" in message


@pytest.mark.parametrize("padded", [True, False])
def test_flat_targets_are_told_their_shape_before_their_values(batch, padded):
    """Padded flat targets said 'targets has 16 negative class labels (min -100)';
    unpadded ones 'the targets have 48 examples and the inputs 8'."""
    x, y = batch
    y = y if padded else np.abs(y)
    message = one_line("do not fit outputs", TinyLM(), x, y.reshape(-1))
    assert f"targets [{BATCH * LENGTH}]" in message and f"[{BATCH}, {LENGTH}, {VOCAB}]" in message
    assert f"pass y.reshape({BATCH}, {LENGTH})" in message and "negative" not in message


def test_one_label_per_sequence_for_per_position_logits_says_to_pool(batch):
    x, y = batch
    message = one_line("do not fit outputs", TinyLM(), x, y[:, 0])
    assert "pool over T" in message and "reshape" not in message


def test_logits_with_the_vocabulary_before_the_positions_are_told_to_transpose(batch):
    """They said 'labels must lie in [0, 6) for the model's 6 outputs; got 0..15'."""
    x, y = batch
    message = one_line("vocabulary", TinyLM(transposed=True), x, y)
    assert f"[{BATCH}, {VOCAB}, {LENGTH}]" in message and "transpose(1, 2)" in message


def test_one_hot_rows_for_per_position_logits_are_one_hot_not_transposed(batch):
    """Targets ``[B, V]`` for outputs ``[B, T, V]`` have the shape of transposed logits'
    token ids; one-hot, they are told as one-hot rows, as for any model."""
    x, y = batch
    message = one_line("one-hot rows", TinyLM(), x, np.eye(VOCAB)[np.abs(y[:, 0])])
    assert "transpose" not in message


def test_compare_names_logits_with_the_vocabulary_first_per_example():
    """It said 'got outputs [2, 96, 32] for targets [180, 32]': a 2-example probe against
    the whole training set, and no fix."""
    from initlab.train.output_checks import check_output

    y = torch.randint(0, 96, (180, 32), generator=torch.Generator().manual_seed(0))
    with pytest.raises(InitlabError, match=r"per example, got outputs \[96, 32\] for targets "
                       r"\[32\]: the vocabulary axis is not last.*transpose\(1, 2\)"):  # fmt: skip
        check_output("sequence", torch.zeros(2, 96, 32), y, 96)
