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
