"""initlab — a weight-initialization laboratory for PyTorch.

>>> import initlab
>>> init = initlab.initializers.get("he_normal")          # Keras semantics: truncated normal
>>> record = initlab.initialize(model, "he_normal", output_layer="glorot_uniform")
>>> results = initlab.compare(["zeros", "he_normal"], seeds=3, dataset="digits")
>>> print(initlab.diagnose(model, batch_x, batch_y))     # per-layer statistics + findings
>>> plan = initlab.recommend(model, batch_x)             # a scheme per layer, with reasons
"""

from initlab import mkl_dispatch

mkl_dispatch.enable()  # must run before torch is imported: see initlab.mkl_dispatch

from initlab import activations, data, initializers
from initlab.apply import initialize
from initlab.compare import compare
from initlab.config import RunConfig
from initlab.doctor import Plan, recommend
from initlab.errors import InitlabError
from initlab.probe import Diagnosis, diagnose
from initlab.results import ResultSet
from initlab.theory.gains import gain

__version__ = "0.1.0"

__all__ = [
    "Diagnosis",
    "InitlabError",
    "Plan",
    "ResultSet",
    "RunConfig",
    "activations",
    "compare",
    "data",
    "diagnose",
    "gain",
    "initialize",
    "initializers",
    "recommend",
]
