"""Residual rules: applied to every branch of :func:`~initlab.residual.find_structure`,
after the per-layer scheme (L branches; m weight layers one after the other in a branch,
parallel ones counted once: an attention's q, k, v then its output projection is m = 2, as is
a SwiGLU's gate and up then down; :attr:`~initlab.residual.structure.Branch.chain`):

==================  =========================================================================
rule                what it does
==================  =========================================================================
``none``            nothing
``zero_last_layer`` the last Linear/Conv of each branch (weight and bias) = 0: each block is
                    the identity at init (alias ``zero``; SkipInit/Fixup's zero rule)
``zero_last_norm``  the scale of the norm that ends each branch = 0 (torchvision
                    ``zero_init_residual``, timm ``zero_init_last``; Goyal et al. 2017);
                    branches that do not end in a norm are left alone (noted)
(zero rules, fixup) a branch whose zeroed module a ReLU follows inside it (initlab's
                    residual MLP, ``linear → [norm] → relu``, then ``x + h``) has it
                    left as initialized, noted: zeroed it would output relu(0) = 0 and,
                    relu'(0) being 0, pass no gradient to any of its weights, for good
                    (``skipinit``'s gate, after
                    the ReLU, starts at 0 and trains; a ResNet's ``relu(bn2(...) + x)`` is
                    zeroed as ever). :attr:`ResidualResult.kept` lists them
``skipinit``        a learnable scalar ``skipinit_gate`` = 0 multiplies each branch's output
                    (De & Smith 2020; see :mod:`initlab.residual.gates`)
``fixup``           (Zhang et al. 2019) weight layers of each branch but the last × L^(-1/(2m-2)),
                    the last = 0, the output layer = 0; scalars ``fixup_bias_in`` (0) before
                    each branch layer, ``fixup_scale`` (1) and ``fixup_bias`` (0) on each
                    branch's output. One-layer branches (m = 1, initlab's residual MLP):
                    the layer × L^(-1/2) and not zeroed, which keeps E[h_L²] <= e·E[h_0²]
                    for zero-mean branches since (1 + 1/L)^L < e. An
                    ``nn.MultiheadAttention``'s input projection (q, k, v) is the layer
                    before its ``out_proj`` (m = 2 for a pre-norm attention branch, as for a
                    hand-written one) and gets no ``fixup_bias_in``. Layers feeding an
                    attention's softmax (query, key; ``Branch.scores``) are not scaled,
                    as in T-Fixup (Huang et al. 2020): c on both is c² on the logits.
``depth_scaled``    each branch's last layer (its output projection) × 1/sqrt(L): GPT-2's
                    N(0, 0.02/sqrt(2·n_layer)), a transformer having L = 2·n_layer branches
==================  =========================================================================

Multiplying a zero-mean weight by c multiplies its std by c: the rules scale the per-layer
scheme's draw, so they combine with any base init.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab.compound_layers import is_attention_output
from initlab.computed_weights import refuse_computed
from initlab.errors import InitlabError, option
from initlab.notes import note
from initlab.residual.gates import add_fixup_input, add_fixup_output, add_gate
from initlab.residual.names import ADDS_PARAMETERS, canonical_rule
from initlab.residual.structure import Branch, Structure, find_structure


@dataclass
class ResidualResult:
    """What a rule did: the structure it acted on and one line per parameter it changed."""

    rule: str
    structure: Structure
    actions: dict[str, str] = field(default_factory=dict)
    """Parameter name → what the rule did to it (``"zeroed"``, ``"× 0.5"``, ``"added = 0"``)."""
    factors: dict[str, float] = field(default_factory=dict)
    """Parameter name → the factor the rule multiplied an existing tensor by (0: zeroed)."""
    scaled: dict[int, str] = field(default_factory=dict, repr=False)
    """``id`` of each tensor scaled → the parameter name it was scaled under (a weight two
    modules share is scaled once)."""
    kept: list[tuple[int, str, str]] = field(default_factory=list)
    """``(branch index, module, activation)`` for each branch a zero rule left as it was:
    zeroing ``module``, which ``activation`` (the ReLU family) follows inside the branch,
    would have left the branch dead
    (:attr:`~initlab.residual.structure.Branch.dead_if_zeroed`)."""

    def kept_parameters(self) -> dict[str, str]:
        """Parameter name → activation, for the parameters the rule would have zeroed in the
        branches it kept (:attr:`kept`): a last layer's weight and bias, a norm's weight."""
        kinds = ("weight",) if self.rule == "zero_last_norm" else ("weight", "bias")
        return {f"{module}.{k}": act for _, module, act in self.kept for k in kinds}


@torch.no_grad()
def apply_residual(
    model: nn.Module, rule: str, structure: Structure | None = None, example: Any = None
) -> ResidualResult:
    """Apply ``rule`` (module docstring) to every branch of ``model``, in place; ``example``:
    a batch of inputs, for finding the branches of a model fx cannot trace
    (:func:`~initlab.residual.structure.find_structure`)."""
    rule = canonical_rule(rule)
    if structure is None:
        structure = find_structure(model, example) if rule != "none" else Structure(method="none")
    result = ResidualResult(rule, structure)
    if rule == "none":
        return result
    if not structure.branches:
        _note_unchanged(model, result)
        return result
    modules = dict(model.named_modules())
    _refuse_computed(structure, rule, modules)
    if rule in ADDS_PARAMETERS:
        _check_outputs(structure, rule)
    for branch in structure.branches:
        APPLY[rule](branch, modules, structure.depth, result)
    if rule == "fixup" and structure.output_layer:
        _zero_readout(model, structure.output_layer, modules, result)
    if rule in ("depth_scaled", "fixup"):
        _note_normalized(structure, rule)
    if rule in ("depth_scaled", "zero_last_layer"):
        _note_bare_weights(structure, rule, modules)
    if result.kept:
        _note_kept(result)
    elif not result.actions:
        _note_unchanged(model, result)
    if structure.method == "fallback" and result.actions:
        note(
            f"residual rule '{rule}' applied to branches guessed from module names "
            f"({structure.depth} found; a block with two additions is read as one branch "
            f"unless its layers sit in attention and feed-forward children): pass "
            f"{option('--data', 'data=')} to record them from one run ("
            f"{option('initlab plan', 'initlab.plan')} lists the branches it finds)"
        )
    return result


def _note_unchanged(model: nn.Module, result: ResidualResult) -> None:
    """A rule that found nothing to change says so: its runs equal rule ``none``."""
    if not result.structure.branches:
        why = "no residual branch was found"
    elif result.rule == "zero_last_norm":
        why = (
            "no residual branch ends in a normalization layer (a pre-norm block's norm starts "
            "its branch; a post-norm block's follows the sum)"
        )
    else:
        why = "no parameter of its branches was one the rule sets"
    note(
        f"residual rule '{result.rule}' changes nothing in {type(model).__name__}: {why}; "
        "it equals residual 'none' here (initlab plan shows the branches)"
    )


def _note_kept(result: ResidualResult) -> None:
    """One line for the branches a zero rule left as they were (:attr:`ResidualResult.kept`),
    saying too when the rule therefore changed nothing (it then equals ``none``)."""
    index, module, activation = result.kept[0]
    n, depth = len(result.kept), result.structure.depth
    which = f"all {depth}" if n == depth else f"{n} of {depth}"
    more = f"; {n - 1} more alike" if n > 1 else ""
    same = "" if result.actions else "; here the rule equals residual 'none'"
    kept = "leaves" if result.rule != "fixup" else "does not zero the last layer of"
    note(
        f"residual rule '{result.rule}' {kept} {which} branches as initialized (branch "
        f"{index + 1}: {activation} follows {module}, the module it zeroes{more}): zeroed, "
        "such a branch would output relu(0) = 0 and, relu'(0) being 0, pass no gradient to "
        "any of its weights, so it would never train; residual 'skipinit' (a gate = 0 after "
        f"the ReLU, which trains) makes such branches the identity at init{same}"
    )


def _kills(b: Branch, module: str, result: ResidualResult) -> bool:
    """Whether zeroing ``module`` of branch ``b`` would leave the branch dead (a ReLU follows
    it inside the branch: :attr:`~initlab.residual.structure.Branch.dead_if_zeroed`); such
    a branch is recorded in :attr:`ResidualResult.kept`."""
    activation = b.dead_if_zeroed.get(module)
    if activation is not None:
        result.kept.append((b.index, module, activation))
    return activation is not None


def _note_normalized(structure: Structure, rule: str) -> None:
    """A branch whose last layer a norm follows (a ResNet's ``conv2 → bn2``) rescales its
    output to the norm's own scale in training: ``depth_scaled``'s × 1/√L there changes
    nothing the next layer sees (Fixup, made for networks without norms, loses its
    scaling the same way); ``zero_last_norm`` is the rule for such branches."""
    normed = [b for b in structure.branches if b.last_norm]
    if not normed:
        return
    n, depth = len(normed), structure.depth
    which = f"all {depth}" if n == depth else f"{n} of {depth}"
    note(
        f"residual rule '{rule}': {which} branches end in a norm "
        f"({normed[0].last_norm}{', ...' if len(normed) > 1 else ''}), which rescales the "
        f"branch in training and undoes the rule's scaling; zero_last_norm sets such "
        "branches to zero at init"
    )


def _note_bare_weights(structure: Structure, rule: str, modules: dict[str, nn.Module]) -> None:
    """A branch that ends in a function call (``F.linear(h, self.w2)``) inside a block that
    holds a bare weight matrix: the rule sets the branch's last *module* (``fc1``, before the
    activation), not that weight, which may be the branch's real last layer."""
    found = []
    for b in structure.branches:
        block = modules.get(b.block)
        if b.output is not None or b.last_norm or block is None or not b.layers:
            continue
        bare = [  # a matrix, not a position table or a class token ([1, N, d], [1, d])
            n for n, p in block.named_parameters(recurse=False) if p.dim() == 2 and min(p.shape) > 1
        ]
        if bare:
            found.append((b, bare))
    if not found:
        return
    b, bare = found[0]
    which = f"{len(found)} of {structure.depth} branches"
    note(
        f"residual rule '{rule}': {which} end in a function call, and "
        f"{b.block or '(model)'} holds the bare weight {bare[0]} ({b.layers[-1]} is the last "
        f"module the rule sets, so it may not act on the branch's last layer); make that "
        "weight an nn.Linear for the rule to reach it"
    )


