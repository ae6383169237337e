"""How a scheme sets layers that hold several weight matrices: RNNs and attention.

Keras semantics, since Keras is the framework whose layers name a scheme per matrix:

* **RNNs** (``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and their cells). The scheme sets each
  input kernel ``weight_ih`` (``[gates·H, in]``: fan_in = in, fan_out = gates·H, Keras'
  ``kernel_initializer`` on its ``[in, gates·H]`` kernel) and the LSTM projection
  ``weight_hr``; the recurrent kernel ``weight_hh`` gets ``orthogonal`` (gain 1), Keras'
  ``recurrent_initializer`` default (Saxe et al. 2014: an orthogonal recurrence neither
  shrinks nor grows the state). PyTorch adds two biases, ``b_ih + b_hh``: ``b_ih`` takes the
  bias policy and ``b_hh`` is 0, so their sum is Keras' single bias; an LSTM's forget-gate
  slice of ``b_ih`` (the second of the gates i, f, g, o) is then 1 (Keras'
  ``unit_forget_bias``, Jozefowicz et al. 2015). A GRU's ``b_hh`` takes the policy too
  (Keras' ``reset_after`` GRU has a recurrent bias of its own). The bias policy
  ``torch_default`` gives what the RNN's constructor does instead: both biases
  U(±1/sqrt(H)), no forget-gate 1.
* **Multi-head attention** (``nn.MultiheadAttention``). Its packed input projection
  ``in_proj_weight`` ``[3E, E]`` is three ``E × E`` maps (query, key, value), each set with
  its own fans (fan_in = E, or kdim/vdim for the separate ``k_proj_weight`` and
  ``v_proj_weight``), as Keras' ``MultiHeadAttention`` sets its query, key and value kernels;
  ``in_proj_bias`` takes the bias policy. ``out_proj`` is a Linear layer and set as one;
  ``bias_k``/``bias_v`` (``add_bias_kv``) stay as built.

A data-dependent scheme (``lsuv``) gives these matrices its orthonormal start only: its
rescaling pass runs on Linear/Conv outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import initlab.initializers as initializers
from initlab.initializers import Fans, Initializer

COMPOUND = (nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention)
"""Layer types whose several weight matrices a scheme sets (see the module docstring)."""
RECURRENT_SCHEME = "orthogonal"
"""The recurrent kernel's init whatever the scheme: Keras' ``recurrent_initializer``."""
_TORCH_DEFAULT_BIAS = "torch_default_bias"
_ATTENTION_SET = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def compound_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs of ``model``'s RNNs and multi-head attentions."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, COMPOUND)]


def parameters_set(module: nn.Module) -> set[str]:
    """The names of ``module``'s own parameters a scheme sets (the others stay as built)."""
    own = {n for n, _ in module.named_parameters(recurse=False)}
    if isinstance(module, nn.MultiheadAttention):
        return own & {*_ATTENTION_SET, "in_proj_bias"}
    return own if isinstance(module, (nn.RNNBase, nn.RNNCellBase)) else set()


def init_compound(
    name: str,
    module: nn.Module,
    init: Initializer,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """Set ``module``'s matrices with ``init`` and its biases with ``bias_init`` (``None``:
    keep them) and return the record row: the row's ``parameters`` maps each parameter
    name to what set it."""
    if isinstance(module, nn.MultiheadAttention):
        rules = _init_attention(module, init, bias_init, generator)
    else:
        rules = _init_recurrent(module, init, bias_init, generator)
    first = next(n for n in rules if n in _ATTENTION_SET or n.startswith("weight_ih"))
    weight = getattr(module, first)
    fans = _chunk_fans(module, first, weight)
    recurrent = " (recurrent: orthogonal)" if not isinstance(module, nn.MultiheadAttention) else ""
    return {
        "layer": name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, weight.shape)),
        "scheme": f"{init!r}{recurrent}",
        "fan_in": fans.fan_in,
        "fan_out": fans.fan_out,
        "expected_std": init.std(fans, shape=_chunk(module, first, weight).shape),
        "std": float(weight.detach().std()),
        "bias": _bias_text(module, bias_init),
        "parameters": rules,
    }


def kept_row(name: str, module: nn.Module, scheme: str) -> dict[str, Any]:
    """The record row of a layer left as built (``scheme``: what the plan called it)."""
    first = next(iter(sorted(parameters_set(module))), None)
    shape = getattr(module, first).shape if first else ()
    return {
        "layer": name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, shape)),
        "scheme": scheme,
        "bias": "kept",
        "parameters": dict.fromkeys(sorted(parameters_set(module)), "kept"),
    }


