"""Padded sequence targets: -100 (``F.cross_entropy``'s ``ignore_index``) counts for nothing.

A padded position adds no loss, no token and no hit, in training and in evaluation, for a
stack of models and for one; the data checks let -100 through in sequence targets only.
Tolerances: the engine and a plain loop differ in summation order only (float32), over
one epoch of ``STEPS`` SGD steps: ``50 eps sqrt(n)`` as in tests/test_engine.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.data import load
from initlab.data.tasks import IGNORE_INDEX
from initlab.errors import InitlabError
from initlab.task_names import SEQUENCE
from initlab.train.engine import train_stack
from initlab.train.schedule import Member, StackSettings
from initlab.train.seeding import make_generator
from initlab.train.tasks import Meter, losses

VOCAB, T, N = 7, 6, 480
EPS = torch.finfo(torch.float32).eps


def padded(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[n, T]`` and their copy as targets, each row padded (-100) after a random
    length of 1..T real tokens."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (n, T), generator=gen)
    length = torch.randint(1, T + 1, (n, 1), generator=gen)
    y = torch.where(torch.arange(T) < length, x, IGNORE_INDEX)
    return x, y


class Copier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.out = nn.Embedding(VOCAB, 16), nn.Linear(16, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(x)))


def test_losses_are_each_models_mean_over_its_real_tokens():
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(3, 4, T, VOCAB, generator=gen, requires_grad=True)
    y = torch.stack([padded(4, seed)[1] for seed in range(3)])
    y[2] = IGNORE_INDEX  # a batch of padding alone
    got = losses(SEQUENCE, out, y)
    for m in range(2):
        want = F.cross_entropy(out[m].reshape(-1, VOCAB), y[m].reshape(-1))
        torch.testing.assert_close(got[m], want)
    assert got[2].item() == 0.0  # not NaN: nothing to learn from, no divergence
    got.sum().backward()
    assert torch.isfinite(out.grad).all() and not out.grad[2].any()
    assert not out.grad[0][y[0] == IGNORE_INDEX].any()  # padding gets no gradient
    one = losses(SEQUENCE, out[:1], y[:1])
    torch.testing.assert_close(one, got[:1])


def test_the_meter_counts_loss_and_accuracy_over_real_tokens_only():
    gen = torch.Generator().manual_seed(2)
    meter, real, hits, total = Meter(SEQUENCE, 2, torch.device("cpu")), 0, 0, 0.0
    for seed in range(3):
        out = torch.randn(2, 5, T, VOCAB, generator=gen)
        y = torch.stack([padded(5, 10 * seed + m)[1] for m in range(2)])
        meter.add(out, y, loss_mean=losses(SEQUENCE, out, y))
        keep = y[0] != IGNORE_INDEX
        real += int(keep.sum())
        hits += int((out[0].argmax(-1) == y[0])[keep].sum())
        total += F.cross_entropy(out[0][keep], y[0][keep], reduction="sum").item()
    loss, accuracy = meter.result()
    assert accuracy[0] == hits / real  # exact: whole numbers divided once, the same way
    assert loss[0] == pytest.approx(total / real, rel=50 * EPS * math.sqrt(real))
    empty = Meter(SEQUENCE, 1, torch.device("cpu"))
    empty.add(out[:1], torch.full((1, 5, T), IGNORE_INDEX))
    assert all(math.isnan(v) for v in (*empty.result()[0], *empty.result()[1]))  # not 0


@pytest.mark.parametrize("strategy", ["stacked", "looped"])
def test_training_on_padded_targets_matches_a_plain_loop_with_ignore_index(strategy):
    x, y = padded()
    a, b = N * 3 // 5, N * 4 // 5
    data = dict(x_train=x[:a], y_train=y[:a], x_val=x[a:b], y_val=y[a:b])
    data = type("Data", (), {**data, "x_test": x[b:], "y_test": y[b:], "task": SEQUENCE})
    torch.manual_seed(0)
    models = [Copier(), Copier()]
    plain = [Copier() for _ in models]
    for p, m in zip(plain, models, strict=True):
        p.load_state_dict(m.state_dict())
    shared = StackSettings(
        task=SEQUENCE, optimizer="sgd", epochs=1, batch_size=32, strategy=strategy
    )
    members = [Member(seed=s, lr=0.5) for s in range(2)]
    results = train_stack(models, data, shared, members, write_back=True)
    for member, model, result in zip(members, plain, results, strict=True):
        opt = torch.optim.SGD(model.parameters(), lr=member.lr)
        order = torch.randperm(a, generator=make_generator(member.seed, "data"))
        for idx in order.split(32):
            out = model(data.x_train[idx])
            loss = F.cross_entropy(out.reshape(-1, VOCAB), data.y_train[idx].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        tol = 50 * EPS * math.sqrt(a)
        for trained, want in zip(models[member.seed].parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(trained, want, rtol=tol, atol=tol)
        with torch.no_grad():
            out, keep = model(data.x_val), data.y_val != IGNORE_INDEX
            accuracy = (out.argmax(-1) == data.y_val)[keep].float().mean().item()
            val_loss = F.cross_entropy(out.reshape(-1, VOCAB), data.y_val.reshape(-1)).item()
        record = result.epochs[0]
        assert abs(record["val_accuracy"] - accuracy) <= 2 / int(keep.sum())  # one argmax tie
        assert record["val_loss"] == pytest.approx(val_loss, rel=tol, abs=tol)


def save(path: Path, x: torch.Tensor, y: torch.Tensor) -> str:
    np.savez(path, x_train=x[:400].numpy(), y_train=y[:400].numpy(),
             x_test=x[400:].numpy(), y_test=y[400:].numpy())  # fmt: skip
    return str(path)


def test_data_checks_let_padding_through_in_sequence_targets_only(tmp_path: Path):
    x, y = padded()
    data = load(save(tmp_path / "padded.npz", x, y))
    assert data.task == SEQUENCE and data.num_classes == VOCAB
    assert bool((data.y_train == IGNORE_INDEX).any())
    bad = y.clone()
    bad[0, 0] = -3
    with pytest.raises(InitlabError, match=r"1 negative token ids \(min -3\).*-100 for padding"):
        load(save(tmp_path / "bad.npz", x, bad))
    holes = x.clone()
    holes[0, -1] = IGNORE_INDEX  # inputs are ids: padding there needs a real pad id
    with pytest.raises(InitlabError, match="x_train has 1 negative token ids"):
        load(save(tmp_path / "holes.npz", holes, y), task="sequence")
    with pytest.raises(InitlabError, match="y_train has no target tokens"):
        load(save(tmp_path / "empty.npz", x, torch.full_like(y, IGNORE_INDEX)))
    untested = y.clone()
    untested[400:] = IGNORE_INDEX  # a test split of padding alone would score a loss of 0
    with pytest.raises(InitlabError, match="y_test has no target tokens"):
        load(save(tmp_path / "untested.npz", x, untested))
    labels = torch.arange(N) % 3
    labels[0] = IGNORE_INDEX
    with pytest.raises(InitlabError, match="negative class labels"):
        load(save(tmp_path / "labels.npz", x.float(), labels))


def test_diagnose_takes_padded_targets():
    """Its label check refused -100 ('labels must lie in [0, 7) … got -100..6')."""
    import initlab

    x, y = padded(32)
    torch.manual_seed(0)
    rows = initlab.diagnose(Copier(), x, y).layers["layer"].tolist()
    assert rows == ["embed", "out"]  # the token table, then the one Linear
    with pytest.raises(InitlabError, match="every target is -100"):
        initlab.diagnose(Copier(), x, torch.full_like(y, IGNORE_INDEX))
