"""Data that does not fit the model is one line, exit 2, before any work, with the same
check (and words) in ``plan``, ``compare`` and ``scaling``; the message names what failed
(the model's error, where, on what shape) and suggests floats only where they are the fix;
``sweep --out FILE`` is refused before any model is built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from initlab.cli import main
from initlab.data import from_value
from initlab.errors import InitlabError
from initlab.train.preflight import probe_output

LM = '''
from pathlib import Path

import torch
from torch import nn


class TinyGPT(nn.Module):
    """Token ids [B, T] -> logits [B, T, vocab]; a position table of ``ctx`` rows."""

    def __init__(self, vocab, ctx, width):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(1, ctx, width))
        self.fc = nn.Linear(width, width)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos[:, : idx.shape[1]]
        return self.head(x + torch.relu(self.fc(x)))


def build(vocab=10, ctx=8, width=16):
    return TinyGPT(vocab, ctx, width)


def marked(vocab=10, ctx=8, width=16):
    """build, leaving a file named 'built' beside this one: the model was built."""
    Path(__file__).with_name("built").write_text("built")
    return build(vocab, ctx, width)
'''
LONG = (
    "the model cannot run on the data: data examples have shape [12] and integer dtype int64 "
    "(kept as token ids, max {top} in the probe) but the model failed in TinyGPT.forward on a "
    "batch [2, 12]: RuntimeError: The size of tensor a (12) must match the size of tensor b "
    "(8) at non-singleton dimension 1"
)
OOV = (
    "x_train has token id 12 but the model's first layer tok (Embedding) has 10 rows, ids "
    "0..9; build it with a vocabulary of at least 13 (a --model-arg) or map the ids into that "
    "range"
)


def _tokens(path: Path, length: int, top: int = 9) -> int:
    """Next-token data of sequences of ``length`` ids in 0..9 (one id ``top`` in x_train);
    the largest id of the first two training examples."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (80, length + 1))
    x[5, 0] = top  # in x_train, past the two examples the model runs on
    inputs, targets = x[:, :-1], x[:, 1:] % 10
    np.savez(
        path, x_train=inputs[:64], y_train=targets[:64], x_test=inputs[64:], y_test=targets[64:]
    )
    return int(inputs[:2].max())


@pytest.fixture
def lm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lm.py").write_text(LM)
    return tmp_path


