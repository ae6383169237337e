"""Saving and loading initialized weights without ever unpickling arbitrary objects.

``.safetensors`` files hold tensors only, by construction. Any other suffix is a
``torch.save`` of the state dict, read back with ``torch.load(weights_only=True)``, which
refuses everything but tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from initlab.errors import InitlabError


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors by suffix, else torch.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Load weights saved by :func:`save_weights` (or any tensors-only state dict)."""
    path = Path(path)
    if not path.exists():
        raise InitlabError(f"no weights file at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file or one holding arbitrary objects
        raise InitlabError(f"cannot read weights from {path}: {exc}") from None
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InitlabError(f"the weights in {path} do not fit this model: {first}") from None
    return model
