"""The gpt-init study: corpus, spec, checks on hand-made tables, tiny end to end (slow)."""

import math

import pandas as pd
import pytest
import torch

from initlab.errors import InitlabError
from initlab.models.gpt import gpt
from initlab.scaling.parametrize import parametrized
from initlab.studies import get, run_named_study
from initlab.studies import gpt_init_checks as c
from initlab.studies.gpt_init import GPT2, MUP, MUP_MODEL, PROTOCOLS
from initlab.studies.gpt_init_data import CONTEXT, VOCAB_SIZE, encode, stdlib_chars
from initlab.studies.gpt_init_models import mup_gpt
from initlab.studies.lr_transfer_models import ScaledLinear, fold_learning_rates
from initlab.sweep.grid import expand


def test_corpus_is_the_standard_library_source_as_next_character_windows():
    x, y, xt, yt = stdlib_chars()
    assert x.shape[1] == CONTEXT and len(x) > 4000 and len(xt) > 400
    assert bool((x[:, 1:] == y[:, :-1]).all()) and bool((xt[:, 1:] == yt[:, :-1]).all())
    assert int(x.max()) < VOCAB_SIZE and int(x.min()) >= 0
    assert encode("\n a~é").tolist() == [0, 1, 66, 95, 96]


def test_spec_has_two_depths_the_three_arms_and_mup():
    spec = get("gpt-init").spec("default")
    assert len(spec.axes[0].values) == 2
    assert set(spec.axes[1].values) == {("default", "none"), (GPT2, "none"), (GPT2, "depth_scaled")}
    assert spec.fixed["task"] == "sequence"
    runs = expand(spec)
    mup = [r for r in runs if r.model == MUP_MODEL]
    assert len(runs) == 8 and sorted(r.model_args["depth"] for r in mup) == [2, 6]
    assert all(r.init == "default" and r.residual_init == "none" for r in mup)
    assert all(r.model_args["base_width"] == PROTOCOLS["default"].base_width < 32 for r in mup)


def test_mup_gpt_is_the_gpt_under_mup_with_its_learning_rates_folded_in():
    torch.manual_seed(0)
    model = mup_gpt(vocab_size=VOCAB_SIZE, width=32, depth=2, heads=4, context=8, base_width=8)
    attn = model.blocks[0].attn
    assert isinstance(model.head, ScaledLinear) and isinstance(attn.q, ScaledLinear)
    assert not model.head.weight.any() and not model.head.bias.any()  # zero readout
    for layer in (attn.q, attn.proj, model.blocks[1].mlp.fc, model.blocks[1].mlp.proj):
        assert layer.weight_mult == pytest.approx(8 / 32) and layer.bias_mult == 1.0
    assert model.head.weight_mult == pytest.approx(8 / 32)
    assert attn.attn_scale == pytest.approx(math.sqrt(2) / 8)  # √d_base / d, d = 8, d_base = 2
    q = attn.q.weight.detach() * attn.q.weight_mult  # the effective weight has the default rms
    # muP rescales q to the base model's rms × its factor, so the rms is a statistic of the
    # base q's n = 8 × 8 i.i.d. U(±1/√8) draws (PyTorch's Linear default), not of q's own:
    # for U(±a), Var(w²) = 4a⁴/45, so se(rms)/rms = sqrt(0.2 / n); 4 standard errors
    assert float(q.square().mean().sqrt()) == pytest.approx(
        1 / math.sqrt(3 * 32), rel=4 * math.sqrt(0.2 / 8**2)
    )
    assert type(model.tok_emb) is torch.nn.Embedding
    out = model(torch.randint(0, VOCAB_SIZE, (2, 8)))
    assert out.shape == (2, 8, VOCAB_SIZE) and not out.any()


def test_folding_refuses_factors_it_cannot_carry():
    # muP with SGD gives the embeddings (not Linear) a learning-rate factor ≠ 1
    kwargs = {"vocab_size": 11, "depth": 1, "heads": 2, "context": 4}
    built = parametrized(gpt, "mup", width=16, base_width=8, optimizer="sgd", kwargs=kwargs, seed=0)
    with pytest.raises(InitlabError, match=r"tok_emb\.weight"):
        fold_learning_rates(built)


