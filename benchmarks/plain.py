"""The plain PyTorch loops the benchmarks compare initlab with, written as users write them.

The seed MLP (784-300-100-10 ReLU, He init, zero biases), SGD lr 0.01, batch 32, a validation
pass after each epoch and a test pass at the end (as initlab's engine does, whose
``train_seconds`` include both): ``plain_dataloader`` is the PyTorch tutorial's loop (``DataLoader``
over a ``TensorDataset``, ``shuffle=True``); ``plain_indexed`` a careful user's (shuffle the
indices, slice the in-memory tensors). Both return seconds per epoch.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def user_model() -> nn.Module:
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return model


def validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def plain_dataloader(data, epochs: int) -> float:
    """The tutorial loop: DataLoader(TensorDataset, shuffle=True)."""
    model = user_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=32, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        validate(model, data.x_val, data.y_val)
    validate(model, data.x_test, data.y_test)
    return (time.perf_counter() - start) / epochs


def plain_indexed(data, epochs: int) -> float:
    """A careful user's loop: shuffle indices, slice the in-memory tensors."""
    model = user_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n = len(data.x_train)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
        validate(model, data.x_val, data.y_val)
    validate(model, data.x_test, data.y_test)
    return (time.perf_counter() - start) / epochs
