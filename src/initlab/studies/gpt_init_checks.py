"""The ``gpt-init`` study's measurements, checks and figure.

At init (seed 0, :func:`initlab.studies.resnet_depth_checks.init_profile` on
:data:`PROFILE_BATCH` training windows) each arm records the residual stream's rms after every
block and ``added`` = rms(h_L − h_0), what all the branches together add to the embeddings by
the last block. Embeddings keep PyTorch's N(0, 1) in every arm, so the stream itself is
dominated by them; ``added`` is what the residual rules act on: it grows like sqrt(L) when
every branch adds a comparable amount and stays flat under ``depth_scaled``.

The muP arm (:data:`initlab.studies.gpt_init.MUP_MODEL`) is labelled ``init = "mup"`` in the
table. Its Linear layers are the lr-transfer study's multiplier layers, which ``torch.fx``
traces through, so the residual finder sees no branch in it: its blocks are hooked by name
(``blocks.k``, :func:`block_profile`) instead.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from initlab.report.model import Image
from initlab.studies.base import Expectation, StudyContext
from initlab.studies.resnet_depth_checks import Profile, arm_table, model_args_of

PROFILE_BATCH = 64
LEARNED_MARGIN = 0.1
"""An arm "learns" when its training loss ends below ln(vocab) − this."""
NO_WORSE_MARGIN = 0.05
"""depth_scaled is "no worse" when its loss exceeds plain N(0, 0.02)'s by at most this."""
KEYS = ["depth", "model", "init", "rule"]


def gpt_table(ctx: StudyContext) -> pd.DataFrame:
    """:func:`~initlab.studies.resnet_depth_checks.arm_table` per (depth, model, init, rule),
    with the stream's rms after each block at init and ``added`` (module docstring); the muP
    arm's init reads ``mup``."""
    from initlab.studies.gpt_init import MUP, MUP_MODEL

    table, profiles = arm_table(ctx, KEYS, PROFILE_BATCH)
    if table.empty:
        return table
    is_mup = table["model"] == MUP_MODEL
    if is_mup.any():
        first = ctx.runs[ctx.runs["model"] == MUP_MODEL]
        data = ctx.dataset(str(ctx.runs["dataset"].iloc[0]))
        for i in np.flatnonzero(is_mup.to_numpy()):
            depth = int(table["depth"].iloc[i])
            row = first[first["model_args.depth"].astype(int) == depth].iloc[0]
            args = model_args_of(row)
            profiles[i] = block_profile(MUP_MODEL, args, data.x_train[:PROFILE_BATCH])
        table.loc[is_mup, "init"] = MUP
    table["stream_rms"] = [p.block_rms for p in profiles]
    table["added_rms"] = [p.added_rms for p in profiles]
    table["added"] = [p.added_rms[-1] if p.added_rms else math.nan for p in profiles]
    table["vocab"] = int(model_args_of(ctx.runs.iloc[0])["vocab_size"])
    return table


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt())


@torch.no_grad()
def block_profile(model_spec: str, model_args: dict, x: torch.Tensor) -> Profile:
    """The :class:`~initlab.studies.resnet_depth_checks.Profile` of a GPT built as its runs
    were (seed 0, init as built) on the windows ``x``, hooking ``blocks.k`` by name; no
    gradient (``grad_norm`` nan)."""
    from initlab.models import build_user_model

    torch.manual_seed(0)
    model = build_user_model(model_spec, model_args)
    seen: list[torch.Tensor] = []
    blocks = list(model.get_submodule("blocks"))
    hooks = [b.register_forward_hook(lambda _m, _i, o: seen.append(o)) for b in blocks]
    hooks.append(blocks[0].register_forward_pre_hook(lambda _m, a: seen.insert(0, a[0])))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    h0, outs = seen[0], seen[1:]
    return Profile([_rms(h) for h in outs], [_rms(h - h0) for h in outs], math.nan)


def _arm(table: pd.DataFrame, depth: int, init: str, rule: str) -> pd.Series | None:
    rows = table[(table["depth"] == depth) & (table["init"] == init) & (table["rule"] == rule)]
    return rows.iloc[0] if len(rows) else None


