"""The lr-transfer study: muP folded into multipliers trains like muP's parameter groups,
the drift measure and its verdicts, and the tiny scale end to end."""

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
from initlab.studies.lr_transfer import PROTOCOLS, best_drift, loss_table
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


@pytest.mark.parametrize("scale", ["tiny", "default", "full"])
def test_spec_is_params_x_widths_x_lrs_x_seeds(scale):
    p = PROTOCOLS[scale]
    configs = expand(get("lr-transfer").spec(scale))
    assert len(configs) == 2 * len(p.widths) * len(p.log2_lrs) * p.seeds
    assert {c.model_args["param"] for c in configs} == {"sp", "mup"}
    assert {c.model_args["width"] for c in configs} == set(p.widths)
    assert all(c.init == "default" and c.optimizer == "adam" for c in configs)


def runs_with_best(best: dict[str, list[int]], lrs: int = 6) -> pd.DataFrame:
    """Runs whose loss is |k - best k| + 1 at every width (index = width rank)."""
    rows = []
    for param, ks in best.items():
        for w, k_best in enumerate(ks):
            for k in range(lrs):
                loss = abs(k - k_best) + 1.0 if k_best >= 0 else math.nan
                rows.append({"model_args.param": param, "model_args.width": 64 * 2**w,
                             "lr": 2.0**k, "final_train_loss": loss})  # fmt: skip
    return pd.DataFrame(rows)


def test_drift_counts_grid_steps_and_diverged_runs_are_worst():
    table = loss_table(runs_with_best({"sp": [4, 3, 2, 1], "mup": [3, 3, 2, 3]}))
    assert best_drift(table, "sp") == 3 and best_drift(table, "mup") == 1
    diverged = runs_with_best({"sp": [4, -1], "mup": [2, 2]})
    assert math.isnan(best_drift(loss_table(diverged), "sp"))
    assert np.isinf(loss_table(diverged.fillna(np.inf)).loc["sp"].iloc[1]).all()


def test_verdicts_from_runs():
    study = get("lr-transfer")

    class Ctx:
        runs = runs_with_best({"sp": [4, 3, 2, 1], "mup": [3, 3, 2, 3]})

    mup, sp = study.check(Ctx())
    assert (mup.reproduced, sp.reproduced) == (True, True)
    Ctx.runs = runs_with_best({"sp": [3, 3, 3, 3], "mup": [1, 3, 5, 5]})
    mup, sp = study.check(Ctx())
    assert (mup.reproduced, sp.reproduced) == (False, False)
    assert "drift 4 grid step(s)" in mup.evidence


@pytest.mark.slow
def test_tiny_scale_runs_end_to_end(tmp_path):
    outcome = run_named_study("lr-transfer", scale="tiny", out=tmp_path, progress=False)
    assert len(outcome.results.runs) == 2 * 2 * 8
    assert all(e.reproduced is not None for e in outcome.expectations)
    assert (tmp_path / "lr-transfer.png").exists() or any(tmp_path.rglob("lr-transfer*.png"))
