"""The residual structure of a model: its branches, their layers, their depth L.

A *residual branch* is the part of a model between a fork and an addition that joins it back
to a *skip path*: ``y = skip(x) + branch(x)``. :func:`find_structure` finds them by tracing
the model with ``torch.fx`` (:mod:`initlab.residual.fx`); where tracing fails (code that
needs real sizes or data), from one run on an example batch when there is one
(:mod:`initlab.residual.run_trace`), else from the modules' names and order
(:mod:`initlab.residual.fallback`), saying so in :attr:`Structure.notes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import fx, nn

from initlab.errors import first_line
from initlab.initializers.fans import WEIGHT_LAYERS

LAYERS = WEIGHT_LAYERS
"""The weight layers a branch counts (the layers :func:`initlab.initialize` acts on)."""


@dataclass
class Branch:
    """One residual branch. Names are ``named_modules`` names.

    ``layers``: its Linear/Conv layers in execution order; ``depths``: each one's place in
    the branch's longest chain of weight layers (1-based; parallel layers share one: a
    SwiGLU's gate and up projections, an attention's q, k and v; empty: ``1..len(layers)``),
    so m = :attr:`chain`;
    ``last_norm``: the normalization layer after its last weight layer, if the branch ends in
    one (a pre-norm transformer's branch starts with its norm: ``None``); ``skip``: the weight
    layers of the skip path (a projection shortcut), empty for the identity; ``output``: the
    module whose output is the branch's contribution to the sum (where a gate goes), ``None``
    when the branch ends in a function rather than a module; ``block``: the module whose
    ``forward`` does the addition; ``attention_inputs``: the ``nn.MultiheadAttention``
    modules whose ``out_proj`` is in ``layers``. Such a module reads its packed input
    projection (q, k, v) itself, so no trace sees it, but it is the layer before ``out_proj``:
    ``depths`` count it (a pre-norm attention branch is m = 2, as a hand-written one);
    ``scores``: see the field.
    """

    index: int
    layers: list[str]
    last_norm: str | None = None
    skip: list[str] = field(default_factory=list)
    output: str | None = None
    block: str = ""
    depths: list[int] = field(default_factory=list)
    attention_inputs: list[str] = field(default_factory=list)
    scores: list[str] = field(default_factory=list)
    """The layers whose outputs reach an attention's softmax (the query and key projections,
    a fused ``qkv`` too): Fixup leaves them as initialized, as T-Fixup does."""
    gates: list[str] = field(default_factory=list)
    """Weight layers that only set a sigmoid gate of the branch (a squeeze-excite's, a GLU's
    gate half; :mod:`initlab.residual.value_path`): not in :attr:`layers`, so neither m
    nor any rule counts them: they keep the hidden layers' scheme."""
    fused: list[str] = field(default_factory=list)
    """Those of :attr:`scores` that reach the attention's values too (one fused ``qkv``
    projection, as nanoGPT's ``c_attn``): Fixup leaves them whole, and says so."""
    dead_if_zeroed: dict[str, str] = field(default_factory=dict)
    """``{module: activation}``: the last weight layer and the last norm that an activation
    flat at 0 follows inside the branch on every way to its output (the ReLU family: f(0) = 0
    and f'(0) = 0; initlab's residual MLP, ``linear → [norm] → relu``, then ``x + h``).
    Zeroed, such a module makes the branch output f(0) = 0 for every input, and every weight
    of the branch gets a gradient carrying the factor f'(0) = 0: the branch never trains,
    under any optimizer. The zero rules leave such a branch as initialized, noted
    (:func:`initlab.residual.rules.apply_residual`). Found from an fx trace or a run
    (:mod:`initlab.residual.fx`); empty for branches guessed from module names
    (:mod:`initlab.residual.fallback`), whose forward is not seen."""

    def depth_of(self, layer: str) -> int:
        """``layer``'s place in the longest chain (1-based)."""
        i = self.layers.index(layer)
        return self.depths[i] if self.depths else i + 1

    @property
    def chain(self) -> int:
        """m: the number of weight layers one after the other on the branch's longest path."""
        return max(self.depths) if self.depths else len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Structure:
    """Every residual branch of a model, how they were found, and what could not be."""

    branches: list[Branch] = field(default_factory=list)
    method: str = "fx"
    notes: list[str] = field(default_factory=list)
    output_layer: str | None = None
    """The model's last Linear/Conv layer outside every branch (Fixup zeroes it)."""

    @property
    def depth(self) -> int:
        """L, the number of residual branches."""
        return len(self.branches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "branches": [b.to_dict() for b in self.branches],
            "depth": self.depth,
            "method": self.method,
            "notes": list(self.notes),
        }

    def role_of(self, module: str) -> str:
        """``"branch k, layer j of m"``, ``"branch k, norm"``, ``"skip projection (branch
        k)"``, ``"branch k, gate"``, ``"output"`` or ``""`` for the module named ``module``
        (1-based k, j)."""
        for b in self.branches:
            if module in b.layers:
                return f"branch {b.index + 1}, layer {b.depth_of(module)} of {b.chain}"
            if module in b.attention_inputs:
                before = b.depth_of(f"{module}.out_proj") - 1
                return f"branch {b.index + 1}, layer {before} of {b.chain} (q, k, v)"
            if module == b.last_norm:
                return f"branch {b.index + 1}, last norm"
            if module in b.skip:
                return f"skip projection (branch {b.index + 1})"
            if module in b.gates:
                return f"branch {b.index + 1}, gate"
            if module == b.output:
                return f"branch {b.index + 1}, output"
        return "output" if module == self.output_layer else ""


