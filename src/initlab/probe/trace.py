"""One forward pass, watched: every Linear/Conv call and the nonlinearity its output meets.

The one activation tracer of initlab: the probe (:func:`initlab.probe.hooks.collect`) takes
its z and phi(z) from it, the doctor its activation names, the scaling check its layers.
Forward hooks on every Linear/Conv/ConvTranspose module (:data:`initlab.coverage.INITIALIZABLE`)
record each call's input and output, and tag the output with the call. A
``TorchFunctionMode`` sees every torch function call — those of modules (``nn.ReLU``) and of
functional code (``F.gelu(x)``, ``x.tanh()``) alike — and follows the tag:

* normalizing and shape-only functions (batch/layer/group/instance norm, dropout, pooling,
  reshapes) pass it on; a normalization on the way sets ``normalized``;
* one cut into pieces (:data:`SPLIT_FUNCTIONS`: a fused ``c_attn``'s
  ``q, k, v = qkv.split(d, 2)``, ``chunk``, ``unbind``, ...) passes it to every piece, and
  what the first piece meets decides, as for any output read twice: the rules below apply
  to the pieces as to the whole (a linear layer's phi(z) is then the whole tensor cut); a
  Linear's pieces that partition its output features give its row ``spans`` (:mod:`.split`);
* the first recognized activation (:data:`ACTIVATION_FUNCTIONS`) applied to a tagged tensor
  is the layer's activation: z is that function's input (copied before it runs, so an
  in-place activation does not erase it) and phi(z) its output. A gate written by hand,
  ``x * sigmoid(x)`` (in either order), is the activation it computes: ``silu``, with the
  product as phi(z);
* a tagged tensor that reaches the next Linear/Conv, a matrix product of activations
  (:data:`PRODUCT_FUNCTIONS`: a hand-written attention's q, k and v) or the model's output
  without one is ``linear``: z is the layer's output and phi(z) what enters the next layer
  or product (nothing, for the model's output) — an all-zero output is ``linear`` too,
  never a guessed ``relu``;
* one added to a tensor of its shape — a residual branch's end joining its skip path,
  ``x + branch(x)``, or another layer's output: a ResNet block's ``bn2(conv2(h))`` and its
  projection shortcut ``bn(conv(x))``, ``W x + U h`` — passes its tag to the sum, written
  ``a + b`` or ``a += b`` alike (:meth:`_Tracer._sum`): a sum of several layers' outputs
  carries all their tags, and an activation of the sum is the activation of each (a
  post-activation ResNet block: ``relu`` for ``conv2`` and the shortcut conv, z the sum and
  phi(z) the block's output). Otherwise the layer is ``linear`` with phi(z) what the
  branch adds (a pre-norm transformer's next input, the normalized sum, would say std 1
  whatever the branch's scale; a norm of the sum is the stream's, not the layer's), also
  when a ``MultiheadAttention`` or the next residual sum reads the stream first;
* one consumed by anything else (a ``cumsum``, ``(W x + U h).chunk(4, -1)``) is
  ``unknown``: z is the layer's output and phi(z) the input of the first layer called
  afterwards that reads a tensor computed from it (:mod:`.lineage`), if that has as many
  values as z; else phi(z) is not measured (``(None, None)``, NaN statistics), never the
  input of a layer that reads something else. The activation is the registry activation
  phi with ``phi(z) ≈`` that input when exactly one fits
  (:func:`initlab.activations.infer_activation`), else ``unknown``.

The function names each rule applies to are in :mod:`initlab.probe.functions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import initlab.activations as activations
from initlab.coverage import INITIALIZABLE
from initlab.preserve import preserved
from initlab.probe.functions import (
    ACTIVATION_FUNCTIONS,
    ADD_FUNCTIONS,
    GATED,
    IGNORED_FUNCTIONS,
    IN_PLACE_ADD,
    LAYER_FUNCTIONS,
    NORM_FUNCTIONS,
    PRODUCT_FUNCTIONS,
    SPLIT_FUNCTIONS,
    STREAM_READERS,
    TRANSPARENT_FUNCTIONS,
    learned_shift,
)
from initlab.probe.lineage import Lineage, tensors_in
from initlab.probe.projections import MAPS, attention_inputs, project, projections
from initlab.probe.split import Spans, linear_spans
from initlab.residual.value_path import MULTIPLY_NAMES

Live = tuple[Tensor | None, Tensor | None]
"""A tensor as the model holds it (gradients are taken with respect to it) and a detached
copy of its value at the time."""


@dataclass
class TracedLayer:
    """One call of one Linear/Conv layer and what its output met.

    ``activation``: a registry name, ``"linear"`` or ``"unknown"`` (``None`` while the
    forward pass runs); ``slope``: the negative slope of a ``leaky_relu``; ``pre``, ``post``:
    z and phi(z) (``post`` is ``(None, None)`` when the output leaves the model);
    ``inside``: the type of the module that calls the layer's weight itself
    (``"MultiheadAttention"`` for its ``out_proj``: ``input`` is then that module's input,
    not the layer's), ``None`` for a layer called as a module.
    """

    name: str
    module: nn.Module
    input: Live
    output: Live
    activation: str | None = None
    slope: float | None = None
    normalized: bool = False
    pre: Live = (None, None)
    post: Live = (None, None)
    inside: str | None = None
    joined: Live | None = None
    """What the layer's branch added to the stream it joined (``x + branch(x)``), if so."""
    cut: Live | None = None
    """The tensor whose pieces went on (``q, k, v = qkv.split(d, 2)``), if it was split."""
    spans: Spans | None = None
    """A Linear's weight rows ``(a, b)`` whose outputs its first split's pieces hold, when
    they partition its output features (a fused q/k/v: :func:`~.split.column_spans`)."""


def _copy(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.detach().clone()


def _tensors(args: tuple, kwargs: dict) -> list[Tensor]:
    out = []
    for item in (*args, *kwargs.values()):
        if isinstance(item, Tensor):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            out.extend(x for x in item if isinstance(x, Tensor))
    return out


class _Tracer(TorchFunctionMode):
    """Follows each layer call's output through torch functions (see the module docs)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers: list[TracedLayer] = []
        self.tags: dict[int, list[int]] = {}  # id(tensor) → indices in self.layers (a sum: 2+)
        self.keep: list[Tensor] = []  # tagged tensors stay alive, so their ids stay unique
        self.gates: dict[int, tuple[int, int | None]] = {}  # id(sigmoid(x)) → x's layer, piece
        self.pieces: dict[int, int] = {}  # id(tensor) → id of the split piece it is (a view of)
        self.quiet = False
        self.open_now: set[int] = set()
        self.lineage = Lineage()  # what an `unknown` layer's output went on to make

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Run torch functions unobserved (the tracer's own copies)."""
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False

    def live(self, x: Tensor | None) -> Live:
        with self.muted():
            return x, _copy(x)

    def tag(self, tensor: Tensor, index: int, piece: int | None = None) -> None:
        """Mark ``tensor`` as (also) layer ``index``'s output (``piece``: of one piece of it)."""
        held = self.tags.setdefault(id(tensor), [])
        if index not in held:
            held.append(index)
        if piece is not None:
            self.pieces[id(tensor)] = piece
        self.keep.append(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.quiet:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        tensors = _tensors(args, kwargs)
        open_ = [(t, k) for t in tensors for k in self.tags.get(id(t), ())]
        open_ = [(t, k) for t, k in open_ if self.layers[k].activation is None]
        self.open_now = {id(t) for t, _ in open_}  # as the call found them, in any order
        copies = {id(t): self.live(t) for t, _ in open_} if name in ACTIVATION_FUNCTIONS else {}
        out = func(*args, **kwargs)
        self.lineage.spread(tensors, out)
        if name in MULTIPLY_NAMES and isinstance(out, Tensor):
            self._close_gate(tensors, out)
        for t, k in open_:
            self._observe(k, t, copies.get(id(t)), (name, args, kwargs, out))
        return out

    def _close_gate(self, factors: list[Tensor], product: Tensor) -> None:
        """``sigmoid(x) * x`` for a layer output x: the layer's activation is silu (not
        ``sigmoid(a) * b`` for two pieces ``a, b`` of one output: a GLU)."""
        for gate in factors:
            k, piece = self.gates.get(id(gate), (None, None))
            others = [f for f in factors if f is not gate]
            if k is not None and any(self._same(f, k, piece) for f in others):
                layer = self.layers[k]
                layer.activation = GATED.get(layer.activation, layer.activation)
                layer.post = self.live(product)

    def _same(self, x: Tensor, k: int, piece: int | None) -> bool:
        """Whether ``x`` carries layer ``k``'s tag and is ``piece`` of its output."""
        return k in self.tags.get(id(x), ()) and self.pieces.get(id(x)) == piece

    def _observe(self, k: int, x: Tensor, pre: Live | None, call: tuple) -> None:
        """Layer ``k``'s output (or a tensor carrying its tag) ``x`` met ``call`` = ``(name,
        args, kwargs, out)``; ``pre``: the copy of ``x`` taken before an activation ran."""
        layer, (name, args, kwargs, out) = self.layers[k], call
        if name in ACTIVATION_FUNCTIONS:
            layer.activation = ACTIVATION_FUNCTIONS[name]
            layer.pre = pre or (None, None)
            layer.post = self.live(out if isinstance(out, Tensor) else None)
            if layer.activation in GATED and isinstance(out, Tensor):
                self.gates[id(out)] = (k, self.pieces.get(id(x)))
                self.keep.append(out)
            if layer.activation == "leaky_relu":
                slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else None)
                layer.slope = float(slope) if slope is not None else activations.LEAKY_RELU_SLOPE
        elif name in LAYER_FUNCTIONS or name in PRODUCT_FUNCTIONS:
            layer.activation, layer.pre = "linear", layer.output
            layer.post = layer.joined or layer.cut or self.live(x)
        elif name in SPLIT_FUNCTIONS and layer.joined is None and isinstance(out, (tuple, list)):
            pieces = [p for p in out if isinstance(p, Tensor)]
            if layer.cut is None and layer.inside is None:
                with self.muted():
                    layer.spans = linear_spans(layer.module, layer.output[0], pieces)
            layer.cut = layer.cut or self.live(x)
            for piece in pieces:
                self.tag(piece, k, id(piece))
        elif isinstance(out, Tensor) and (
            name in TRANSPARENT_FUNCTIONS or learned_shift(x, _tensors(args, kwargs), name)
        ):
            self.tag(out, k, self.pieces.get(id(x)))
            layer.normalized |= name in NORM_FUNCTIONS and layer.joined is None
        elif (total := self._sum(k, x, name, args, kwargs, out)) is not None:
            layer.joined = layer.joined or self.live(x)  # what the branch adds
            self.tag(total, k)  # an activation of the sum is the layer's, as after `+=`
        elif layer.joined is not None and name in STREAM_READERS:
            layer.activation, layer.pre, layer.post = "linear", layer.output, layer.joined
        elif name not in IGNORED_FUNCTIONS:
            layer.activation = "unknown"  # phi(z): a later layer's input made from it, if any
            self.lineage.seed(k, [x, layer.output[0], *tensors_in(out)])

    def _sum(
        self, k: int, x: Tensor, name: str, args: tuple, kwargs: dict, out: object
    ) -> Tensor | None:
        """The sum that carries layer ``k``'s output ``x`` on, if the call is ``x + h`` with
        ``h`` a tensor of ``x``'s shape: the call's output, or ``h`` itself for ``h += x``
        (``None`` for ``x += h``: ``x`` keeps its tag anyway). ``h`` may be a skip path, a
        stream or another layer's output (``bn2(conv2(y)) + shortcut(x)``, ``W x + U h``);
        but a sum ``x`` already carries (``k`` joined a stream) goes on only with ``h``
        carrying no open layer output when the call began: a new branch end's join reads
        the stream, as :data:`STREAM_READERS` say."""
        if name in ADD_FUNCTIONS:
            total = out
        elif name == IN_PLACE_ADD and args and args[0] is not x:
            total = args[0]
        else:
            return None
        fresh = self.layers[k].joined is None
        others = [t for t in _tensors(args, kwargs) if t is not x]
        joins = any(t.shape == x.shape and (fresh or id(t) not in self.open_now) for t in others)
        return total if joins and isinstance(total, Tensor) else None

    def watch(self, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        """Forward hooks that record every layer call and tag its output. A multi-head
        attention's ``out_proj`` is never called (the attention reads its weight), so the
        attention's own call stands for it: its output is ``out_proj``'s; its query, key and
        value maps come first (:meth:`_projection_hook`)."""
        handles = []
        for module_name, module in model.named_modules():
            if isinstance(module, (*INITIALIZABLE, nn.Embedding)):
                handles += self._hooks(module_name or "(model)", module)
            elif isinstance(module, nn.MultiheadAttention):
                prefix = f"{module_name}." if module_name else ""
                handles.append(self._projection_hook(prefix, module))
                handles += self._hooks(f"{prefix}out_proj", module, module.out_proj)
        return handles

    def _projection_hook(
        self, prefix: str, attention: nn.MultiheadAttention
    ) -> torch.utils.hooks.RemovableHandle:
        """Before each call of ``attention``: its query, key and value maps as three
        ``linear`` layers ``<prefix>q_proj``, ``k_proj``, ``v_proj``, z recomputed from the
        call's inputs (:mod:`initlab.probe.projections`)."""
        maps = projections(attention)

        def before(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs = attention_inputs(args, kwargs)
            for which, projection, x in zip(MAPS, maps, inputs or (), strict=False):
                with self.muted():
                    z = project(projection, x)
                pre, post = (None, z), (None, z)  # z's own tensor stays inside the attention
                traced = TracedLayer(f"{prefix}{which}_proj", projection, self.live(x), pre)
                traced.activation, traced.pre, traced.post = "linear", pre, post
                traced.inside = type(attention).__name__
                self.layers.append(traced)

        return attention.register_forward_pre_hook(before, with_kwargs=True)

    def _hooks(
        self, name: str, module: nn.Module, layer: nn.Module | None = None
    ) -> list[torch.utils.hooks.RemovableHandle]:
        """Hooks on ``module`` recording a call of ``layer`` (``module`` itself by default)."""
        inputs: list[Live] = []
        inside = None if layer is None else type(module).__name__

        def before(_module: nn.Module, args: tuple) -> None:
            inputs.append(self.live(next((a for a in args if isinstance(a, Tensor)), None)))

        def after(_module: nn.Module, _args: tuple, output: object) -> None:
            seen = inputs.pop() if inputs else (None, None)
            if inside is not None and isinstance(output, tuple) and output:
                output = output[0]  # (attention output, attention weights)
            if isinstance(output, Tensor):
                traced = TracedLayer(name, layer or module, seen, self.live(output), inside=inside)
                self.layers.append(traced)
                if isinstance(module, nn.Embedding):  # a lookup: z and phi(z) are its output
                    traced.activation, traced.pre = "linear", traced.output
                    traced.post = (traced.output[0], traced.output[1])
                else:
                    self.tag(output, len(self.layers) - 1)

        return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


def _made_from(layers: list[TracedLayer], k: int, lineage: Lineage) -> Live:
    """The input of the first layer called after layer ``k`` that reads a tensor computed
    from ``k``'s output (:mod:`.lineage`) and has as many values, if any: never the input
    of a layer that reads something else (``(None, None)`` then)."""
    z = layers[k].output[1]
    for later in layers[k + 1 :]:
        x, copy = later.input
        if k in lineage.of(x) and copy is not None and z is not None:
            return later.input if copy.numel() == z.numel() else (None, None)
    return (None, None)


def _finish(layers: list[TracedLayer], lineage: Lineage) -> None:
    """Layers whose output left the model are ``linear``; ``unknown`` ones get z = their
    output, phi(z) = :func:`_made_from`'s input (``(None, None)``: not measured) and, when
    it is unambiguous, the activation that maps one to the other."""
    for k, layer in enumerate(layers):
        if layer.activation is None:
            layer.activation, layer.pre = "linear", layer.output
            layer.post = layer.joined or layer.post
        elif layer.activation == "unknown":
            layer.pre = layer.output
            layer.post = _made_from(layers, k, lineage)
            z, phi = layer.pre[1], layer.post[1]
            if z is not None and phi is not None:
                layer.activation = activations.infer_activation(z, phi) or "unknown"


def trace(
    model: nn.Module, inputs: Tensor, more: Callable[[_Tracer], list] | None = None
) -> tuple[list[TracedLayer], object]:
    """Run ``model(inputs)`` once under the tracer: every layer call in call order (a layer
    called twice appears twice) and the model's output; ``more(tracer)`` adds its own hooks
    (returns their handles). All are removed afterwards; the caller chooses the mode."""
    tracer = _Tracer()
    handles = tracer.watch(model) + (more(tracer) if more is not None else [])
    try:
        with tracer:
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    _finish(tracer.layers, tracer.lineage)
    return tracer.layers, output


NOT_RUN = "not run"
"""What :func:`find_activations` says of a layer the forward pass did not call."""


def first_calls(
    model: nn.Module, inputs: Tensor, layers: Sequence[tuple[str, nn.Module]]
) -> dict[str, TracedLayer | None]:
    """Each ``(name, layer)``'s first traced call (``None``: the forward pass never called
    it). One forward pass in eval mode without gradients; the model is left as it was
    (:func:`initlab.preserve.preserved`: modes, parameters, buffers, the RNG)."""
    with preserved(model, "eval"), torch.no_grad():
        calls, _ = trace(model, inputs)
    first: dict[int, TracedLayer] = {}
    for call in calls:
        first.setdefault(id(call.module), call)
    return {name: first.get(id(module)) for name, module in layers}


def activations_of(calls: Mapping[str, TracedLayer | None]) -> tuple[dict[str, str], dict]:
    """:func:`find_activations`'s answer from :func:`first_calls`."""
    found = {n: NOT_RUN if c is None else c.activation or "linear" for n, c in calls.items()}
    slopes = {n: c.slope for n, c in calls.items() if c is not None and c.slope is not None}
    return found, slopes


def find_activations(
    model: nn.Module, inputs: Tensor, layers: Sequence[tuple[str, nn.Module]]
) -> tuple[dict[str, str], dict[str, float]]:
    """For each ``(name, layer)``: the activation its output meets on its first call
    (``"linear"`` when none; :data:`NOT_RUN` when the forward pass never called it, e.g. a
    branch data-dependent code did not take; ``"unknown"`` when initlab cannot classify what
    consumes it), and the negative slope of each ``leaky_relu`` found (one forward pass,
    :func:`first_calls`)."""
    return activations_of(first_calls(model, inputs, layers))
