"""nn.Embedding tables are rows of the probe: a lookup's output is its z and phi(z)."""

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.probe import Tracker, diagnose
from initlab.probe.hooks import collect

VOCAB, DIM, STEPS = 12, 8, 5


class Tagger(nn.Module):
    """Token and position embeddings summed, a hidden layer, a per-token readout."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Embedding(STEPS, DIM)
        self.fc = nn.Linear(DIM, 16)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1]))
        return self.head(torch.relu(self.fc(h)))


def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (16, STEPS), generator=gen)


def test_an_embedding_row_holds_its_lookup_table_and_gradient():
    torch.manual_seed(0)
    model, tokens = Tagger(), batch()
    layers = {t.name: t for t in collect(model, tokens, tokens)}
    assert list(layers) == ["tok", "pos", "fc", "head"]
    tok = layers["tok"]
    assert tok.activation == "linear" and torch.equal(tok.pre, model.tok(tokens).detach())
    assert torch.equal(tok.weight, model.tok.weight.detach().T)  # one row per output unit
    loss = nn.functional.cross_entropy(model(tokens).reshape(-1, VOCAB), tokens.reshape(-1))
    (direct,) = torch.autograd.grad(loss, model.tok.weight)
    torch.testing.assert_close(tok.weight_grad, direct, rtol=1e-4, atol=1e-7)
    assert tok.pre_grad is not None and tok.pre_grad.shape == (16, STEPS, DIM)
    table = diagnose(model, tokens, tokens).layers.set_index("layer")
    assert table.loc["tok", "type"] == "Embedding"
    assert (table.loc["tok", ["fan_in", "fan_out", "units"]] == [DIM, VOCAB, DIM]).all()
    n = VOCAB * DIM  # PyTorch's N(0, 1) table: its std within ~4 sigma of sampling noise
    assert table.loc["tok", "weight_std"] == pytest.approx(1.0, abs=4 / (2 * n) ** 0.5)


def test_a_constant_table_shows_as_duplicated_units_but_sets_no_depth_trend():
    model, tokens = Tagger(), batch()
    initlab.initialize(model, "he_normal", embedding_init="zeros", generator=torch.Generator())
    found = diagnose(model, tokens, tokens)
    assert found.layers.set_index("layer").loc["tok", "weight_duplicates"] == DIM
    # the tables are where the signal starts: an all-zero lookup is no vanishing layer
    assert "vanishing_activations" not in found.names


def test_training_tracks_the_tables():
    model, tokens = Tagger(), batch()
    tracker = Tracker("epoch", tokens, tokens)
    tracker.record(model, 0, 0)  # step 0, as the engine records the model as initialized
    layers = {r["layer"] for r in tracker.rows}
    assert {"tok", "pos"} <= layers


def test_the_doctor_notes_the_tables_its_plan_leaves_as_built(tmp_path, capsys):
    from initlab.cli import main

    (tmp_path / "lm.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Embedding(12, 8), nn.Linear(8, 12))\n"
    )
    data = tmp_path / "tokens.npz"
    ids = np.random.default_rng(0).integers(0, 12, (64, 5))
    np.savez(data, x_train=ids, y_train=ids, x_test=ids[:16], y_test=ids[:16])
    code = main(["doctor", "--model", f"{tmp_path / 'lm.py'}:build", "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 0
    assert "the plan sets weight layers only: 0 (Embedding: weight) keeps" in err
    assert "--embedding-init" in err