def find_structure(model: nn.Module, example: Any = None) -> Structure:
    """The residual branches of ``model``: by ``torch.fx`` when the model traces; else, with
    an ``example`` batch of inputs, from the graph of one run on it
    (:mod:`initlab.residual.run_trace`); else by the fallback heuristics. The notes say
    which, and why."""
    from initlab.residual.fx import fx_structure, trace

    try:
        graph = trace(model)
    except Exception as exc:  # fx raises many kinds on data-dependent code
        why = f"torch.fx could not trace the model ({_first_line(exc)})"
        structure, graph = _untraceable(model, example, why)
    else:
        structure = fx_structure(model, graph)
    structure.output_layer = _output_layer(model, structure, graph)
    _count_attention_inputs(model, structure)
    _separate_outputs(model, structure)
    if not structure.branches:
        structure.notes.append("no residual branch found: residual rules change nothing")
    return structure


def _untraceable(model: nn.Module, example: Any, why: str) -> tuple[Structure, fx.Graph | None]:
    """The structure of a model fx cannot trace, and the graph it came from: from a run on
    ``example``, else guessed (no graph)."""
    from initlab.residual.fallback import fallback_structure
    from initlab.residual.fx import fx_structure
    from initlab.residual.run_trace import run_graph

    if example is not None:
        try:
            graph = run_graph(model, example)
        except Exception as exc:  # the model cannot run on it: guess, and say why
            why += f"; running it on the example batch failed ({_first_line(exc)})"
        else:
            structure = fx_structure(model, graph, method="run")
            structure.notes.insert(0, f"{why}; structure recorded from one run on a batch")
            return structure, graph
    structure = fallback_structure(model)
    hint = "" if example is not None else " (give data to record it from a run)"
    structure.notes.insert(
        0, f"{why}; residual structure guessed from module names and order{hint}"
    )
    return structure, None


def _count_attention_inputs(model: nn.Module, structure: Structure) -> None:
    """Record each branch's ``nn.MultiheadAttention`` input projections and count them as
    the layer before their ``out_proj``: it and every layer after it move one deeper
    (:attr:`Branch.attention_inputs`)."""
    from initlab.compound_layers import is_attention_output

    modules = dict(model.named_modules())
    for b in structure.branches:
        outs = [n for n in b.layers if is_attention_output(n, modules)]
        if outs:
            base = {n: b.depth_of(n) for n in b.layers}
            b.depths = [base[n] + sum(base[o] <= base[n] for o in outs) for n in b.layers]
            b.attention_inputs = [o.rsplit(".", 1)[0] for o in outs]


def _separate_outputs(model: nn.Module, structure: Structure) -> None:
    """Branches of different layers that end in one module (an older timm block passes its
    attention and its MLP through one ``self.drop_path``) would share one SkipInit gate and
    one Fixup scale: each gets its own on its last norm or layer instead (the module after
    it is linear per example, a drop path or dropout). A block called twice (the same
    layers) shares its gate as it shares its weights."""
    from initlab.compound_layers import is_attention_output

    modules = dict(model.named_modules())
    ends: dict[str, list[Branch]] = {}
    for b in structure.branches:
        if b.output is not None:
            ends.setdefault(b.output, []).append(b)
    for output, branches in ends.items():
        if len({tuple(b.layers) for b in branches}) < 2:
            continue
        for b in branches:  # an MHA's out_proj is never called: the attention's output
            own = b.last_norm or b.layers[-1]
            b.output = own.rsplit(".", 1)[0] if is_attention_output(own, modules) else own
        numbers = ", ".join(str(b.index + 1) for b in branches)
        moved = ", ".join(dict.fromkeys(str(b.output) for b in branches))
        structure.notes.append(
            f"branches {numbers} all end in {output}: each branch's gate or Fixup scale goes "
            f"on its own last module instead ({moved})"
        )


def _first_line(exc: Exception) -> str:
    """``"TypeError: ..."``: the exception's first line, at most 160 characters."""
    return first_line(exc)[:160]


def _output_layer(model: nn.Module, structure: Structure, graph: fx.Graph | None) -> str | None:
    """The last Linear/Conv that no branch or skip path owns, in the order ``graph`` uses
    them (registration order without a graph, or when the graph cannot be trusted to show
    it: :func:`initlab.layer_order.trusted_order`)."""
    from initlab.layer_order import registered_layers, trusted_order

    owned = {n for b in structure.branches for n in (*b.layers, *b.skip, *b.gates)}
    registered = registered_layers(model)
    order = (trusted_order(model, graph) if registered else None) or registered
    names = [n for n in order if n not in owned]
    return names[-1] if names else None


def residual_branches(model: nn.Module, example: Any = None) -> list[list[nn.Module]]:
    """The Linear/Conv layers of every residual branch of ``model``, in order (``example``:
    see :func:`find_structure`)."""
    modules = dict(model.named_modules())
    return [[modules[n] for n in b.layers] for b in find_structure(model, example).branches]
