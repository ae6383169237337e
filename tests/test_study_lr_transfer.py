"""The lr-transfer study: muP folded into multipliers trains like muP's parameter groups,
the GPT arm's factory, the drift measure and its verdicts per model, and the tiny scale end
to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from initlab.models.scalable import mlp as scalable_mlp
from initlab.scaling.parametrize import parametrized
from initlab.studies import get, run_named_study
from initlab.studies.lr_transfer import (
    FACTORIES,
    PROTOCOLS,
    best_drift,
    gpt_expectation,
    loss_table,
    model_table,
)
from initlab.studies.lr_transfer_gpt import gpt, short_progressions
from initlab.studies.lr_transfer_models import ScaledLinear, fold_learning_rates, mlp
from initlab.sweep.grid import expand


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_folded_multipliers_train_like_the_parameter_groups(optimizer):
    def build():
        return parametrized(
            scalable_mlp, "mup", width=256, base_width=64, optimizer=optimizer, lr=0.01,
            seed=1, readout_zero_init=False,
        )  # fmt: skip

    grouped = build()
    folded = fold_learning_rates(build())
    assert all(type(m) is not torch.nn.Linear for m in folded.modules())
    opt = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    groups = [{k: v for k, v in g.items() if k != "names"} for g in grouped.param_groups()]
    pairs = [(grouped.model, opt(groups)), (folded, opt(folded.parameters(), lr=0.01))]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 64, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    with torch.no_grad():
        assert torch.allclose(grouped.model(x), folded(x), rtol=1e-5, atol=1e-6)  # same init
    for _ in range(3):
        for model, optim in pairs:
            optim.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optim.step()
    with torch.no_grad():
        a, b = grouped.model(x), folded(x)
    scale = float(a.abs().max())
    # SGD: the same updates up to rounding; Adam: up to eps = 1e-8 against gradients scaled
    # by the multiplier (1/4 here), which moves near-zero coordinates' steps
    atol = 50 * torch.finfo(torch.float32).eps * math.sqrt(256) * scale
    atol = atol if optimizer == "sgd" else 1e-2 * scale
    assert torch.allclose(a, b, rtol=0, atol=atol), float((a - b).abs().max())


def test_the_mup_factory_zeroes_the_readout_and_scales_hidden_layers():
    torch.manual_seed(0)
    model = mlp(width=256, param="mup", base_width=64)
    assert isinstance(model.output, ScaledLinear)
    assert model.output.weight_mult == pytest.approx(1 / 4) and not model.output.weight.any()
    assert model.blocks[1].linear.weight_mult == pytest.approx(1 / 4)
    assert model.blocks[0].linear.weight_mult == 1.0
    assert mlp(width=256, param="sp", base_width=64).blocks[1].linear.weight_mult == 1.0


def test_the_gpt_factory_folds_mup_and_keeps_its_attention_scale():
    torch.manual_seed(0)
    model = gpt(width=64, param="mup", base_width=16, depth=1, input_size=8)
    assert all(type(m) is not torch.nn.Linear for m in model.modules())
    assert isinstance(model.head, ScaledLinear) and not model.head.weight.any()
    assert model.head.weight_mult == pytest.approx(1 / 4)
    assert model.blocks[0].mlp.fc.weight_mult == pytest.approx(1 / 4)
    attn = model.blocks[0].attn  # 2 heads: head_dim 32, base 8 -> sqrt(8)/32
    assert attn.attn_scale == pytest.approx(math.sqrt(8) / 32)
    sp = gpt(width=64, param="sp", base_width=16, depth=1, input_size=8)
    assert sp.blocks[0].attn.attn_scale == pytest.approx(1 / math.sqrt(32))
    assert sp.head.weight_mult == 1.0
    data = short_progressions()
    assert model(data["x_train"][:4, :8]).shape == (4, 8, data["num_classes"])


@pytest.mark.parametrize("scale", ["tiny", "default", "full"])
def test_spec_is_params_x_models_widths_lrs_x_seeds(scale):
    p = PROTOCOLS[scale]
    configs = expand(get("lr-transfer").spec(scale))
    cells = sum(len(a.widths) * len(a.log2_lrs) for a in p.arms)
    assert len(configs) == 2 * cells * p.seeds
    assert {c.model_args["param"] for c in configs} == {"sp", "mup"}
    assert {c.model for c in configs} == set(FACTORIES.values())
    for arm in p.arms:
        mine = [c for c in configs if c.model == FACTORIES[arm.model]]
        assert {c.model_args["width"] for c in mine} == set(arm.widths)
        assert {c.lr for c in mine} == {2.0**k for k in arm.log2_lrs}
        assert {c.model_args["base_width"] for c in mine} == {arm.widths[0]}
        assert {c.dataset for c in mine} == {arm.dataset}
    gpt_runs = [c for c in configs if c.model == FACTORIES["gpt"]]
    assert all(c.task == "sequence" for c in gpt_runs)
    assert all(c.init == "default" and c.optimizer == "adam" for c in configs)


def runs_with_best(
    best: dict[str, list[int]], lrs: int = 6, model: str = "mlp", step: int = 1
) -> pd.DataFrame:
    """Runs whose loss is |k - best k| + 1 at every width (index = width rank); the
    learning rates ``2^(step·k)``."""
    rows = []
    for param, ks in best.items():
        for w, k_best in enumerate(ks):
            for k in range(lrs):
                loss = abs(k - k_best) + 1.0 if k_best >= 0 else math.nan
                rows.append({"model": FACTORIES[model], "model_args.param": param,
                             "model_args.width": 64 * 2**w, "lr": 2.0 ** (step * k),
                             "final_train_loss": loss})  # fmt: skip
    return pd.DataFrame(rows)


def test_drift_counts_grid_steps_and_diverged_runs_are_worst():
    table = model_table(
        loss_table(runs_with_best({"sp": [4, 3, 2, 1], "mup": [3, 3, 2, 3]})), "mlp"
    )
    assert best_drift(table, "sp") == 3 and best_drift(table, "mup") == 1
    diverged = runs_with_best({"sp": [4, -1], "mup": [2, 2]})
    assert math.isnan(best_drift(model_table(loss_table(diverged), "mlp"), "sp"))
    inf = model_table(loss_table(diverged.fillna(np.inf)), "mlp")
    assert np.isinf(inf.loc["sp"].iloc[1]).all()


def test_each_model_keeps_its_own_learning_rate_grid():
    runs = pd.concat([
        runs_with_best({"sp": [4, 3, 2, 1], "mup": [3, 3, 3, 3]}),
        runs_with_best({"sp": [2, 2], "mup": [1, 2]}, lrs=5, model="gpt", step=2),
    ])  # fmt: skip
    table = loss_table(runs)
    gpt_table = model_table(table, "gpt")
    assert list(gpt_table.columns) == [2.0**k for k in range(0, 10, 2)]
    assert best_drift(gpt_table, "sp") == 0 and best_drift(gpt_table, "mup") == 1
    assert best_drift(model_table(table, "mlp"), "sp") == 3
    assert model_table(table, "cnn").empty


def test_verdicts_from_runs():
    study = get("lr-transfer")

    class Ctx:
        runs = runs_with_best({"sp": [4, 3, 2, 1], "mup": [3, 3, 2, 3]})

    mup, sp, gpt_line = study.check(Ctx())
    assert (mup.reproduced, sp.reproduced) == (True, True)
    assert gpt_line.reproduced is None  # no GPT runs: undecided, not a pass
    Ctx.runs = runs_with_best({"sp": [3, 3, 3, 3], "mup": [1, 3, 5, 5]})
    mup, sp, _ = study.check(Ctx())
    assert (mup.reproduced, sp.reproduced) == (False, False)
    assert "drift 4 grid step(s) of ×2" in mup.evidence


@pytest.mark.parametrize(
    ("sp", "mup", "verdict"),
    [([3, 2, 1], [2, 2, 3], True), ([2, 2, 2], [2, 2, 2], False), ([3, 3, 2], [1, 2, 3], False)],
)
def test_the_gpt_line_states_both_drifts_and_does_not_credit_a_tie(sp, mup, verdict):
    runs = runs_with_best({"sp": sp, "mup": mup}, lrs=5, model="gpt", step=2)
    line = gpt_expectation(model_table(loss_table(runs), "gpt"))
    assert line.reproduced is verdict
    assert line.evidence.startswith("SP: best lr by width")
    assert "; muP: best lr by width" in line.evidence
    assert line.evidence.count("grid step(s) of ×4") == 2


@pytest.mark.slow
def test_tiny_scale_runs_end_to_end(tmp_path):
    outcome = run_named_study("lr-transfer", scale="tiny", out=tmp_path, progress=False)
    assert len(outcome.results.runs) == 2 * (2 * 8 + 2 * 5)
    assert all(e.reproduced is not None for e in outcome.expectations)
    assert any(tmp_path.rglob("lr-transfer.png")) and any(tmp_path.rglob("lr-transfer-gpt.png"))
