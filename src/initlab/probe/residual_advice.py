"""The residual rules a suggestion names, read off the probe's frame.

Per-layer schemes cannot stop a residual stream without norms from growing: each branch adds
its own variance, so the stream's grows by ``1 + v_branch / v_stream`` per block (``2^L``
for unit-gain branches), and the remedy is a residual rule (:func:`residual_advice`).

Which rules (:func:`rules_to_try`): the zero rules (``zero_last_layer``, ``zero_last_norm``)
make a branch the identity at init by zeroing its last layer (or its last norm's scale).
Where a ReLU follows that module inside the branch (``linear → [norm] → relu``, then
``x + h``: initlab's residual MLP), a zeroed branch outputs relu(0) = 0 and every weight of
it gets a gradient carrying relu'(0) = 0: it would never train, so the zero rules leave such
branches as drawn (:attr:`initlab.residual.structure.Branch.dead_if_zeroed`, the frame's
``branch_dead_if_zeroed`` column). Where a ReLU ends every branch, a suggestion names no
zero rule: ``skipinit`` instead (its gate, after the ReLU, starts at 0 and trains), and
``fixup`` only where every such branch has one layer (it scales that layer; the last layer
of a longer branch it zeroes). Where a ReLU ends some branches only, it says which share.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from initlab.residual.names import ZERO_RULES

DEAD = "branch_dead_if_zeroed"
"""The frame's column: the activation that a zero rule's zeroed module would feed 0
(``"blocks.0.act (ReLU)"``) in each row of such a branch; NaN elsewhere."""


def relu_ended(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The last-layer rows of the branches a ReLU ends (module docstring), and the number of
    branches in ``frame``."""
    if "branch" not in frame or DEAD not in frame:
        return frame.iloc[0:0], 0
    last = frame[frame["branch_layer"] == frame["branch_size"] - 1]
    return last[last[DEAD].notna()], int(frame["branch"].nunique())


def rules_to_try(frame: pd.DataFrame, rules: Sequence[str], also: str = "") -> str:
    """``"--residual-init a, b or c"`` naming ``rules`` for the model of ``frame``, then
    ``also`` (a hint on a zero rule: ``"zero_last_norm when a branch ends in a norm"``).
    Where a ReLU ends every branch: no zero rule, ``also`` left out, ``skipinit`` first and
    ``fixup`` only for one-layer branches, and why; where it ends some branches only,
    ``rules`` and how many (module docstring)."""
    dead, count = relu_ended(frame)
    named = f"--residual-init {_either(rules)}" + (f"; {also}" if also else "")
    if dead.empty:
        return named
    first = f"{dead[DEAD].iloc[0]} after {dead['layer'].iloc[0]}"
    why = "zeroed, relu(0) = 0 and relu'(0) = 0 would keep them from training"
    if len(dead) < count:
        return (
            f"{named}; {len(dead)} of {count} branches end in a ReLU ({first}), which the "
            f"zero rules leave as drawn ({why}): skipinit starts every branch at 0"
        )
    single = bool((dead["branch_size"] == 1).all())
    kept = [r for r in rules if r not in (*ZERO_RULES, "skipinit") and (single or r != "fixup")]
    return (
        f"--residual-init {_either(['skipinit', *kept])}, not {' or '.join(ZERO_RULES)}: "
        f"a ReLU ends every branch ({first}), so the zero rules leave the branches as "
        f"drawn ({why})"
    )


def _either(names: Sequence[str]) -> str:
    """``"a, b or c"``."""
    names = list(dict.fromkeys(names))
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def residual_advice(frame: pd.DataFrame) -> str:
    """For a residual model whose branches all start at full scale: the branches' outputs
    add up with depth (the stream's variance grows by a factor ``1 + v_branch / v_stream``
    per block, ``2^L`` for unit-gain branches without normalization), so the remedy is a
    residual rule (:func:`rules_to_try`), whatever the gain rule says of each layer. Empty
    when the model has fewer than two branches or a rule already zeroed the branches' last
    layers."""
    if "branch" not in frame or frame["branch"].nunique() < 2:
        return ""
    last = frame[frame["branch_layer"] == frame["branch_size"] - 1]
    if (last["weight_std"].fillna(1) == 0).any():
        return ""
    count = int(frame["branch"].nunique())
    norm = "zero_last_norm when a branch ends in a norm"
    rules = rules_to_try(frame, ("fixup", "skipinit", "zero_last_layer"), also=norm)
    return (
        f"the model's {count} residual branches add to the stream at full scale, so the "
        f"signal grows with depth whatever each layer's init: apply a residual rule "
        f"({rules}; initialize(..., residual_init=...); docs/residual.md)"
    )
