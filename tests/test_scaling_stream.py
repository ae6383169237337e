"""The residual stream in a coordinate check: a pre-LN net's stream grows as √depth while
its final LayerNorm keeps every layer's output and the logits level, so only the rows of
the norms' inputs (``ln_f (input)``) can show it; a convolution's output entering batch
norm is measured as the convolution's, not twice."""

import math

import torch
from torch import nn

from initlab import coord_check
from initlab.scaling.stream import STREAM


class Block(nn.Module):
    """A pre-LN residual block ``x + fc2(relu(fc1(ln(x))))``, its branch unscaled."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.ln(x))))


class PreLN(nn.Module):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(64, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.ln_f, self.head = nn.LayerNorm(width), nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


def pre_ln(width: int = 32, depth: int = 2) -> nn.Module:
    return PreLN(width, depth)


def conv_bn(width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Flatten(), nn.Linear(width * 64, 10),
    )  # fmt: skip


def test_a_pre_ln_stream_that_grows_with_depth_is_recorded_and_flagged():
    result = coord_check(
        pre_ln, widths=(16, 32), depths=(2, 8, 32), seeds=3, steps=1, data="digits"
    )
    stream = result.coords[(result.coords["module"] == "ln_f" + STREAM)]
    at_init = stream[(stream["step"] == 0) & (stream["metric"] == "std")]
    means = at_init.groupby("depth")["value"].mean()
    # each of L branches adds about its input's variance: std ∝ sqrt(L), ×4 from 2 to 32 blocks
    assert means[32] / means[2] > 2.0
    logits = result.coords[(result.coords["module"] == "(logits)") & (result.coords["step"] == 0)]
    spread = logits.groupby("depth")["value"].mean()
    assert spread.max() / spread.min() < means[32] / means[2]  # the final norm levels them
    flagged = [v for v in result.flagged() if v.module == "ln_f" + STREAM and v.axis != "width"]
    assert flagged and all(v.slope > 0 for v in flagged)
    said = flagged[0].sentence
    assert "input" in said and "residual stream adding unscaled branches" in said
    assert math.isfinite(flagged[0].slope)


def test_a_norm_fed_by_a_traced_layer_adds_no_rows():
    result = coord_check(conv_bn, widths=(4, 8), seeds=2, steps=1, data="digits")
    assert not result.coords["module"].str.endswith(STREAM).any()


def test_embedding_init_sets_a_language_models_tables_at_every_width_so_the_stream_shows():
    """nn.Embedding's N(0, 1) tables put the stream at std ~1 at the first norm, where the
    blocks' outputs (std ~0.15) hardly show; the check had no way to set them. With
    normal(std=0.02), tok + pos enter at std 0.02·√2 ≈ 0.028 at every width."""
    result = coord_check(
        "gpt", widths=(16, 32), seeds=2, steps=1, embedding_init="normal(std=0.02)",
        model_args={"depth": 1},
    )  # fmt: skip
    rows = result.coords
    first = rows[(rows["module"] == "blocks.0.ln1" + STREAM) & (rows["metric"] == "std")]
    at_init = first[first["step"] == 0].groupby("width")["value"].mean()
    assert set(at_init.index) == {16, 32} and (abs(at_init - 0.02 * math.sqrt(2)) < 0.01).all()
    said = "embedding tables tok_emb, pos_emb: normal(std=0.02) (embedding_init) at every width"
    assert any(note.startswith(said) for note in result.notes)
    assert result.settings.embedding_init == "normal(std=0.02)"  # verdicts.json's settings


def test_an_embedding_init_for_a_model_without_tables_is_refused_on_the_command_line(capsys):
    from initlab.cli import main

    args = ["scaling", "--widths", "16,32,64", "--steps", "1", "--seeds", "1"]
    assert main([*args, "--embedding-init", "lecun_normal"]) == 2
    err = capsys.readouterr().err
    assert "--embedding-init 'lecun_normal' would change nothing: the model has no" in err
    assert main([*args, "--model", "gpt", "--embedding-init", "lsuv"]) == 2
    assert "--embedding-init" in (err := capsys.readouterr().err) and "lsuv" in err
    assert len(err.strip().splitlines()) == 1
