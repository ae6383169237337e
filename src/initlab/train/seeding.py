"""Independent random streams derived from one run seed.

A run's seed feeds several streams — the initial weights, the order of the training data,
dropout masks — and each stream gets its own generator, so changing how one stream is used
(e.g. more dropout layers) never shifts the numbers of another (e.g. the initial weights).
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` ("init", "data", "dropout", ...) derived from ``seed``.

    ``int(sha256(f"{seed}:{stream}")[:8]) mod 2**63``: stable across Python versions and
    platforms (unlike ``hash``).
    """
    digest = hashlib.sha256(f"{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, stream)``."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))


def seed_global(seed: int, device: torch.device) -> None:
    """Seed the global generators that dropout on ``device`` draws from: the CPU's and, on
    an accelerator, that device's (``torch.manual_seed`` would also queue a lazy seeding of
    every CUDA device, ≈ 1 ms with a captured stack trace, benchmarks/README.md)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def global_rng_state(device: torch.device) -> torch.Tensor:
    """The state of the global generator that dropout on ``device`` draws from (the CPU's,
    or that accelerator's), to continue it later with :func:`set_global_rng_state`."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return torch.get_rng_state()


def set_global_rng_state(state: torch.Tensor, device: torch.device) -> None:
    """Continue ``device``'s global generator from ``state`` (:func:`global_rng_state`)."""
    state = state.cpu()
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)
    else:
        torch.set_rng_state(state)
