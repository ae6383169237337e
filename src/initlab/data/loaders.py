"""What map-style data is not: a ``DataLoader`` (initlab batches the data itself: pass its
``.dataset``), and a Dataset whose items change when read again (a random transform, drawn
once when initlab reads the Dataset into tensors)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

from initlab.errors import InitlabError
from initlab.notes import note

LOADER_FIX = "pass (train_loader.dataset, test_loader.dataset) (initlab batches the data itself)"
"""What to do with a torch ``DataLoader`` given as data."""


def is_loader(value: object) -> bool:
    """Whether ``value`` is a torch ``DataLoader`` (whose ``.dataset`` initlab takes)."""
    return isinstance(value, DataLoader)


def refuse_loaders(data: object) -> None:
    """One line for ``data=`` that is a ``DataLoader``, or a 4-tuple holding one: pass the
    loaders' datasets (:data:`LOADER_FIX`); a ``(DataLoader, DataLoader)`` pair is refused
    so by :func:`stack`."""
    from initlab.data.user import KEYS

    if is_loader(data):
        raise InitlabError(f"data is a DataLoader; {LOADER_FIX}")
    if isinstance(data, (tuple, list)) and len(data) == 4:
        loaders = [name for name, part in zip(KEYS, data, strict=True) if is_loader(part)]
        if loaders:
            raise InitlabError(f"data: {loaders[0]} is a DataLoader; {LOADER_FIX}")


def note_random_items(dataset: Any, first: Tensor, which: str) -> None:
    """A note when reading item 0 again gives other inputs (a random augmentation in
    ``__getitem__``): the Dataset is read once into tensors, so its transform is drawn once
    per example, not once per epoch as a DataLoader would."""
    from initlab.data.values import as_tensor

    try:
        again = as_tensor(default_collate([dataset[0]])[0], f"x_{which}", "")[0]
    except Exception:  # read once already: a second read failing is not the user's error
        return
    same = again.shape == first.shape and bool(
        ((again == first) | (again.isnan() & first.isnan())).all()
        if again.is_floating_point() else torch.equal(again, first)
    )  # fmt: skip
    if not same and again.shape == first.shape:
        note(
            f"the {which} Dataset gives other inputs for the same item when read again "
            "(a random transform?): initlab reads every item once into tensors, so each "
            "example keeps the one draw it got, not a new one per epoch"
        )
