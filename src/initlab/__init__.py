"""initlab — a weight-initialization laboratory for PyTorch.

>>> import initlab
>>> init = initlab.initializers.get("he_normal")          # Keras semantics: truncated normal
>>> record = initlab.initialize(model, "he_normal", output_init="glorot_uniform")
>>> results = initlab.compare(["zeros", "he_normal"], seeds=3, data="digits")
>>> print(initlab.diagnose(model, batch_x, batch_y))     # per-layer statistics + findings
>>> plan = initlab.recommend(model, batch_x)             # a scheme per layer, with reasons
>>> evidence = initlab.trials(model=factory, data="digits", budget="2m")  # ... and a winner?
>>> scaling = initlab.coord_check(factory, widths=(64, 128, 256), param="mup")  # verdicts

``import initlab`` only imports: the public names are loaded on first use (PEP 562), so
importing ``initlab`` or one of its light modules (``initlab.cli``, ``initlab.mkl_dispatch``)
does not import torch, and nothing is compiled, loaded or set. On AMD CPUs with AVX-512,
call :func:`initlab.mkl_dispatch.enable` before importing torch to give MKL its AVX-512
kernels (the ``initlab`` command does; see docs/performance.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

from initlab._version import __version__ as __version__

# public name -> the module that defines it (a submodule of the same name is the module itself)
_PUBLIC = {
    "Diagnosis": "initlab.probe",
    "InitlabError": "initlab.errors",
    "InitlabNote": "initlab.notes",
    "Plan": "initlab.doctor",
    "ResultSet": "initlab.results",
    "RunConfig": "initlab.config",
    "activations": None,
    "assert_healthy_init": "initlab.testing",
    "compare": "initlab.compare",
    "coord_check": "initlab.scaling.check",
    "data": None,
    "diagnose": "initlab.probe",
    "gain": "initlab.theory.gains",
    "initialize": "initlab.apply",
    "initializers": None,
    "parametrize": "initlab.scaling.parametrize",
    "plan": "initlab.residual.plan",
    "recommend": "initlab.doctor",
    "trials": "initlab.doctor.workflow",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Load a public name, or a submodule (``initlab.mkl_dispatch``), on first access."""
    if name in _PUBLIC:
        source = _PUBLIC[name]
        module = importlib.import_module(f"{__name__}.{name}" if source is None else source)
        value = module if source is None else getattr(module, name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


class _Package(types.ModuleType):
    """``initlab`` itself: importing the submodule ``initlab.compare`` must not replace the
    function ``initlab.compare`` (the import system sets a package attribute per submodule)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PUBLIC and _PUBLIC[name] is not None and isinstance(value, types.ModuleType):
            return  # a submodule that shares a public name: the name stays the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
