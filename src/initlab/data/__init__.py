"""Datasets by name, with explicit, seeded splits.

>>> from initlab.data import load, names, info, availability
>>> ds = load("fashion-mnist")            # 55,000 train / 5,000 val (first 5,000) / 10,000 test
>>> ds.x_train.shape, ds.y_train.dtype    # (torch.Size([55000, 1, 28, 28]), torch.int64)
>>> availability("mnist")                 # 'will download (11 MB) into ~/.cache/initlab/mnist'

Datasets: ``fashion-mnist`` and ``mnist`` (IDX files found on disk or downloaded with SHA-256
checks), ``digits`` (scikit-learn), ``mnist1d`` (generated offline), ``synthetic`` (a
teacher-network task). Your own data: ``load("mymodule:make_data")``, ``load("path/file.py:fn")``
(**imports and runs that code**), ``load("data.npz")``, ``load("data.pt")``, with the task
(classification, regression, sequence) inferred from the targets; see :mod:`initlab.data.user`
and ``docs/datasets.md``.
"""

from initlab.data.dataset import TASKS, Dataset
from initlab.data.locate import cache_root
from initlab.data.registry import availability, canonical_name, info, load, names
from initlab.data.user import from_value


def clear_cache() -> None:
    """Forget every dataset decoded or generated in this process, and the arrays passed as
    ``data=`` (disk caches stay)."""
    from initlab.data import digits, mnist, mnist1d, synthetic, user
    from initlab.usercode.inprocess import forget_arrays

    forget_arrays()
    user.clear_cache()
    mnist._decode.cache_clear()
    digits.arrays.cache_clear()
    mnist1d._arrays.cache_clear()
    synthetic.arrays.cache_clear()


__all__ = [
    "TASKS",
    "Dataset",
    "availability",
    "cache_root",
    "canonical_name",
    "clear_cache",
    "from_value",
    "info",
    "load",
    "names",
]
