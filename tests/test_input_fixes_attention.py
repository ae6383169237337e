"""Under muP, a coordinate check of a model whose attention initlab could not set to 1/d
says so on its "nothing moves with width" line (and in ``verdicts.json``), instead of an
unqualified pass: ``nn.MultiheadAttention``, ``scaled_dot_product_attention`` without
``scale=``, and softmax attention written by hand without an ``attn_scale``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.cli import main
from initlab.cli.scaling_cmd import flat_line
from initlab.data import load
from initlab.scaling import coord_check
from initlab.scaling.check import ScalingResult
from initlab.scaling.coords import CoordSettings
from initlab.scaling.datacheck import check_data

ATTENTION = '''
import math

import torch
from torch import nn


class Attn(nn.Module):
    """One head over the 8 rows of a digit: softmax(q·kᵀ·scale)·v, scale 1/√d."""

    def __init__(self, d, exposed):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.d = d
        if exposed:
            self.attn_scale = 1 / math.sqrt(d)

    def forward(self, h):
        scale = getattr(self, "attn_scale", 1 / math.sqrt(self.d))
        logits = self.q(h) @ self.k(h).transpose(-2, -1) * scale
        return torch.softmax(logits, dim=-1) @ self.v(h)


class Net(nn.Module):
    def __init__(self, width, exposed):
        super().__init__()
        self.inp, self.attn = nn.Linear(8, width), Attn(width, exposed)
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        h = self.inp(x.reshape(len(x), 8, 8))
        return self.out((h + self.attn(h)).mean(1))


def by_hand(width=16):
    return Net(width, exposed=False)


def exposed(width=16):
    return Net(width, exposed=True)
'''
HAND = (
    "the forward's 1 softmax/attention call(s) take the scale the model gives them (q·kᵀ/√d, "
    "say), which initlab cannot see or set"
)


@pytest.fixture
def attention_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "attn.py").write_text(ATTENTION)
    return tmp_path


class Rows(nn.Module):
    """A digit's 8 rows as 8 tokens, through ``attention`` (an ``nn.MultiheadAttention``, or
    ``"sdpa"``/``"sdpa-scaled"`` for ``F.scaled_dot_product_attention`` without/with
    ``scale=``), then 10 logits."""

    def __init__(self, width: int, attention: str) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(8, width), nn.Linear(width, 10)
        self.kind = attention
        self.mha = nn.MultiheadAttention(width, 2, batch_first=True) if attention == "mha" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.reshape(len(x), 8, 8))
        if self.mha is not None:
            h = self.mha(h, h, h, need_weights=False)[0]
        elif self.kind == "sdpa":
            h = F.scaled_dot_product_attention(h, h, h)
        elif self.kind == "sdpa-scaled":
            h = F.scaled_dot_product_attention(h, h, h, scale=1 / h.shape[-1])
        return self.out(h.mean(1))


@pytest.mark.parametrize(
    ("attention", "param", "caveat"),
    [
        ("mha", "mup", "`mha` (nn.MultiheadAttention) use 1/√d"),
        ("sdpa", "mup", "1 scaled_dot_product_attention call(s) use 1/√d"),
        ("sdpa-scaled", "mup", "the forward's 1 softmax/attention call(s) take the scale"),
        ("none", "mup", ""),
        ("mha", "sp", ""),  # 1/√d is SP's own scale
    ],
)
def test_the_caveat_names_the_attention_initlab_cannot_set(attention, param, caveat):
    settings = CoordSettings(widths=(8, 16, 32), param=param, seeds=(0,))
    said = check_data(lambda width: Rows(width, attention), settings, load("digits"))
    assert said.startswith(caveat) and bool(said) == bool(caveat)


def _check(model: str, param: str, out: Path) -> int:
    args = ["--widths", "8,16,32", "--param", param, "--seeds", "1", "--steps", "1"]
    return main(["scaling", "--model", model, *args, "--batch-size", "32", "--out", str(out)])


def test_hand_written_attention_qualifies_a_flat_check(attention_dir, capsys, monkeypatch):
    """The outcome is made flat (the fits at three widths and one seed are not the point):
    the line says "at these widths" and why, the JSON carries it; an attention with an
    ``attn_scale`` (set to √d_base/d) and SP get the plain line."""
    monkeypatch.setattr(ScalingResult, "outcome", property(lambda self: "flat"))
    assert _check("attn.py:by_hand", "mup", attention_dir / "hand") == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert (
        "✔ nothing moves with width at these widths (mup with adam, lr 0.001, widths [8, 16, "
        f"32]): every fit's 95% CI within ±0.5, but initlab could not set the attention to "
        f"muP's 1/d: {HAND}; with 1/√d, attention logits grow" in printed
    )
    document = json.loads((attention_dir / "hand" / "verdicts.json").read_text())
    assert document["caveat"] == HAND
    for model, param in (("attn.py:exposed", "mup"), ("attn.py:by_hand", "sp")):
        assert _check(model, param, attention_dir / "plain") == 0
        printed = " ".join(capsys.readouterr().out.split())
        assert "✔ nothing moves with width (" in printed and "at these widths" not in printed
        document = json.loads((attention_dir / "plain" / "verdicts.json").read_text())
        assert document["caveat"] is None


def test_the_library_result_carries_the_caveat():
    result = coord_check(
        lambda width: Rows(width, "sdpa"), widths=(8, 16, 32), param="mup", seeds=1, steps=1
    )
    assert result.caveat == "1 scaled_dot_product_attention call(s) use 1/√d"


def test_the_flat_line_without_a_caveat_is_unchanged():
    assert flat_line("sp, widths [8, 16]", 0.5, "").plain == (
        "✔ nothing moves with width (sp, widths [8, 16]): every fit's 95% CI within ±0.5"
    )


SDPA = """
import torch.nn.functional as F
from torch import nn


class Rows(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp, self.out = nn.Linear(8, width), nn.Linear(width, 10)

    def forward(self, x):
        h = self.inp(x.view(-1, 8, 8))
        return self.out(F.scaled_dot_product_attention(h, h, h).mean(1))


def build(width=16):
    return Rows(width)
"""


@pytest.mark.parametrize(("param", "said"), [("sp", False), ("mup", True)])
def test_the_1_over_d_attention_note_is_said_under_mup_only(attention_dir, capsys, param, said):
    """SDPA's default 1/√d is SP's own scale: under --param sp the note that muP needs 1/d
    was beside the point (NLP journey)."""
    (attention_dir / "sdpa.py").write_text(SDPA)
    assert _check("sdpa.py:build", param, attention_dir / param) == 0
    captured = capsys.readouterr()
    assert ("muP needs 1/d" in captured.out + captured.err) == said


def test_a_flagged_check_still_prints_the_caveat(attention_dir, capsys, monkeypatch):
    """It was printed only under a flat outcome: a flagged muP check of a hand-written
    attention said nothing of the 1/√d that initlab could not set (verdicts.json had it)."""
    for outcome in ("flagged", "unmeasured"):
        monkeypatch.setattr(ScalingResult, "outcome", property(lambda self, o=outcome: o))
        _check("attn.py:by_hand", "mup", attention_dir / outcome)
        printed = " ".join(capsys.readouterr().out.split())
        assert f"note: initlab could not set the attention to muP's 1/d: {HAND}" in printed
    assert "? nothing measured moves with width" in printed  # unmeasured's own line stays
