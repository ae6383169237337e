"""Residual branches from a ``torch.fx`` trace.

For every addition ``a + b`` of two traced values, the *fork* is their latest common ancestor
in the graph. Each side's path is the set of nodes between the fork and that operand. A side
with Linear/Conv layers is a branch; the other side (the fork itself, or a projection) is the
skip path. The branch is the side with more weight layers; on a tie, the side with a
nonlinearity or, failing that, the second operand. Additions whose sides hold no weight layer
(``tok_emb + pos_emb``, a bias) are not residual.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from initlab.norm_layers import is_norm
from initlab.preserve import preserved
from initlab.residual.structure import LAYERS, Branch, Structure
from initlab.residual.value_path import gate_layers

ADDS = {operator.add, operator.iadd, torch.add}


COMPOSITES = (
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)
"""``torch.nn`` modules whose residual additions are inside them: opened, not leaves."""


class LayerTracer(fx.Tracer):
    """fx's tracer, with every weight layer and norm a leaf — subclasses too (fx's default
    traces through a ``nn.Linear`` subclass defined outside ``torch.nn``, and the branch
    would then seem to have no layers) — and ``torch.nn``'s transformer layers opened
    (:data:`COMPOSITES`: fx's default keeps every ``torch.nn`` module whole, and their two
    residual branches per layer would not be seen)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, COMPOSITES):
            return False
        return isinstance(m, LAYERS) or is_norm(m) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.Graph:
    """Trace ``model`` with :class:`LayerTracer`; raises whatever fx raises on untraceable
    code. Tracing runs the forward's Python code, which may write the real buffers (``if
    self.training: self.count += 1``): the model is left as it was
    (:func:`initlab.preserve.preserved`, in its current modes)."""
    with preserved(model, "current"):
        return LayerTracer().trace(model)