def _error(capsys: pytest.CaptureFixture) -> str:
    """The one line on stderr, without its ``error: ``; fails on anything else."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0].removeprefix("error: ")


def test_plan_refuses_sequences_longer_than_the_context_as_compare_does(lm_dir, capsys):
    top = _tokens(lm_dir / "long.npz", 12)
    assert main(["plan", "--model", "lm.py:build", "--data", "long.npz"]) == 2
    planned = capsys.readouterr()
    assert planned.out == "" and planned.err == f"error: {LONG.format(top=top)}\n"
    args = ["--data", "long.npz", "--inits", "default", "--epochs", "1"]
    assert main(["compare", "--model", "lm.py:build", *args, "--out", "o"]) == 2
    assert _error(capsys) == LONG.format(top=top) and not (lm_dir / "o").exists()
    _tokens(lm_dir / "fits.npz", 8)
    assert main(["plan", "--model", "lm.py:build", "--data", "fits.npz"]) == 0
    assert "the plan: every parameter" in capsys.readouterr().out


def test_plan_refuses_token_ids_beyond_the_embedding(lm_dir, capsys):
    _tokens(lm_dir / "oov.npz", 8, top=12)
    assert main(["plan", "--model", "lm.py:build", "--data", "oov.npz"]) == 2
    assert _error(capsys) == OOV


def test_scaling_checks_the_data_with_compares_check_and_words(lm_dir, capsys):
    _tokens(lm_dir / "oov.npz", 8, top=12)
    args = ["--model", "lm.py:build", "--data", "oov.npz"]
    assert main(["compare", *args, "--inits", "default", "--epochs", "1", "--out", "o"]) == 2
    assert _error(capsys) == OOV
    small = ["--widths", "8,16,32", "--seeds", "1", "--steps", "1", "--out", "s"]
    assert main(["scaling", *args, *small]) == 2
    assert _error(capsys) == f"width 32: {OOV}" and not (lm_dir / "s").exists()
    _tokens(lm_dir / "long.npz", 12)
    assert main(["scaling", "--model", "lm.py:build", "--data", "long.npz", *small]) == 2
    assert _error(capsys) == f"width 32: {LONG.format(top=9)}"  # compare's words


def _ids(x: torch.Tensor) -> object:
    y = torch.zeros(len(x), dtype=torch.long)
    return from_value((x, y, x, y))


def _failure(model: nn.Module, data: object) -> str:
    with pytest.raises(InitlabError) as info:
        probe_output(model, data)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_floats_are_suggested_only_for_a_dtype_error_of_a_layer_that_takes_floats():
    ids = _ids(torch.randint(0, 5, (8, 6)))
    as_features = _failure(nn.Sequential(nn.Linear(6, 3)), ids)
    assert "failed in 0 (Linear) on a batch [2, 6]: RuntimeError: mat1 and mat2" in as_features
    assert as_features.endswith("a Linear takes floats: if these are features, give them as "
                                "floats, e.g. x.astype('float32')")  # fmt: skip
    embedded = nn.Sequential(nn.Embedding(5, 4), nn.Flatten(), nn.Linear(20, 3))  # 6·4 = 24 in
    wrong_size = _failure(embedded, ids)
    assert "failed in 2 (Linear) on a batch [2, 6]" in wrong_size and "2x24 and 20x3" in wrong_size
    assert "float" not in wrong_size
    features = _ids(torch.randn(8, 6))
    floats = _failure(nn.Sequential(nn.Linear(5, 3)), features)
    assert "data examples have shape [6] but the model failed in 0 (Linear)" in floats
    assert "float" not in floats and "token ids" not in floats


class Gate(nn.Module):
    """No parameters of its own: a dtype error here is not a layer that needs floats."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.ones(x.shape[-1], 2)


def test_a_dtype_error_outside_a_weight_layer_gets_no_float_advice():
    message = _failure(nn.Sequential(Gate()), _ids(torch.randint(0, 5, (8, 6))))
    assert "failed in 0 (Gate)" in message and "dtype" in message
    assert "x.astype" not in message


SPEC = """name = "lm"
[fixed]
model = "lm.py:marked"
data = "fits.npz"
epochs = 1
[sweep]
init = ["default", "glorot_uniform"]
"""


@pytest.mark.parametrize("dry_run", [False, True])
def test_sweep_out_on_a_file_is_the_only_line_and_no_model_is_built(lm_dir, capsys, dry_run):
    """lm.py:marked has a bare nn.Parameter: building it for glorot_uniform prints a note, as
    the user's journey saw before the error."""
    _tokens(lm_dir / "fits.npz", 8)
    (lm_dir / "spec.toml").write_text(SPEC)
    (lm_dir / "afile").write_text("mine")
    args = ["sweep", "spec.toml", "--out", "afile"] + (["--dry-run"] if dry_run else [])
    assert main(args) == 2
    assert (
        capsys.readouterr().err == "error: --out afile: a file is there; --out takes a directory\n"
    )
    assert not (lm_dir / "built").exists() and (lm_dir / "afile").read_text() == "mine"


def test_a_target_token_beyond_the_vocabulary_only_in_the_test_split_is_refused(lm_dir, capsys):
    """The check read the training targets only: a target id of 12 in y_test alone trained
    the run, which then failed with an IndexError (exit 1, 'every one of the runs failed')."""
    _tokens(lm_dir / "tok.npz", 8)
    data = dict(np.load(lm_dir / "tok.npz"))
    data["y_test"][3, 2] = 12
    np.savez(lm_dir / "late.npz", **data)
    args = ["--model", "lm.py:build", "--data", "late.npz", "--inits", "default", "--epochs", "1"]
    assert main(["compare", *args, "--out", "o"]) == 2
    said = _error(capsys)
    assert said == (
        "the model outputs a vocabulary of 10 tokens but the targets contain token 12; "
        "output at least 13 logits per position"
    )
    assert not (lm_dir / "o").exists()