def apply_residual_rule(model: nn.Module, rule: str) -> int:
    """Apply ``rule`` to every residual branch; the number of branches changed."""
    result = apply_residual(model, rule)
    return structure_count(result)


def structure_count(result: ResidualResult) -> int:
    return 0 if result.rule == "none" else result.structure.depth


WRITES: dict[str, Callable[[Branch], list[str]]] = {
    "zero_last_layer": lambda b: b.layers[-1:],
    "depth_scaled": lambda b: b.layers[-1:],
    "fixup": lambda b: [*(n for n in b.layers if n not in b.scores), *b.attention_inputs],
    "zero_last_norm": lambda b: [b.last_norm] if b.last_norm else [],
    "skipinit": lambda b: [],
}
"""Each rule's modules whose weights it writes in a branch (fixup: the output layer too)."""


def _refuse_computed(structure: Structure, rule: str, modules: dict[str, nn.Module]) -> None:
    """A module the rule would write whose weight is computed from other tensors
    (parametrized, or a hook-based ``weight_norm``/``spectral_norm``) → one line before any
    change: zeroing or scaling it would change nothing the next forward pass sees."""
    names = [n for b in structure.branches for n in WRITES[rule](b)]
    if rule == "fixup" and structure.output_layer:
        names.append(structure.output_layer)
    for name in dict.fromkeys(names):
        refuse_computed(name, modules[name], instead="use residual 'none'")


