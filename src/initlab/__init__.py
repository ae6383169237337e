"""initlab — a weight-initialization laboratory for PyTorch.

>>> import initlab
>>> init = initlab.initializers.get("he_normal")          # Keras semantics: truncated normal
>>> record = initlab.initialize(model, "he_normal", output_layer="glorot_uniform")
>>> results = initlab.compare(["zeros", "he_normal"], seeds=3, dataset="digits")
"""

from initlab import activations, data, initializers
from initlab.apply import initialize
from initlab.compare import compare
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.results import ResultSet
from initlab.theory.gains import gain

__version__ = "0.1.0"

__all__ = [
    "InitlabError",
    "ResultSet",
    "RunConfig",
    "activations",
    "compare",
    "data",
    "gain",
    "initialize",
    "initializers",
]
