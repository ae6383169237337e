"""The ``resnet-depth`` study's measurements, checks and figure.

The signal profile at init is measured directly: each arm's network is built and initialized
as its runs were (seed 0), a batch of :data:`PROFILE_BATCH` training images goes through it,
and the rms of every residual block's output, ``sqrt(mean(h²))``, is recorded, with the norm
of the loss gradient on the first weight layer (the stem convolution).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from initlab.report.model import Image
from initlab.residual.structure import LAYERS
from initlab.studies.base import Expectation, StudyContext

CHANCE_LOSS = math.log(10)
"""Cross-entropy of a uniform guess over 10 classes: a run whose loss stays here learned nothing."""
LEARNED_MARGIN = 0.05
"""A run "trains" when its final training loss is below ``CHANCE_LOSS − LEARNED_MARGIN``."""
HARMLESS_MARGIN = 0.1
"""With BN, zero_last_norm is "harmless" when its loss exceeds plain BN's by at most this."""
GROWTH_MIN = 2.0
"""Plain He: the last block's output rms at the deepest depth is at least this × the shallowest."""
PROFILE_BATCH = 256
KEYS = ["depth", "norm", "rule"]


def model_args_of(row: pd.Series) -> dict:
    """A run row's ``model_args`` as a dict (the store keeps them as JSON text)."""
    args = row["model_args"]
    return json.loads(args) if isinstance(args, str) else dict(args)


def arm_table(ctx: StudyContext, keys: list[str], batch: int) -> tuple[pd.DataFrame, list]:
    """Per arm (``keys``, from ``depth`` = ``model_args.depth``, ``norm`` =
    ``model_args.norm``, ``rule`` = ``residual_init`` and the run columns): mean final training
    loss (``nan`` if every run diverged), test accuracy, runs, diverged runs; and each arm's
    :func:`init_profile` on the first ``batch`` training examples."""
    runs = ctx.runs
    if runs.empty:
        return pd.DataFrame(), []
    frame = runs.assign(
        depth=runs["model_args.depth"].astype(int),
        rule=runs["residual_init"],
        diverged=runs["status"] == "diverged",
    )
    if "norm" in keys:
        frame["norm"] = runs["model_args.norm"].astype(bool)
    table = (
        frame.groupby(keys)
        .agg(
            loss=("final_train_loss", "mean"),
            accuracy=("test_accuracy", "mean"),
            n=("run_id", "size"),
            diverged=("diverged", "sum"),
        )
        .reset_index()
    )
    first = frame.groupby(keys).head(1).set_index(keys, drop=False)
    data = ctx.dataset(str(runs["dataset"].iloc[0]))
    x, y = data.x_train[:batch], data.y_train[:batch]
    profiles = []
    for _, row in table.iterrows():
        source = first.loc[tuple(row[k] for k in keys)]
        args = model_args_of(source)
        profiles.append(init_profile(source["model"], args, source["init"], row["rule"], x, y))
    return table, profiles


def rule_table(ctx: StudyContext) -> pd.DataFrame:
    """:func:`arm_table` per (depth, norm, rule), with each arm's block rms at init."""
    table, profiles = arm_table(ctx, KEYS, PROFILE_BATCH)
    if table.empty:
        return table
    table["block_rms"] = [p.block_rms for p in profiles]
    table["last_rms"] = [p.block_rms[-1] if p.block_rms else math.nan for p in profiles]
    table["stem_grad"] = [p.grad_norm for p in profiles]
    return table


@dataclass(frozen=True)
class Profile:
    """A network at init on one batch: ``block_rms[k]`` = rms of block k's output;
    ``added_rms[k]`` = rms(h_k − h_0), what the branches up to block k added to the stream
    entering the first block (``nan`` where the shapes differ: a ResNet's stages);
    ``grad_norm``: norm of the loss gradient on the first weight layer."""

    block_rms: list[float]
    added_rms: list[float]
    grad_norm: float


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt())


