"""Data-dependent schemes: registered here so they are listed and parsed like the others.

Filling a tensor alone gives only such a scheme's *start*; the data-driven part needs the
model and a batch and is run by :func:`initlab.initialize` (``data=...``), see
:mod:`initlab.lsuv`.
"""

from __future__ import annotations

from dataclasses import dataclass

from initlab.errors import InitlabError
from initlab.initializers.base import Scheme
from initlab.initializers.structured import Orthogonal


@dataclass(frozen=True)
class LSUVStart(Orthogonal):
    """LSUV's start: an orthonormal matrix (``orthogonal``, gain 1); the data pass follows.

    ``data_dependent`` tells :func:`initlab.initialize` to run the layer-sequential
    rescaling afterwards with ``tol``, ``max_iter`` and ``target_var``.
    """

    tol: float = 0.1
    max_iter: int = 10
    target_var: float = 1.0
    data_dependent: bool = True


def lsuv(tol: float = 0.1, max_iter: int = 10, target_var: float = 1.0) -> LSUVStart:
    """Mishkin & Matas (2016), Layer-Sequential Unit-Variance: orthonormal weights, then for
    each layer in forward order, W ← W·sqrt(target_var / Var(layer output on a batch)) until
    |Var − target_var| < tol or max_iter rescalings. Needs data: ``initialize(model, "lsuv",
    data=batch)``.
    """
    if not tol > 0:
        raise InitlabError(f"tol must be > 0, got {tol}")
    if max_iter < 1:
        raise InitlabError(f"max_iter must be >= 1, got {max_iter}")
    if not target_var > 0:
        raise InitlabError(f"target_var must be > 0, got {target_var}")
    return LSUVStart(gain=1.0, tol=tol, max_iter=max_iter, target_var=target_var)


SCHEMES = [
    Scheme(
        "lsuv",
        lsuv,
        "initlab",
        "orthonormal, then per layer W ← W·sqrt({target_var}/Var(output)) until "
        "|Var − {target_var}| < {tol} (≤ {max_iter} times); needs data",
    ),
]