def test_the_mup_profile_hooks_the_blocks_by_name():
    args = {"vocab_size": VOCAB_SIZE, "width": 16, "heads": 2, "context": 8, "depth": 3}
    x = torch.randint(0, VOCAB_SIZE, (4, 8))
    p = c.block_profile(MUP_MODEL, {**args, "base_width": 8}, x)
    assert len(p.block_rms) == len(p.added_rms) == 3 and all(v > 0 for v in p.added_rms)
    again = c.block_profile(MUP_MODEL, {**args, "base_width": 8}, x)  # seed 0 each time
    assert again.added_rms == p.added_rms


def table(added: dict, losses: dict, depths=(2, 8)) -> pd.DataFrame:
    rows = []
    for (init, rule), values in added.items():
        for i, depth in enumerate(depths):
            rows.append({
                "depth": depth, "init": init, "rule": rule, "n": 1, "diverged": 0,
                "loss": losses[(init, rule)][i], "added": values[i], "vocab": VOCAB_SIZE,
                "stream_rms": [1.4] * depth, "added_rms": [0.1] * depth,
            })  # fmt: skip
    return pd.DataFrame(rows)


THEORY = {
    ("default", "none"): (0.4, 0.8),
    (GPT2, "none"): (0.04, 0.08),
    (GPT2, "depth_scaled"): (0.02, 0.02),
    (MUP, "none"): (0.45, 0.9),
}
LOSSES = {
    ("default", "none"): (3.0, 3.2),
    (GPT2, "none"): (2.9, 3.0),
    (GPT2, "depth_scaled"): (2.9, 2.98),
    (MUP, "none"): (3.0, 3.1),
}


def test_checks_reproduced_on_the_theory():
    t = table(THEORY, LOSSES)
    for check in (
        c.depth_scaled_grows_less,
        c.default_grows_more,
        c.all_arms_learn,
        c.depth_scaled_no_worse,
        c.mup_grows_with_depth,
        c.mup_loss_measured,
    ):
        e = check(t)
        assert e.reproduced is True, (check.__name__, e.evidence)
    assert "×2.000" in c.depth_scaled_grows_less(t).evidence
    assert "×2.000 (muP)" in c.mup_grows_with_depth(t).evidence
    assert "muP 3.1000, rank 3 of 4" in c.mup_loss_measured(t).evidence  # reported, not judged


def test_checks_fail_on_the_opposite():
    added = {
        **THEORY,
        (GPT2, "depth_scaled"): (0.02, 0.05),
        ("default", "none"): (0.01, 0.01),
        (MUP, "none"): (0.05, 0.02),
    }
    losses = {
        **LOSSES,
        (GPT2, "depth_scaled"): (2.9, 3.2),
        ("default", "none"): (4.6, 4.6),
        (MUP, "none"): (4.6, 4.6),
    }
    t = table(added, losses)
    assert c.mup_grows_with_depth(t).reproduced is False
    assert c.mup_loss_measured(t).reproduced is False
    assert c.depth_scaled_grows_less(t).reproduced is False
    assert c.default_grows_more(t).reproduced is False
    assert c.all_arms_learn(t).reproduced is False
    assert c.depth_scaled_no_worse(t).reproduced is False
    assert math.log(VOCAB_SIZE) > 4.5
    assert c.depth_scaled_grows_less(pd.DataFrame()).reproduced is None
    without_mup = table(THEORY, LOSSES).query("init != @MUP")
    assert c.mup_grows_with_depth(without_mup).reproduced is None
    assert c.mup_loss_measured(without_mup).reproduced is None


@pytest.mark.slow
def test_tiny_study_runs_end_to_end(tmp_path):
    outcome = run_named_study("gpt-init", scale="tiny", out=tmp_path, workers=1)
    assert len(outcome.results.runs) == 8
    assert len(outcome.expectations) == 6
    claims = [e.claim for e in outcome.expectations]
    assert any(claim.startswith("muP") for claim in claims)
    assert (tmp_path / "gpt-init.png").is_file()