def init_profile(
    model_spec: str, model_args: dict, init: str, rule: str, x: torch.Tensor, y: torch.Tensor
) -> Profile:
    """The :class:`Profile` of ``model_spec(**model_args)`` with ``init`` and the residual
    ``rule`` applied (seed 0), on the batch ``(x, y)``."""
    from initlab.apply import initialize
    from initlab.models import build_user_model
    from initlab.residual import find_structure

    torch.manual_seed(0)
    model = build_user_model(model_spec, model_args)
    initialize(model, init, generator=torch.Generator().manual_seed(0), residual_init=rule)
    blocks = list(dict.fromkeys(b.block for b in find_structure(model).branches))
    seen: list[torch.Tensor] = []
    hooks = [
        model.get_submodule(n).register_forward_hook(lambda _m, _i, o: seen.append(o.detach()))
        for n in blocks
    ]
    if blocks:
        first = model.get_submodule(blocks[0])
        hooks.append(
            first.register_forward_pre_hook(
                lambda _m, args: seen.insert(0, args[0].detach()) if not seen else None
            )
        )
    stem = next(m for m in model.modules() if isinstance(m, LAYERS))
    try:
        out = model(x)  # [B, classes], or [B, T, vocab] for a sequence model
        loss = nn.functional.cross_entropy(out.flatten(0, -2), y.flatten())
        (grad,) = torch.autograd.grad(loss, stem.weight)
    finally:
        for hook in hooks:
            hook.remove()
    h0, outs = (seen[0], seen[1:]) if seen else (None, [])
    added = [_rms(h - h0) if h0 is not None and h.shape == h0.shape else math.nan for h in outs]
    return Profile([_rms(h) for h in outs], added, float(grad.norm()))


def _arm(table: pd.DataFrame, depth: int, norm: bool, rule: str) -> pd.Series | None:
    rows = table[(table["depth"] == depth) & (table["norm"] == norm) & (table["rule"] == rule)]
    return rows.iloc[0] if len(rows) else None


def _trained(row: pd.Series) -> bool:
    return bool(row["diverged"] < row["n"] and row["loss"] < CHANCE_LOSS - LEARNED_MARGIN)


def _loss_text(row: pd.Series) -> str:
    div = f", {int(row['diverged'])}/{int(row['n'])} diverged" if row["diverged"] else ""
    return f"loss {row['loss']:.3f}{div}"


def signal_grows_with_depth(table: pd.DataFrame) -> Expectation:
    """Without norm and rule, the last block's output rms grows with depth; Fixup's is smaller."""
    claim = (
        "without normalization, He init lets the residual stream grow with depth: the last "
        f"block's output rms at the deepest net ≥ {GROWTH_MIN:g}× the shallowest's, and Fixup's "
        "is smaller than He's"
    )
    depths = sorted(table["depth"].unique()) if not table.empty else []
    if len(depths) < 2:
        return Expectation(claim, None, "fewer than two depths")
    lo, hi = (_arm(table, d, False, "none") for d in (depths[0], depths[-1]))
    fix = _arm(table, depths[-1], False, "fixup")
    if lo is None or hi is None or fix is None:
        return Expectation(claim, None, "an arm is missing")
    ratio = hi["last_rms"] / lo["last_rms"]
    ok = bool(ratio >= GROWTH_MIN and fix["last_rms"] < hi["last_rms"])
    evidence = (
        f"He: depth {depths[0]} rms {lo['last_rms']:.3g}, depth {depths[-1]} rms "
        f"{hi['last_rms']:.3g} (×{ratio:.3g}); Fixup at depth {depths[-1]}: {fix['last_rms']:.3g}"
    )
    return Expectation(claim, ok, evidence)


def plain_fails_deepest(table: pd.DataFrame) -> Expectation:
    """The deepest unnormalized net with plain He does not train (diverges or stays at chance),
    where the setup can train: a failure counts only when a reference trained (another arm at
    that depth, or the same plain arm at the shallowest depth, if shallower), so that it is
    due to depth and init, not to a learning rate or data that stop every arm. Undecided
    when the plain arm fails and no reference trained."""
    claim = (
        "the deepest network without normalization and without a residual rule fails to train "
        f"(diverges, or its training loss stays above ln 10 − {LEARNED_MARGIN}) where another "
        "arm at that depth, or the same arm at the shallowest depth, trains"
    )
    if table.empty:
        return Expectation(claim, None, "no runs")
    depth, shallow = int(table["depth"].max()), int(table["depth"].min())
    row = _arm(table, depth, False, "none")
    if row is None:
        return Expectation(claim, None, "the arm is missing")
    evidence = f"depth {depth}: {_loss_text(row)}"
    if _trained(row):
        return Expectation(claim, False, evidence)
    references = [
        (f"{'BN' if r['norm'] else 'no norm'} {r['rule']} at depth {depth}", r)
        for _, r in table[table["depth"] == depth].iterrows()
        if bool(r["norm"]) or r["rule"] != "none"
    ]
    first = _arm(table, shallow, False, "none") if shallow < depth else None
    references += [(f"the same arm at depth {shallow}", first)] if first is not None else []
    trained = [name for name, r in references if _trained(r)]
    if not trained:
        return Expectation(
            claim, None, f"{evidence}; no reference trained (no other arm at depth {depth}"
            f"{f', nor this arm at depth {shallow}' if first is not None else ''}): the setup "
            "may stop every arm, so the failure cannot be put down to depth and init"
        )  # fmt: skip
    return Expectation(claim, True, f"{evidence}; trained: {', '.join(trained)}")


