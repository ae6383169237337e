"""Saving and loading initialized weights without ever unpickling arbitrary objects.

``.safetensors`` files hold tensors only, by construction. Any other suffix is a
``torch.save`` of the state dict, read back with ``torch.load(weights_only=True)``, which
refuses everything but tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from initlab.atomic_files import write_file
from initlab.errors import InitlabError, some_names


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors by suffix, else torch.save),
    all or nothing (:func:`initlab.atomic_files.write_file`: a kill or a full disk never
    leaves a truncated file).

    A tied tensor (an output layer sharing its embedding's weight) is written once in a
    safetensors file, its other names recorded in the metadata as ``alias: kept name`` (as
    ``safetensors.torch.save_model`` does), and :func:`load_weights` ties it again (so does
    ``safetensors.torch.load_model``; a plain ``model.load_state_dict(load_file(path))``
    misses the alias: ``strict=False``). A new file gets the umask's permissions (not the
    0600 of ``safetensors.torch.save_file``), a replaced one keeps its own."""
    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        from initlab.ties import tied_names

        aliases = {k: kept for k, kept in tied_names(model).items() if k != kept and k in state}
        kept = {k: v for k, v in state.items() if k not in aliases}
        return write_file(path, lambda p: save_file(kept, str(p), metadata=aliases or None))
    return write_file(path, lambda p: torch.save(state, p))


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Load weights saved by :func:`save_weights` (or any tensors-only state dict)."""
    path = Path(path)
    if not path.exists():
        raise InitlabError(f"no weights file at {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
            state.update(tied_aliases(path, state))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file or one holding arbitrary objects
        raise InitlabError(f"cannot read weights from {path}: {exc}") from None
    problems = mismatches(model.state_dict(), state, strict=strict)
    if problems:
        raise InitlabError(f"the weights in {path} do not fit this model: {problems}")
    model.load_state_dict(state, strict=strict)
    return model


def mismatches(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], *, strict: bool = True
) -> str:
    """One line naming what keeps ``found`` from loading into a model whose state dict is
    ``expected``: missing and unexpected names (``strict`` only) and shapes that differ,
    the first three of each; ``""`` when it loads."""
    parts = []
    if strict:
        parts.append(_listed("missing", sorted(set(expected) - set(found))))
        parts.append(_listed("unexpected", sorted(set(found) - set(expected))))
    shapes = [
        f"{k} {list(found[k].shape)} in the file, {list(v.shape)} in the model"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    parts.append(_listed("shape of", shapes))
    return "; ".join(p for p in parts if p)


def _listed(what: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"{what} {some_names(items)}"


def tied_aliases(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The names ``save_model`` left out of a safetensors file for tensors written once
    (metadata ``alias -> kept name``), each mapped to its kept tensor."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return {alias: state[kept] for alias, kept in metadata.items() if kept in state}