def _check_outputs(structure: Structure, rule: str) -> None:
    missing = [b.index + 1 for b in structure.branches if b.output is None]
    if missing:
        raise InitlabError(
            f"residual rule '{rule}' needs each branch to end in a module, but branches "
            f"{missing} end in a function call: end them in a module (e.g. nn.Identity())"
        )


def _scale(name: str, modules: dict[str, nn.Module], c: float, result: ResidualResult) -> None:
    _scale_tensor(f"{name}.weight", modules[name].weight, c, result)


def _scale_tensor(name: str, tensor: torch.Tensor, c: float, result: ResidualResult) -> None:
    """``tensor`` × ``c``, once: a block called twice (weights shared across depth) is two
    branches of the same layers, and each counts in L, but its weights are one tensor that
    the rule scales once, by the factor of L; so is a weight two modules share (ALBERT's
    blocks), recorded under each name with the one factor it got."""
    if name in result.factors:
        return
    first = result.scaled.get(id(tensor))
    if first is not None:
        result.actions[name] = f"{result.actions[first]} (tied to {first})"
        result.factors[name] = result.factors[first]
        return
    tensor.mul_(c)
    result.scaled[id(tensor)] = name
    result.actions[name] = f"× {c:.4g}"
    result.factors[name] = c


def _zero(name: str, modules: dict[str, nn.Module], result: ResidualResult) -> None:
    for kind in ("weight", "bias"):
        tensor = getattr(modules[name], kind, None)
        if tensor is not None:
            tensor.zero_()
            result.actions[f"{name}.{kind}"] = "zeroed"
            result.factors[f"{name}.{kind}"] = 0.0