def _init_recurrent(
    module: nn.Module,
    init: Initializer,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
) -> dict[str, str]:
    recurrent = initializers.get(RECURRENT_SCHEME)
    hidden = module.hidden_size
    torch_bias = bias_init is not None and bias_init.name == _TORCH_DEFAULT_BIAS
    rules: dict[str, str] = {}
    for pname, param in module.named_parameters(recurse=False):
        if pname.startswith("weight_hh"):
            recurrent(param, generator)
            rules[pname] = repr(recurrent)
        elif pname.startswith("weight"):  # weight_ih, and an LSTM's projection weight_hr
            init(param, generator)
            rules[pname] = repr(init)
        elif bias_init is None:
            rules[pname] = "kept"
        elif torch_bias:  # the RNN's own U(±1/sqrt(H)) on both biases
            bias_init(param, generator, fans=(hidden, hidden))
            rules[pname] = repr(bias_init)
        else:
            rules[pname] = _keras_bias(module, pname, param, bias_init, generator)
    return rules


def _keras_bias(
    module: nn.Module,
    pname: str,
    param: Tensor,
    bias_init: Initializer,
    generator: torch.Generator | None,
) -> str:
    """``b_ih`` (and a GRU's ``b_hh``) from the policy, another ``b_hh`` 0, an LSTM's forget
    gate 1: Keras' single bias (with ``unit_forget_bias``) as PyTorch's two."""
    gru = _mode(module) == "GRU"
    if pname.startswith("bias_hh") and not gru:
        param.data.zero_()
        return "zeros (b_ih carries the bias)"
    bias_init(param, generator, fans=(module.hidden_size, module.hidden_size))
    if _mode(module) == "LSTM" and pname.startswith("bias_ih"):
        hidden = module.hidden_size
        param.data[hidden : 2 * hidden] = 1.0
        return f"{bias_init!r}, forget gate 1"
    return repr(bias_init)


def _mode(module: nn.Module) -> str:
    """``"LSTM"``, ``"GRU"`` or ``"RNN"`` for a layer or a cell."""
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    return "GRU" if isinstance(module, (nn.GRU, nn.GRUCell)) else "RNN"


def _init_attention(
    module: nn.MultiheadAttention,
    init: Initializer,
    bias_init: Initializer | None,
    generator: torch.Generator | None,
) -> dict[str, str]:
    rules: dict[str, str] = {}
    for pname in _ATTENTION_SET:
        weight = getattr(module, pname, None)
        if weight is None:
            continue
        for chunk in _chunks(module, pname, weight):
            init(chunk, generator)
        rules[pname] = (
            f"{init!r} (query, key, value each)" if pname == "in_proj_weight" else repr(init)
        )
    if module.in_proj_bias is not None:
        rules["in_proj_bias"] = "kept"
        if bias_init is not None:
            fans = [_chunk_fans(module, n, getattr(module, n)) for n in _input_weights(module)]
            for chunk, chunk_fans in zip(module.in_proj_bias.data.chunk(3), fans, strict=True):
                bias_init(chunk, generator, fans=chunk_fans)
            rules["in_proj_bias"] = repr(bias_init)
    return rules


def _input_weights(module: nn.MultiheadAttention) -> list[str]:
    """The weight each of query, key and value comes from (one packed, or three)."""
    if module.in_proj_weight is not None:
        return ["in_proj_weight"] * 3
    return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]


def _chunks(module: nn.Module, pname: str, weight: Tensor) -> list[Tensor]:
    """The ``E × fan_in`` maps inside ``weight``: three views of a packed projection."""
    return list(weight.data.chunk(3)) if pname == "in_proj_weight" else [weight.data]


def _chunk(module: nn.Module, pname: str, weight: Tensor) -> Tensor:
    return _chunks(module, pname, weight)[0]


def _chunk_fans(module: nn.Module, pname: str, weight: Tensor) -> Fans:
    """Fans of one map: ``[out, in]`` → (in, out), the tensor rule on one chunk."""
    return initializers.fans_of_tensor(_chunk(module, pname, weight))


def _bias_text(module: nn.Module, bias_init: Initializer | None) -> str:
    own = [n for n, _ in module.named_parameters(recurse=False)]
    if not any(n.startswith(("bias", "in_proj_bias")) for n in own):
        return "none"
    if bias_init is None:
        return "kept"
    if _mode(module) == "LSTM" and bias_init.name != _TORCH_DEFAULT_BIAS:
        return f"{bias_init!r}, forget gate 1"
    return repr(bias_init)


__all__ = ["COMPOUND", "compound_layers", "init_compound", "kept_row", "parameters_set"]
