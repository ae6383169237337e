"""Weight initializers with the exact semantics of Keras, PyTorch and JAX, by name.

Example::

    from initlab.initializers import get, parse, fans_of_module
    init = get("he_normal")            # Keras: truncated normal, std sqrt(2/fan_in)
    init = parse("orthogonal(gain=1.41)")
    init(layer.weight, generator, fans=fans_of_module(layer))  # fills in place

Keras/JAX names (``glorot_*``, ``he_*``, ``lecun_*``) are ``variance_scaling`` presets;
PyTorch names (``xavier_*``, ``kaiming_*``, ``torch_default``) reproduce ``torch.nn.init``
number for number. See ``docs/initializers.md`` for the table and the traps.
"""

from initlab.initializers.base import FunctionSampler, Initializer, Sampler, Scheme
from initlab.initializers.fans import Fans, as_fans, fans_of_module, fans_of_tensor
from initlab.initializers.parse import split_spec
from initlab.initializers.registry import get, info, names, parse, register, unregister

__all__ = [
    "Fans",
    "FunctionSampler",
    "Initializer",
    "Sampler",
    "Scheme",
    "as_fans",
    "fans_of_module",
    "fans_of_tensor",
    "get",
    "info",
    "names",
    "parse",
    "register",
    "split_spec",
    "unregister",
]