def _deepest(table: pd.DataFrame) -> int | None:
    return int(table["depth"].max()) if not table.empty else None


def _shallowest(table: pd.DataFrame) -> int | None:
    return int(table["depth"].min()) if not table.empty else None


def depth_scaled_grows_less(table: pd.DataFrame) -> Expectation:
    """From the shallower to the deeper net, what the branches add grows less under
    depth_scaled than under plain N(0, 0.02) (theory: ×sqrt(L_deep/L_shallow) vs ×1)."""
    from initlab.studies.gpt_init import GPT2

    claim = (
        "at init, depth_scaled keeps what the branches add to the stream from growing with "
        "depth: its deep/shallow ratio of rms(h_L − h_0) is below plain N(0, 0.02)'s"
    )
    lo, hi = _shallowest(table), _deepest(table)
    if lo is None or lo == hi:
        return Expectation(claim, None, "fewer than two depths")
    arms = [_arm(table, d, GPT2, r) for d in (lo, hi) for r in ("none", "depth_scaled")]
    if any(a is None for a in arms):
        return Expectation(claim, None, "an arm or a second depth is missing")
    plain = arms[2]["added"] / arms[0]["added"]
    scaled = arms[3]["added"] / arms[1]["added"]
    theory = (2 * hi / (2 * lo)) ** 0.5
    return Expectation(
        claim,
        bool(scaled < plain),
        f"depth {lo} → {hi}: ×{plain:.3f} (N(0, 0.02); sqrt of the branch ratio {theory:.3f}) vs "
        f"×{scaled:.3f} (depth_scaled)",
    )


def default_grows_more(table: pd.DataFrame) -> Expectation:
    """PyTorch's default Linear init (std 1/sqrt(3·fan_in) ≈ 0.07 at width 64) adds more."""
    from initlab.studies.gpt_init import GPT2

    claim = "at init, PyTorch's default Linear init adds more to the stream than N(0, 0.02)"
    depth = _deepest(table)
    default = _arm(table, depth, "default", "none") if depth else None
    plain = _arm(table, depth, GPT2, "none") if depth else None
    if default is None or plain is None:
        return Expectation(claim, None, "an arm is missing")
    return Expectation(
        claim,
        bool(default["added"] > plain["added"]),
        f"depth {depth}: rms(h_L − h_0) {default['added']:.4g} (default) vs {plain['added']:.4g}",
    )


def all_arms_learn(table: pd.DataFrame) -> Expectation:
    """Every arm's training loss ends below ln(vocab) − :data:`LEARNED_MARGIN`."""
    if table.empty:
        return Expectation("every arm learns", None, "no runs")
    chance = math.log(int(table["vocab"].iloc[0]))
    bound = chance - LEARNED_MARGIN
    claim = f"every arm learns: training loss below ln(vocab) − {LEARNED_MARGIN} = {bound:.3f}"
    ok = bool(((table["loss"] < chance - LEARNED_MARGIN) & (table["diverged"] == 0)).all())
    text = "; ".join(
        f"depth {r['depth']} {r['init']}+{r['rule']}: {r['loss']:.3f}" for _, r in table.iterrows()
    )
    return Expectation(claim, ok, text)


def depth_scaled_no_worse(table: pd.DataFrame) -> Expectation:
    """At the deeper depth, depth_scaled's loss ≤ plain N(0, 0.02)'s + :data:`NO_WORSE_MARGIN`."""
    from initlab.studies.gpt_init import GPT2

    claim = (
        f"at the deeper depth, GPT-2's depth_scaled init trains at least as well as plain "
        f"N(0, 0.02) (loss at most {NO_WORSE_MARGIN} higher)"
    )
    depth = _deepest(table)
    plain = _arm(table, depth, GPT2, "none") if depth else None
    scaled = _arm(table, depth, GPT2, "depth_scaled") if depth else None
    if plain is None or scaled is None:
        return Expectation(claim, None, "an arm is missing")
    ok = bool(scaled["diverged"] == 0 and scaled["loss"] <= plain["loss"] + NO_WORSE_MARGIN)
    return Expectation(
        claim, ok, f"depth {depth}: {plain['loss']:.4f} (N(0, 0.02)) vs {scaled['loss']:.4f}"
    )


