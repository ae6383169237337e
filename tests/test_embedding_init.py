"""embedding_init sets nn.Embedding tables: laws, padding rows, ties, bad schemes, the CLI."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab import initialize
from initlab.cli import main
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.notes import InitlabNote
from initlab.train.build import build_initialized_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Tagger(nn.Module):
    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(500, 64, padding_idx=0)
        self.mix = nn.Linear(64, 64)
        self.head = nn.Linear(64, 500)
        if tied:
            self.head.weight = self.embed.weight


def test_gpt2s_normal_and_the_padding_row_zero_as_nn_embedding_does():
    model = Tagger()
    record = initialize(model, "he_normal", embedding_init="normal(std=0.02)", generator=gen())
    table = model.embed.weight.detach()
    assert torch.count_nonzero(table[0]) == 0
    n = table[1:].numel()  # sample std within 5 standard errors of 0.02
    assert float(table[1:].std()) == pytest.approx(0.02, rel=5 / math.sqrt(2 * n))
    row = next(r for r in record.rows if r["layer"] == "embed")
    assert (row["fan_in"], row["fan_out"], row["expected_std"]) == (64, 500, 0.02)
    assert row["scheme"] == "normal(mean=0.0, std=0.02), row 0 = 0"
    assert "embed" not in {s["layer"] for s in record.skipped}


def test_lecun_normal_gives_each_token_vector_a_unit_squared_norm():
    """fan_in = embedding_dim: Var = 1/D, so E‖e_v‖² = 1 (PyTorch's N(0, 1) gives D = 64)."""
    model = Tagger()
    initialize(model, "default", embedding_init="lecun_normal", generator=gen())
    norms = model.embed.weight.detach()[1:].pow(2).sum(dim=1)
    # the mean of 499 squared norms, each of variance ≈ 2/D: within 5 standard errors of 1
    assert float(norms.mean()) == pytest.approx(1.0, abs=5 * math.sqrt(2 / 64 / 499))


def test_a_tied_table_is_set_by_the_embedding_rule_not_by_the_readouts_scheme():
    """Drawn by the readout's scheme (Glorot on [V, D]), a language model's token table took
    std ≈ sqrt(2/V) while its position table kept N(0, 1): tokens entered at a small
    fraction of the positions' variance, whatever init was under study."""
    tied = Tagger(tied=True)
    with pytest.warns(InitlabNote, match=r"sets embed, and so head\.weight, tied to it"):
        initialize(
            tied, "he_normal", output_init="normal(std=0.5)", embedding_init="normal(std=0.02)"
        )
    table = tied.embed.weight.detach()
    n = table[1:].numel()  # the embedding scheme's 0.02, not the readout's 0.5: 5 std errors
    assert float(table[1:].std()) == pytest.approx(0.02, rel=5 / math.sqrt(2 * n))
    assert torch.count_nonzero(table[0]) == 0  # padding row zeroed, as nn.Embedding does
    assert tied.head.weight is tied.embed.weight
    model = Tagger(tied=True)
    before = model.embed.weight.detach().clone()
    for keep in (None, "default"):  # no embedding scheme: the table stays as built
        with pytest.warns(InitlabNote, match=r"head\.weight is embed\.weight \(tied\): kept"):
            record = initialize(model, "he_normal", embedding_init=keep)
        assert torch.equal(model.embed.weight, before)
        assert torch.count_nonzero(model.head.bias) == 0  # the readout's own bias is set
        row = next(r for r in record.rows if r["layer"] == "head")
        assert row["scheme"] == "embedding table embed"


def test_a_table_tied_to_a_kept_output_layer_is_set_by_the_embedding_scheme():
    # nobody else sets it: keeping the readout must not leave the table at N(0, 1) unnoticed
    for kept in ({"output_layer": "keep"}, {"scheme": "default"}):
        tied = Tagger(tied=True)
        options = {"scheme": "he_normal", **kept}
        with pytest.warns(InitlabNote, match="sets embed, and so .* tied to it"):
            initialize(tied, options.pop("scheme"), embedding_init="normal(std=0.02)", **options)
        table = tied.embed.weight.detach()[1:]  # row 0 is the padding row
        # the sample std of n i.i.d. normal draws: se(std) ≈ std / sqrt(2n); 5 standard errors
        n = table.numel()
        assert float(table.std()) == pytest.approx(0.02, rel=5 / math.sqrt(2 * n))


def test_a_constant_output_init_leaves_a_tied_table_alone_and_a_plan_naming_it_says_so(capsys):
    """--output-init zeros on a tied language model zeroed its token table: every token
    entered as the same vector. The table is the embedding rule's now; a plan that names
    the readout still draws it, with a note."""
    tied = Tagger(tied=True)
    before = tied.embed.weight.detach().clone()
    for constant in ("zeros", "constant(value=0.1)"):
        initialize(tied, "he_normal", output_init=constant)
        assert torch.equal(tied.embed.weight, before)
    with pytest.warns(InitlabNote, match="every token enters as the same vector"):
        initialize(tied, {"mix": "he_normal", "head": "zeros"})
    assert torch.count_nonzero(tied.embed.weight) == 0
    with pytest.warns(InitlabNote, match="embed.weight, tied to head.weight: the token table"):
        initialize(tied, {"mix": "he_normal", "head": "glorot_uniform"})  # drawn, said
    plan = ["plan", "--model", f"{__file__}:tied_tagger", "--init", "he_normal"]
    assert main([*plan, "--output-init", "zeros"]) == 0
    assert "tied to embed.weight: kept" in capsys.readouterr().out


def tied_tagger() -> nn.Module:
    return Tagger(tied=True)


def test_a_data_dependent_scheme_is_refused_for_tables():
    with pytest.raises(InitlabError, match="'lsuv' cannot set embeddings"):
        initialize(Tagger(), "he_normal", embedding_init="lsuv")


def test_a_run_with_the_models_own_init_still_gets_its_embedding_init(tmp_path):
    factory = tmp_path / "m.py"
    factory.write_text(
        "import torch\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Flatten(), "
        "torch.nn.Linear(8, 3))\n"
    )
    config = RunConfig(model=f"{factory}:build", init="default", embedding_init="zeros")
    model = build_initialized_model(config, (1,), 3)
    assert torch.count_nonzero(model[0].weight) == 0
    assert RunConfig().key() == RunConfig(embedding_init="default").key()  # old keys stay


def test_the_cli_sets_tables_refuses_lsuv_before_work_and_drops_the_note(tmp_path, capsys):
    args = ["compare", "--model", f"{EXAMPLES}/my_models.py:lstm_classifier", "--seeds", "1"]
    args += ["--data", f"{EXAMPLES}/my_data.py:first_token", "--epochs", "1", "--workers", "1"]
    out = tmp_path / "out"
    assert main([*args, "--embedding-init", "lsuv", "--out", str(out)]) == 2
    assert not out.exists()
    assert "--embedding-init 'lsuv'" in capsys.readouterr().err
    assert main([*args, "--inits", "he_normal", "--limit-train", "100"]) == 0
    assert "embed (Embedding: weight)" in capsys.readouterr().err  # left as built: named
    argv = [*args, "--inits", "he_normal", "--embedding-init", "random_uniform"]
    assert main([*argv, "--limit-train", "100"]) == 0
    assert "embed (Embedding" not in capsys.readouterr().err


def test_an_embedding_init_for_a_model_without_a_table_of_its_own_is_one_line(capsys):
    assert main(["compare", "--data", "digits", "--embedding-init", "lecun_normal"]) == 2
    err = capsys.readouterr().err
    assert "embedding_init 'lecun_normal' would change nothing" in err  # a spec's too
    assert "mlp has no nn.Embedding table" in err


def test_a_constant_scheme_under_study_leaves_a_tied_table_as_built():
    """zeros as the scheme (the classic lab's) zeroes the layers, not the token table a
    readout shares: the table is an embedding, kept as built."""
    tied = Tagger(tied=True)
    before = tied.embed.weight.detach().clone()
    initialize(tied, "zeros", output_init="same")
    assert torch.equal(tied.embed.weight, before)
    assert torch.count_nonzero(tied.mix.weight) == 0


class Bigram(nn.Module):
    """An embedding and a readout tied to it: no layer of its own for a scheme."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(16, 8), nn.Linear(8, 16)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def bigram() -> nn.Module:
    return Bigram()


def test_a_model_whose_only_layer_is_a_tied_readout_is_refused_for_a_scheme(capsys):
    """Every scheme set only the readout's bias: the comparison ranked identical runs."""
    args = ["compare", "--model", f"{__file__}:bigram", "--seeds", "1", "--epochs", "1"]
    args += ["--data", f"{EXAMPLES}/my_data.py:tokens", "--inits", "he_normal"]
    assert main(args) == 2
    assert "is embed.weight (tied), which --embedding-init sets" in capsys.readouterr().err
