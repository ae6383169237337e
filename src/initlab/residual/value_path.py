"""Which weight layers of a residual branch carry its value, and which only gate it.

A squeeze-excite block multiplies the branch by a sigmoid of a small bottleneck of it
(``out * sigmoid(fc2(relu(fc1(out.mean((2, 3))))))``), a GLU its value half by a sigmoid of
its gate half. The gate's layers lie on a longer path of the graph than the value's, but the
gate is bounded: it scales the branch by a factor in (0, 1) whatever their weights are. What
the residual rules need is the *value path*, the layers whose weights set the branch's scale:

- ``zero_last_layer`` must zero the last layer of the value (``conv2``), which zeroes the
  branch; zeroing the gate's last layer leaves a gate of sigmoid(0) = 1/2 and the branch on;
- Fixup's m counts the layers one after the other on the value path (2 in an SE-ResNet's
  basic block, not 4).

:func:`gate_layers` walks back from the branch's output and, at a product with the output
of a sigmoid (``torch.sigmoid``, ``.sigmoid()``, ``nn.Sigmoid``, hard sigmoid; through
reshapes such as ``.view(b, c, 1, 1)``), follows only the other factor. Works on graphs from
``torch.fx`` and on those :mod:`initlab.residual.run_trace` records.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import fx, nn

GATE_NAMES = frozenset({"sigmoid", "sigmoid_", "hardsigmoid", "hardsigmoid_"})
"""Functions and methods whose output is a gate in (0, 1)."""
GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid)
MULTIPLY_NAMES = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"})
"""Functions and methods that multiply (a gate by a branch; the activation tracer's
:mod:`initlab.probe.trace` reads them too, for ``phi(x) * x``)."""
RESHAPE_NAMES = frozenset(
    {"view", "reshape", "unsqueeze", "squeeze", "flatten", "expand", "expand_as", "view_as"}
    | {"getitem", "__getitem__", "contiguous", "permute", "transpose"}
)
"""Calls that only move a gate's values: a gate reached through them is still a gate."""


def gate_layers(
    output: fx.Node,
    path: set[fx.Node],
    layers: list[str],
    called: Callable[[list[fx.Node]], list[str]],
    modules: dict[str, nn.Module],
) -> list[str]:
    """Those of a branch's ``layers`` (in their order) that reach its ``output`` only through
    the sigmoid factor of a product; ``path``: the branch side's nodes; ``called``: the
    weight layers a list of nodes calls. Empty when none, or when every layer would be one."""
    value: set[fx.Node] = set()
    stack = [output]
    while stack:
        node = stack.pop()
        if node in value or node not in path:
            continue
        value.add(node)
        inputs = list(node.all_input_nodes)
        if _name(node) in MULTIPLY_NAMES:
            gates = [a for a in inputs if _is_gate(a, modules)]
            values = [a for a in inputs if a not in gates and a.op != "get_attr"]
            if gates and values:  # a gate scales a value (not a learned scalar)
                inputs = [a for a in inputs if a not in gates]
        stack.extend(inputs)
    reached = set(called(list(value)))
    gates = [name for name in layers if name not in reached]
    return gates if len(gates) < len(layers) else []


def _is_gate(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is a sigmoid's output, directly or through reshapes."""
    while True:
        if node.op == "call_module":
            return isinstance(modules.get(str(node.target)), GATE_MODULES)
        name = _name(node)
        if name in GATE_NAMES:
            return True
        if name not in RESHAPE_NAMES or not node.all_input_nodes:
            return False
        node = node.all_input_nodes[0]


def _name(node: fx.Node) -> str:
    """A call's function or method name (``operator.mul`` → ``"mul"``, a recorded
    ``torch.Tensor.view`` → ``"view"``); ``""`` for modules, placeholders and the like."""
    if node.op == "call_method":
        return str(node.target)
    if node.op == "call_function":
        return getattr(node.target, "__name__", "")
    return ""