def fixup_trains_deepest(table: pd.DataFrame) -> Expectation:
    """Fixup trains the deepest unnormalized net (SkipInit and zero_last_layer reported)."""
    claim = (
        f"Fixup trains the deepest network without normalization (loss below ln 10 − "
        f"{LEARNED_MARGIN}, no divergence); SkipInit and zero_last_layer shown alongside"
    )
    if table.empty:
        return Expectation(claim, None, "no runs")
    depth = int(table["depth"].max())
    rows = {r: _arm(table, depth, False, r) for r in ("fixup", "skipinit", "zero_last_layer")}
    if rows["fixup"] is None:
        return Expectation(claim, None, "the arm is missing")
    text = "; ".join(f"{r}: {_loss_text(row)}" for r, row in rows.items() if row is not None)
    return Expectation(claim, _trained(rows["fixup"]), f"depth {depth}: {text}")


def bn_zero_last_norm_harmless(table: pd.DataFrame) -> Expectation:
    """With BN, zero_last_norm's loss is within :data:`HARMLESS_MARGIN` of plain BN's at every
    depth where plain BN trained (:func:`_trained`): "costs nothing" means nothing against a
    reference that learned nothing, so a depth where plain BN did not train cannot decide.
    Not reproduced if any decided depth fails; reproduced only if every depth decides."""
    claim = (
        "with batch norm, zeroing each branch's last norm scale costs nothing: its training loss "
        f"is at most {HARMLESS_MARGIN} above plain batch norm's at every depth (where plain "
        f"batch norm trains: loss below ln 10 − {LEARNED_MARGIN})"
    )
    parts, oks, untrained = [], [], []
    for depth in sorted(table["depth"].unique()) if not table.empty else []:
        plain, zero = _arm(table, depth, True, "none"), _arm(table, depth, True, "zero_last_norm")
        if plain is None or zero is None:
            continue
        parts.append(f"depth {depth}: {_loss_text(plain)} vs {_loss_text(zero)}")
        if not _trained(plain):  # the reference learned nothing: no cost can be measured
            oks.append(None)
            untrained.append(str(depth))
            continue
        oks.append(bool(zero["diverged"] == 0 and zero["loss"] <= plain["loss"] + HARMLESS_MARGIN))
    if not oks:
        return Expectation(claim, None, "no depth has both batch-norm arms")
    evidence = "; ".join(parts) + " (plain vs zero_last_norm)"
    if False in oks:
        return Expectation(claim, False, evidence)
    if None in oks:
        return Expectation(
            claim, None, f"{evidence}; the reference, plain batch norm, did not train at depth "
            f"{', '.join(untrained)}: no cost can be measured against a net that learned nothing"
        )  # fmt: skip
    return Expectation(claim, True, evidence)


def profile_figure(table: pd.DataFrame) -> Image:
    """Left: block output rms at init along the deepest net, per arm. Right: final training
    loss against depth, per arm (diverged runs marked at the top)."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    deepest = int(table["depth"].max())
    for (norm, rule), rows in table.groupby(["norm", "rule"]):
        label = f"{'BN' if norm else 'no norm'}, {rule}"
        row = rows[rows["depth"] == deepest]
        if len(row) and row.iloc[0]["block_rms"]:
            values = row.iloc[0]["block_rms"]
            left.plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
        loss = rows["loss"].fillna(CHANCE_LOSS * 1.5).clip(upper=CHANCE_LOSS * 1.5)
        right.plot(rows["depth"], loss, marker="o", label=label)
    left.set(yscale="log", title=f"block output rms at init, depth {deepest}", xlabel="block")
    left.set_ylabel("rms")
    right.axhline(CHANCE_LOSS, ls="--", color="grey", lw=1, label="ln 10 (chance)")
    right.set(title="training loss after the budget", xlabel="depth", ylabel="final training loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=7)
    return Image.from_figure(
        "resnet-depth",
        fig,
        "Residual stream at init and training loss after a fixed budget, per depth and scheme",
    )
