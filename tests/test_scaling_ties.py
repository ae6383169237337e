"""Tied weights (a language model's readout sharing its embedding's tensor): one kind for
every name of the tensor, parametrized once, by the embedding's rule (as mup's
MuSharedReadout), with a note naming both names, and sentences that say the readout is tied
instead of "not expected under muP" (docs/scaling.md §1 and §6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import initlab
from initlab.scaling.parametrize import parametrized, tie_hints
from initlab.scaling.sentences import with_sentences
from initlab.scaling.shapes import infer_shapes, renamed
from initlab.scaling.verdicts import Verdict

VOCAB = 20


class TiedLM(nn.Module):
    """Embedding → Linear → tanh → readout, the readout's weight the embedding's."""

    def __init__(self, dim: int = 16, head_first: bool = False) -> None:
        super().__init__()
        if head_first:  # the readout owns the tensor; named_parameters keeps "head.weight"
            self.head = nn.Linear(dim, VOCAB, bias=False)
            self.embed = nn.Embedding(VOCAB, dim)
            self.embed.weight = self.head.weight
        else:
            self.embed = nn.Embedding(VOCAB, dim)
            self.head = nn.Linear(dim, VOCAB, bias=False)
            self.head.weight = self.embed.weight
        self.mid = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mid(self.embed(x))))


def tied(dim: int = 16) -> nn.Module:
    return TiedLM(dim)


def tied_head_first(dim: int = 16) -> nn.Module:
    return TiedLM(dim, head_first=True)


@pytest.mark.parametrize("factory", [tied, tied_head_first])
def test_both_names_of_a_tied_tensor_get_the_embeddings_kind(factory):
    """Whichever module owns it first, the shared tensor is classified once, as the
    embedding (input), never as the readout (which muP would zero, embedding included)."""
    shapes = infer_shapes(renamed(factory, "dim"), width=64, base_width=16)
    embed, head = shapes["embed.weight"], shapes["head.weight"]
    assert embed.kind == head.kind == "input"
    assert (head.fan_in, head.fan_out, head.m_out) == (VOCAB, 64, 4.0)
    assert embed.tied == head.tied == ("embed.weight", "head.weight")
    assert (embed.own_kind, head.own_kind) == ("", "output")


def test_mup_parametrizes_the_tied_tensor_once_and_says_so():
    built = parametrized(tied, "mup", width=64, base_width=16, seed=0, width_arg="dim")
    model = built.model
    assert model.head.weight is model.embed.weight
    # the embedding's rule: init kept (nn.Embedding's N(0, 1)), not the readout's zero
    assert 0.8 < float(model.embed.weight.detach().std()) < 1.2
    groups = built.param_groups()
    names = [n for g in groups for n in g["names"]]
    assert names.count("embed.weight") == 1 and "head.weight" not in names
    lr = next(g["lr"] for g in groups if "embed.weight" in g["names"])
    assert lr == pytest.approx(built.lr)  # input under Adam: η, not the readout's η/4
    note = next(n for n in built.notes if "tied" in n)
    assert "`embed.weight` and `head.weight`" in note and "MuSharedReadout" in note
    assert "expect `head` and the logits to move with width" in note


def test_public_parametrize_warns_about_a_tied_readout():
    with pytest.warns(UserWarning, match="`head.weight` alone would be output"):
        model, groups = initlab.parametrize(tied, "mup", base_width=16, width=32, width_arg="dim")
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_tied_readout_is_not_reported_as_an_unexplained_failure():
    shapes = infer_shapes(lambda width=16: tied(dim=width), width=64, base_width=16)
    kinds = {n: s.kind for n, s in shapes.items()}
    flagged = [
        Verdict(module, 2, "update", 0.6, 0.47, 0.73, True, 6)
        for module in ("head", "(logits)", "mid")
    ]
    texts = [
        v.sentence for v in with_sentences(flagged, "mup", "adam", kinds, tie_hints(shapes, "mup"))
    ]
    for text in texts[:2]:
        assert "not expected" not in text
        assert "`head.weight` is the same tensor as `embed.weight` (tied)" in text
    assert "not expected under muP" in texts[2]  # an untied layer keeps the plain sentence


def test_a_tied_readout_under_sp_is_not_explained_in_mup_terms():
    """Under --param sp the tied readout's sentence named muP's MuSharedReadout (NLP
    journey): what muP would need is beside the point of an SP check."""
    shapes = infer_shapes(lambda width=16: tied(dim=width), width=64, base_width=16)
    hints = tie_hints(shapes, "sp")
    assert "`head.weight` is the same tensor as `embed.weight` (tied)" in hints["(logits)"]
    assert (
        "muP" not in hints["(logits)"] and "MuSharedReadout" in tie_hints(shapes, "mup")["(logits)"]
    )


class Twice(nn.Module):
    """One Linear called twice (weights shared across blocks), the second call on 50× the
    first's output: two series of very different scale."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.inp, self.lin = nn.Linear(64, width), nn.Linear(width, width)
        self.out = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lin(torch.relu(self.inp(x.flatten(1))))
        return self.out(self.lin(50 * a))


def test_each_call_of_a_shared_module_is_its_own_series():
    """Pooled under one name the two calls read as extra seeds (n = 18 rows where 9 are
    seeds × widths), the gap between them widened every interval and no fit was conclusive."""
    result = initlab.coord_check(
        lambda width: Twice(width), widths=(8, 16, 32), param="sp", seeds=3, steps=1,
        data="digits",
    )  # fmt: skip
    std = result.coords[(result.coords["metric"] == "std") & (result.coords["step"] == 0)]
    per_module = std.groupby("module").size()
    assert per_module["lin"] == per_module["lin[2]"] == 3 * 3  # widths × seeds, not twice
    first = std[std["module"] == "lin"]["value"].median()
    second = std[std["module"] == "lin[2]"]["value"].median()
    assert second > 10 * first  # the 50× input: two scales, not one noisy series
    assert {v.module for v in result.verdicts if v.axis == "width"} >= {"lin", "lin[2]"}