def mup_grows_with_depth(table: pd.DataFrame) -> Expectation:
    """muP is a width rule with no depth factor: from the shallower to the deeper net, what
    its branches add grows as under a plain init, more than under depth_scaled. Evidence:
    muP's and default's deep/shallow ratios and levels (muP's hidden weights keep the default
    rms, but its biases keep the base width's, ×sqrt(width/base) the default's)."""
    from initlab.studies.gpt_init import GPT2, MUP

    claim = (
        "at init, muP (a width rule, no depth factor) does not stop what the branches add "
        "from growing with depth: its deep/shallow ratio of rms(h_L − h_0) is above "
        "depth_scaled's"
    )
    lo, hi = _shallowest(table), _deepest(table)
    if lo is None or lo == hi:
        return Expectation(claim, None, "fewer than two depths")
    arms = {
        (d, name): _arm(table, d, init, rule)
        for d in (lo, hi)
        for name, init, rule in (
            ("mup", MUP, "none"),
            ("default", "default", "none"),
            ("scaled", GPT2, "depth_scaled"),
        )
    }
    if any(a is None for a in arms.values()):
        return Expectation(claim, None, "an arm or a second depth is missing")

    def ratio(name: str) -> float:
        return arms[(hi, name)]["added"] / arms[(lo, name)]["added"]

    mup, default, scaled = ratio("mup"), ratio("default"), ratio("scaled")
    return Expectation(
        claim,
        bool(mup > scaled),
        f"depth {lo} → {hi}: ×{mup:.3f} (muP) vs ×{default:.3f} (default) and ×{scaled:.3f} "
        f"(depth_scaled); at depth {hi} muP adds {arms[(hi, 'mup')]['added']:.4g} vs "
        f"{arms[(hi, 'default')]['added']:.4g} (default)",
    )


def mup_loss_measured(table: pd.DataFrame) -> Expectation:
    """At the deeper depth, muP trains (no divergence, loss below ln(vocab) − margin); its
    loss after the budget is reported next to every other arm's, with its rank — no winner is
    predicted (the learning rate was not tuned at the base width)."""
    from initlab.studies.gpt_init import MUP

    claim = (
        "muP (hidden and readout weights' learning rates × base/width, zero readout, 1/d "
        "attention) trains at the deeper depth; its loss after the budget is measured against "
        "the other arms, not predicted"
    )
    depth = _deepest(table)
    mup = _arm(table, depth, MUP, "none") if depth else None
    if mup is None:
        return Expectation(claim, None, "the muP arm is missing")
    at = table[table["depth"] == depth].sort_values("loss")
    others = ", ".join(
        f"{r['init']}+{r['rule']} {r['loss']:.4f}" for _, r in at.iterrows() if r["init"] != MUP
    )
    rank = [r["init"] for _, r in at.iterrows()].index(MUP) + 1
    chance = math.log(int(mup["vocab"]))
    ok = bool(mup["diverged"] == 0 and mup["loss"] < chance - LEARNED_MARGIN)
    return Expectation(
        claim,
        ok,
        f"depth {depth}: muP {mup['loss']:.4f}, rank {rank} of {len(at)} (lowest first); {others}",
    )


def stream_figure(table: pd.DataFrame) -> Image:
    """What the branches add to the stream by each block at init, rms(h_k − h_0), per depth
    and arm (log scale; the stream itself is dominated by the N(0, 1) embeddings)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for _, row in table.iterrows():
        values = row["added_rms"]
        label = f"depth {row['depth']}: {row['init']} + {row['rule']} (loss {row['loss']:.3f})"
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    ax.set(
        title="what the branches add to the residual stream, at init",
        xlabel="block k",
        ylabel="rms(h_k − h_0)",
        yscale="log",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return Image.from_figure(
        "gpt-init",
        fig,
        "rms of what the branches add to the stream by each block at init; final training "
        "loss in the legend",
    )