def _zero_readout(
    model: nn.Module, name: str, modules: dict[str, nn.Module], result: ResidualResult
) -> None:
    """Fixup's zero output layer, except a weight tied to another module (a language model's
    readout sharing its token embedding): zeroing it would zero the embedding too, so every
    token would enter as the same zero vector. Its bias is zeroed; the weight is kept, noted."""
    weight = getattr(modules[name], "weight", None)
    shared = [
        n for n, p in model.named_parameters(remove_duplicate=False)
        if p is weight and n != f"{name}.weight"
    ]  # fmt: skip
    if weight is None or not shared:
        _zero(name, modules, result)
        return
    if getattr(modules[name], "bias", None) is not None:
        modules[name].bias.zero_()
        result.actions[f"{name}.bias"] = "zeroed"
        result.factors[f"{name}.bias"] = 0.0
    note(
        f"fixup: the output layer {name}'s weight is tied to {shared[0]}; zeroing it would "
        "zero that table too (every input the same), so it keeps its init: untie them for "
        "Fixup's zero readout"
    )


def _zero_last_layer(b: Branch, modules: dict, depth: int, result: ResidualResult) -> None:
    if not _kills(b, b.layers[-1], result):
        _zero(b.layers[-1], modules, result)


def _zero_last_norm(b: Branch, modules: dict, depth: int, result: ResidualResult) -> None:
    norm = modules.get(b.last_norm) if b.last_norm else None
    if norm is None or getattr(norm, "weight", None) is None:
        result.structure.notes.append(
            f"zero_last_norm: branch {b.index + 1} does not end in a norm with a scale: unchanged"
        )
        return
    if _kills(b, b.last_norm, result):
        return
    norm.weight.zero_()
    result.actions[f"{b.last_norm}.weight"] = "zeroed"
    result.factors[f"{b.last_norm}.weight"] = 0.0


def _skipinit(b: Branch, modules: dict, depth: int, result: ResidualResult) -> None:
    add_gate(modules[b.output])
    result.actions[f"{b.output}.skipinit_gate"] = "added = 0"


def _scale_attention_values(name: str, modules: dict, c: float, result: ResidualResult) -> None:
    """``nn.MultiheadAttention`` ``name``'s value projection × ``c``: ``v_proj_weight``, or
    the last third of the packed ``in_proj_weight`` (rows ``2E:3E``, whose std then moves
    by ``sqrt((2 + c²)/3)``, the factor recorded). Its query and key stay as initialized:
    scaling both by c would scale the attention logits by c² (T-Fixup scales only values)."""
    attention = modules[name]
    if attention.in_proj_weight is not None:
        key = f"{name}.in_proj_weight"
        if key not in result.factors:
            attention.in_proj_weight[2 * attention.embed_dim :].mul_(c)
            result.actions[key] = f"values' rows × {c:.4g}"
            result.factors[key] = ((2 + c * c) / 3) ** 0.5
    elif attention.v_proj_weight is not None:
        _scale_tensor(f"{name}.v_proj_weight", attention.v_proj_weight, c, result)


def _fixup(b: Branch, modules: dict, depth: int, result: ResidualResult) -> None:
    m = b.chain  # layers one after the other: a SwiGLU's parallel gate and up count once
    for name in b.layers:
        if m == 1:
            _scale(name, modules, depth**-0.5, result)
        elif b.depth_of(name) == m:
            if not _kills(b, name, result):  # a ReLU after it: left as initialized
                _zero(name, modules, result)
        elif name not in b.scores:  # a query or key projection stays (T-Fixup's choice)
            _scale(name, modules, depth ** (-1.0 / (2 * m - 2)), result)
    for attention in b.attention_inputs:  # v: the layer before out_proj, never last
        _scale_attention_values(attention, modules, depth ** (-1.0 / (2 * m - 2)), result)
    if b.fused and not any("(a fused projection)" in n for n in result.structure.notes):
        result.structure.notes.append(
            f"fixup: {b.fused[0]} computes the attention's queries or keys and its values (a "
            "fused projection): left as initialized, since scaling its query and key rows "
            "would shrink the attention logits; T-Fixup would scale only its value rows"
        )
    for name in b.layers:
        if is_attention_output(name, modules):
            continue  # no hook on it fires: a bias there would never be added nor trained
        add_fixup_input(modules[name])
        result.actions[f"{name}.fixup_bias_in"] = "added = 0"
    add_fixup_output(modules[b.output])
    result.actions[f"{b.output}.fixup_scale"] = "added = 1"
    result.actions[f"{b.output}.fixup_bias"] = "added = 0"


def _depth_scaled(b: Branch, modules: dict, depth: int, result: ResidualResult) -> None:
    _scale(b.layers[-1], modules, depth**-0.5, result)


APPLY = {
    "zero_last_layer": _zero_last_layer,
    "zero_last_norm": _zero_last_norm,
    "skipinit": _skipinit,
    "fixup": _fixup,
    "depth_scaled": _depth_scaled,
}