def _is_add(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in ADDS:
        return True
    return node.op == "call_method" and node.target in ("add", "add_")


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def fx_structure(model: nn.Module, graph: fx.Graph, method: str = "fx") -> Structure:
    """Every residual addition of ``graph`` (traced from ``model`` by fx, or recorded by
    :func:`initlab.residual.run_trace.run_graph`) as a :class:`Branch`."""
    modules = dict(model.named_modules())
    order = {node: i for i, node in enumerate(graph.nodes)}
    structure = Structure(method=method)
    adds, paths = [], []  # each branch's addition, and the nodes of its branch side
    for node in graph.nodes:
        if not _is_add(node) or len(node.args) < 2:
            continue
        a, b = node.args[0], node.args[1]
        if not isinstance(a, fx.Node) or not isinstance(b, fx.Node):
            continue
        found = _branch_of(a, b, modules, order)
        if found is not None:
            branch, path = found
            branch.index = len(structure.branches)
            stack = node.meta.get("nn_module_stack") or {}
            branch.block = next(reversed(stack)) if stack else ""
            structure.branches.append(branch)
            adds.append(node)
            paths.append(path)
    _unnest(structure, adds, paths)
    return structure


def _unnest(structure: Structure, adds: list[fx.Node], paths: list[set[fx.Node]]) -> None:
    """A branch around other residual blocks (``h + b2(b1(h))``, b1 and b2 residual, or one
    block called twice, ``h + blk(blk(h))``: the other additions lie on its branch side)
    keeps only its own layers: the inner branches' layers are theirs, so no rule scales them
    twice. A branch left with no layer of its own is not one: it is dropped, noted, and L
    counts the inner branches (its output is an addition, where no rule could act anyway)."""
    kept: list[Branch] = []
    for i, b in enumerate(structure.branches):
        inner = {
            n for j, o in enumerate(structure.branches)
            if j != i and adds[j] in paths[i] for n in (*o.layers, *o.gates)
        }  # fmt: skip
        if inner:
            own = [i for i, n in enumerate(b.layers) if n not in inner]
            if not own:
                structure.notes.append(
                    f"the residual addition in {b.block or 'the model'} adds a path made only "
                    f"of residual blocks ({', '.join(b.layers)}): counted as those blocks"
                )
                continue
            depths = [b.depth_of(b.layers[i]) for i in own]
            rank = {d: r for r, d in enumerate(sorted(set(depths)), 1)}
            b.layers, b.depths = [b.layers[i] for i in own], [rank[d] for d in depths]
            b.gates = [n for n in b.gates if n not in inner]
        b.index = len(kept)
        kept.append(b)
    structure.branches = kept


def _output_module(op: fx.Node) -> str | None:
    """The module whose output the branch adds: the one called last, the one whose first
    output is taken (``self.attn(x, x, x)[0]``: ``nn.MultiheadAttention`` returns a tuple),
    or the submodule whose ``forward`` returns the function call ``op`` (a squeeze-excite
    module's ``x * gate``: ``op`` runs inside it and only code outside it reads ``op``);
    ``None`` for a function call of the block's own code (the rules that hook an output
    need a module)."""
    if op.op == "call_module":
        return str(op.target)
    if op.op == "call_function" and op.target is operator.getitem and op.args[1] == 0:
        source = op.args[0]
        if isinstance(source, fx.Node) and source.op == "call_module":
            return str(source.target)
    stack = op.meta.get("nn_module_stack") or {}
    inner = next(reversed(stack), None) if len(stack) > 1 else None
    if inner and op.users and all(inner not in _stack(user) for user in op.users):
        name = stack[inner][0] if isinstance(stack[inner], tuple) else inner
        return str(name)  # the module's name: fx keys a second call of it "name@1"
    return None


def _stack(node: fx.Node) -> dict:
    return node.meta.get("nn_module_stack") or {}


def _branch_of(
    a: fx.Node, b: fx.Node, modules: dict[str, nn.Module], order: dict[fx.Node, int]
) -> tuple[Branch, set[fx.Node]] | None:
    """The branch joined by ``a + b``, and the nodes of its branch side."""
    up_a, up_b = _ancestors(a) | {a}, _ancestors(b) | {b}
    common = up_a & up_b
    if not common:
        return None
    fork = max(common, key=order.__getitem__)
    before = _ancestors(fork) | {fork}
    sides = []
    for operand, up in ((a, up_a), (b, up_b)):
        path = sorted(up - before, key=order.__getitem__)
        path = [n for n in path if fork in _ancestors(n)]
        sides.append((operand, path, _called(path, modules, LAYERS)))
    (_, _, skip_layers), (op, path, layers) = sorted(
        sides, key=lambda s: (len(s[2]), _has_activation(s[1], modules), sides.index(s))
    )
    if not layers:
        return None
    called = lambda nodes: _called(nodes, modules, LAYERS)  # noqa: E731
    gates = gate_layers(op, set(path), layers, called, modules)
    layers = [n for n in layers if n not in gates]
    last_norm = _last_norm(path, modules, layers[-1])
    dead = _dead_if_zeroed(path, modules, [layers[-1], last_norm], op)
    output = _output_module(op)
    depths = _depths(path, modules, layers)
    scores = _score_layers(path, modules, layers)
    fused = [n for n in scores if n in _value_layers(path, modules, layers)]
    branch = Branch(
        0, layers, last_norm, skip_layers, output, depths=depths, scores=scores, fused=fused,
        gates=gates, dead_if_zeroed=dead,
    )  # fmt: skip
    return branch, set(path)


def _score_layers(
    path: list[fx.Node], modules: dict[str, nn.Module], layers: list[str]
) -> list[str]:
    """The ``layers`` whose outputs reach an attention's scores along ``path``: the input
    of a softmax, or the query and key of ``F.scaled_dot_product_attention``."""
    roots: list[fx.Node] = []
    for n in path:
        if n.op == "call_function" and n.target is F.scaled_dot_product_attention:
            roots += [a for a in (*n.args[:2], n.kwargs.get("query"), n.kwargs.get("key")) if a]
        elif _is_softmax(n, modules) and n.args and isinstance(n.args[0], fx.Node):
            roots.append(n.args[0])
    above: set[fx.Node] = set()
    for root in roots:
        if isinstance(root, fx.Node):
            above |= _ancestors(root) | {root}
    called = {str(n.target) for n in above if n.op == "call_module"}
    return [name for name in layers if name in called]


PRODUCTS = {operator.matmul, torch.matmul, torch.bmm, torch.einsum}


def _value_layers(
    path: list[fx.Node], modules: dict[str, nn.Module], layers: list[str]
) -> set[str]:
    """The ``layers`` whose outputs reach an attention's values along ``path``: the value of
    ``F.scaled_dot_product_attention``, or the other operand of a product with a softmax's
    output (``att @ v``)."""
    roots = []
    softmaxes = [n for n in path if _is_softmax(n, modules)]
    for n in path:
        if n.op == "call_function" and n.target is F.scaled_dot_product_attention:
            roots += [a for a in (*n.args[2:3], n.kwargs.get("value")) if a is not None]
        product = n.target in PRODUCTS or (n.op == "call_method" and n.target in ("matmul", "bmm"))
        if product and softmaxes:
            operands = [a for a in n.args if isinstance(a, fx.Node)]
            weighted = [a for a in operands if any(s in _ancestors(a) | {a} for s in softmaxes)]
            roots += [a for a in operands if weighted and a not in weighted]
    above = set().union(*(_ancestors(r) | {r} for r in roots if isinstance(r, fx.Node)))
    return {str(n.target) for n in above if n.op == "call_module"} & set(layers)


def _is_softmax(n: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if n.op == "call_function":
        return n.target in (F.softmax, torch.softmax)
    if n.op == "call_method":
        return n.target == "softmax"
    return n.op == "call_module" and isinstance(modules.get(n.target), nn.Softmax)


def _depths(path: list[fx.Node], modules: dict[str, nn.Module], layers: list[str]) -> list[int]:
    """Each of ``layers``' place in the longest chain of them along ``path`` (1-based): one
    more than the deepest of them among its ancestors, so parallel layers share a place."""
    nodes = {n: _called([n], modules, LAYERS) for n in path if n.op == "call_module"}
    nodes = {n: names[0] for n, names in nodes.items() if names and names[0] in layers}
    depth: dict[fx.Node, int] = {}
    for node in nodes:  # path order: every ancestor of a node comes before it
        above = _ancestors(node)
        depth[node] = 1 + max((d for n, d in depth.items() if n in above), default=0)
    by_name = {name: depth[n] for n, name in nodes.items()}
    return [by_name.get(name, i + 1) for i, name in enumerate(layers)]


def _called(path: list[fx.Node], modules: dict[str, nn.Module], kinds: tuple) -> list[str]:
    """The modules of ``kinds`` called along ``path``, in order; for weight layers, an
    ``nn.MultiheadAttention`` (a leaf) counts as its ``out_proj``, the last weight layer of
    an attention branch (its input projection is a bare parameter, not a layer)."""
    names: list[str] = []
    for n in path:
        if n.op != "call_module":
            continue
        module, name = modules.get(n.target), str(n.target)
        if kinds is LAYERS and isinstance(module, nn.MultiheadAttention):
            module, name = module.out_proj, f"{name}.out_proj"
        if isinstance(module, kinds) and name not in names:
            names.append(name)
    return names


def _last_norm(path: list[fx.Node], modules: dict[str, nn.Module], last_layer: str) -> str | None:
    """The last norm module called after the branch's last weight layer, if any."""
    seen_last, found = False, None
    for n in path:
        if n.op != "call_module":
            continue
        if n.target == last_layer:
            seen_last, found = True, None
        elif seen_last and is_norm(modules.get(n.target)):
            found = str(n.target)
    return found


FLAT_AT_ZERO = {
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, torch.Tensor.relu, torch.Tensor.relu_,
}  # fmt: skip
"""Functions with f(0) = 0 and f'(0) = 0 (the ReLU family), as fx traces them and as a run
records them (:mod:`initlab.residual.run_trace`: ``x.relu()`` is ``torch.Tensor.relu``)."""


def _flat_at_zero(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` applies an activation with f(0) = 0 and f'(0) = 0: ``nn.ReLU``,
    ``nn.ReLU6`` and any ``nn.Hardtanh`` clipping at 0 (PyTorch's gradient at the clip is 0),
    ``F.relu``, ``x.relu()`` (:data:`FLAT_AT_ZERO`). LeakyReLU (f'(0) = slope), GELU, SiLU
    (f'(0) = 1/2) and tanh pass a gradient at 0: a zeroed branch of theirs trains."""
    if node.op == "call_module":
        module = modules.get(node.target)
        clipped = isinstance(module, nn.Hardtanh) and module.min_val == 0
        return isinstance(module, nn.ReLU) or clipped
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return node.op == "call_function" and node.target in FLAT_AT_ZERO


def _dead_if_zeroed(
    path: list[fx.Node], modules: dict[str, nn.Module], names: list[str | None], op: fx.Node
) -> dict[str, str]:
    """``{name: activation}`` for those of ``names`` (modules of the branch) that an
    activation flat at 0 (:func:`_flat_at_zero`) follows on every way from the module to the
    branch's output ``op`` (:attr:`~initlab.residual.structure.Branch.dead_if_zeroed`);
    the activation as ``"act (ReLU)"`` for a module, ``"relu"`` for a function. A ReLU on
    a squeeze-excite gate only (``value * sigmoid(fc2(relu(fc1(value))))``) is not one:
    the value reaches ``op`` without passing it."""
    found = {}
    for name in names:
        starts = [n for n in path if n.op == "call_module" and n.target == name]
        for node in path if starts else []:
            if _flat_at_zero(node, modules) and _only_through(starts, op, node, set(path)):
                module = modules.get(node.target) if node.op == "call_module" else None
                what = f"{node.target} ({type(module).__name__})" if module is not None else None
                found[str(name)] = what or getattr(node.target, "__name__", str(node.target))
                break
    return found


def _only_through(
    starts: list[fx.Node], op: fx.Node, through: fx.Node, nodes: set[fx.Node]
) -> bool:
    """Whether ``through`` lies after ``starts`` and every way along ``nodes`` from them to
    ``op`` passes it (``through`` dominates ``op`` from ``starts``): a search from ``starts``
    that stops at ``through`` never reaches ``op``."""
    seen, stack, passed = set(starts), list(starts), False
    while stack:
        for user in stack.pop().users:
            if user is through:
                passed = True
            elif user in nodes and user not in seen:
                if user is op:
                    return False
                seen.add(user)
                stack.append(user)
    return passed


ACTIVATION_FUNCTIONS = {torch.relu, torch.tanh, torch.sigmoid, F.relu, F.gelu, F.silu}


def _has_activation(path: list[fx.Node], modules: dict[str, nn.Module]) -> bool:
    for n in path:
        if n.op == "call_module" and type(modules.get(n.target)).__module__.endswith("activation"):
            return True
        if n.op == "call_function" and n.target in ACTIVATION_FUNCTIONS:
            return True
    return False
