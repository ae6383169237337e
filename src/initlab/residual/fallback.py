"""Residual branches from module names and order, for models ``torch.fx`` cannot trace.

Three kinds of block are recognized, outermost first (a block's own blocks are not searched):

* ``torch.nn``'s ``TransformerEncoderLayer`` and ``TransformerDecoderLayer``, whose forward
  is PyTorch's own: ``x + dropout1(self_attn(x))`` (the branch: ``self_attn.out_proj``),
  for a decoder ``x + dropout2(multihead_attn(x, memory))``, and
  ``x + dropout(linear2(dropout(activation(linear1(x)))))`` (``linear1, linear2``), each
  branch's output its dropout module;

* initlab-style: a module with ``residual is True`` and a ``branch_layers`` list (initlab's
  residual MLP blocks);
* a ``...Block`` whose Linear layers all sit in an attention child (``attn``,
  ``attention``) and a feed-forward child (``mlp``, ``ffn``, ``feed_forward``, ``ff``), as
  nanoGPT's and timm's ViT blocks: two branches, ``x + attn(norm(x))`` and
  ``x + mlp(norm(x))``;
* timm/torchvision-style: a module with a ``shortcut``, ``downsample`` or ``skip`` child (an
  ``nn.Identity``, ``None`` or a projection), or whose class name ends in ``Block`` or
  ``Bottleneck``, with at least two Linear/Conv children besides that skip path. Its branch is
  its other Linear/Conv layers in registration order; its last norm, a norm registered after
  the last of them; its output, that norm (else the last layer).

The guess assumes the block's forward is ``act(branch(x) + skip(x))`` in registration order;
a plan made this way says so in its notes.
"""

from __future__ import annotations

from torch import nn

from initlab.norm_layers import is_norm
from initlab.residual.structure import LAYERS, Branch, Structure

SKIP_NAMES = ("shortcut", "downsample", "skip")


def fallback_structure(model: nn.Module) -> Structure:
    """Branches of ``model`` found by the rules of the module docstring (``method="fallback"``)."""
    structure = Structure(method="fallback")
    taken: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") for t in taken):
            continue
        branch = _initlab_block(name, module)
        branches = (
            _torch_transformer_layer(name, module)
            or ([branch] if branch else [])
            or _split_transformer_block(_named_block(name, module))
        )
        for branch in branches:
            branch.index = len(structure.branches)
            structure.branches.append(branch)
        if branches:
            taken.append(name)
    return structure


def _torch_transformer_layer(name: str, module: nn.Module) -> list[Branch]:
    """The residual branches of a ``torch.nn`` transformer layer (module docstring)."""
    if isinstance(module, nn.TransformerEncoderLayer):
        attention = [("self_attn", "dropout1")]
        feed_forward = "dropout2"
    elif isinstance(module, nn.TransformerDecoderLayer):
        attention = [("self_attn", "dropout1"), ("multihead_attn", "dropout2")]
        feed_forward = "dropout3"
    else:
        return []
    found = [([f"{attn}.out_proj"], out) for attn, out in attention]
    found.append((["linear1", "linear2"], feed_forward))
    return [
        Branch(0, [_join(name, n) for n in layers], output=_join(name, out), block=name)
        for layers, out in found
    ]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _initlab_block(name: str, module: nn.Module) -> Branch | None:
    if getattr(module, "residual", False) is not True or not hasattr(module, "branch_layers"):
        return None
    names = {id(m): _join(name, n) for n, m in module.named_modules() if n}
    layers = [names[id(m)] for m in module.branch_layers if id(m) in names]
    return Branch(index=0, layers=layers, output=layers[-1] if layers else None, block=name)


ATTENTION_NAMES = ("attn", "attention")
FEED_FORWARD_NAMES = ("mlp", "ffn", "feed_forward", "feedforward", "ff")


def _split_transformer_block(branch: Branch | None) -> list[Branch]:
    """``branch`` as two branches when its block has an attention child and a feed-forward
    child (``h.0.attn.*`` and ``h.0.mlp.*``, as nanoGPT's and timm's ViT blocks): such a
    block adds twice, ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""
    if branch is None:
        return []
    prefix = f"{branch.block}." if branch.block else ""
    child = {layer: layer[len(prefix) :].split(".")[0] for layer in branch.layers}
    attention = [n for n in branch.layers if child[n].lower() in ATTENTION_NAMES]
    feed_forward = [n for n in branch.layers if child[n].lower() in FEED_FORWARD_NAMES]
    if (
        not attention
        or not feed_forward
        or len(attention) + len(feed_forward) != len(branch.layers)
    ):
        return [branch]
    return [
        _attention_branch(attention, branch.block),
        Branch(0, feed_forward, output=feed_forward[-1], block=branch.block),
    ]


QUERY_KEY = ("q", "k", "query", "key", "q_proj", "k_proj", "wq", "wk", "to_q", "to_k")
VALUE = ("v", "value", "v_proj", "wv", "to_v")
FUSED = ("qkv", "c_attn", "in_proj", "to_qkv", "wqkv", "qkv_proj")


def _attention_branch(layers: list[str], block: str) -> Branch:
    """An attention child's branch, its layers read by their names: query, key and value
    projections (:data:`QUERY_KEY`, :data:`VALUE`, a fused :data:`FUSED` one) are parallel,
    the first of the chain (depth 1), the others (the output projection) after them (2);
    the query and key ones reach the softmax (:attr:`Branch.scores`). Registration order
    made q → k → v → out a chain of 4, and Fixup scaled q and k; no such name: that order."""
    kind = {n: n.rpartition(".")[2].lower() for n in layers}
    inputs = [n for n in layers if kind[n] in QUERY_KEY + VALUE + FUSED]
    if not inputs:
        return Branch(0, layers, output=layers[-1], block=block)
    depths = [1 if n in inputs else 2 for n in layers]
    scores = [n for n in inputs if kind[n] in QUERY_KEY + FUSED]
    fused = [n for n in inputs if kind[n] in FUSED]
    return Branch(
        0, layers, output=layers[-1], block=block, depths=depths, scores=scores, fused=fused
    )


def _named_block(name: str, module: nn.Module) -> Branch | None:
    children = dict(module.named_children())
    skip_child = next((c for c in SKIP_NAMES if c in children or hasattr(module, c)), None)
    cls = type(module).__name__
    if skip_child is None and not cls.endswith(("Block", "Bottleneck")):
        return None
    skip_prefix = _join(name, skip_child) if skip_child else None
    layers, norms, skip = [], [], []
    for sub, m in module.named_modules():
        full = _join(name, sub)
        if not sub:
            continue
        in_skip = skip_prefix is not None and (full + ".").startswith(skip_prefix + ".")
        if isinstance(m, LAYERS):
            (skip if in_skip else layers).append(full)
        elif is_norm(m) and not in_skip:
            norms.append((full, len(layers)))
    if len(layers) < 2:
        return None
    after = [n for n, count in norms if count == len(layers)]
    last_norm = after[-1] if after else None
    output = last_norm or layers[-1]
    return Branch(0, layers, last_norm=last_norm, skip=skip, output=output, block=name)
