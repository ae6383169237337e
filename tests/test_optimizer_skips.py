"""A parameter a model did not use this step (data-dependent code) is skipped for that model
as ``torch.optim`` skips a ``None`` gradient: value, momentum and Adam moments unchanged, and
Adam's step count per parameter (its bias correction) not advanced. So a model trains to the
same numbers whichever models share its stack (the looped strategy runs such models).

Tolerance: ``2 eps(float32)`` per step, relative and absolute (values are O(1)): each model
runs the same kernels alone and in the stack, so the updates differ only by the rounding of
the optimizer's own elementwise arithmetic (Adam's bias corrections are float64 in both, as
``torch.optim`` computes them; float32 ones were off by 1.3e-5 relative).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.train.optimizers import StackedOptimizer, effective_weight_decay
from initlab.train.stack import ModelStack

STEPS, WIDTH = 6, 8
TOL = 2 * torch.finfo(torch.float32).eps * STEPS


class Gated(nn.Module):
    """``b`` runs only on batches with a positive mean: its parameters skip other steps."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, WIDTH), nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if x.mean() > 0:
            h = torch.tanh(self.b(h))
        return self.out(h)


OPTIMIZERS = {
    "momentum": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd),
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "adamw": lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd),
}


def batches(m: int) -> list[torch.Tensor]:
    """Model ``m``'s inputs: ``b`` is used on the steps where ``(step + m) % 3 == 0``, so the
    two models skip it on different steps (never on the first for model 0, on it for 1)."""
    gen = torch.Generator().manual_seed(m)
    out = []
    for step in range(STEPS):
        x = torch.randn(5, 4, generator=gen).abs()
        out.append(x if (step + m) % 3 == 0 else -x)
    return out


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("size", [1, 2], ids=["alone", "stacked"])
def test_skipped_parameters_train_as_torch_optim_alone(kind, wd, size):
    """(A stack of one: the gradient is ``None`` for the whole stack on skipped steps.)"""
    torch.manual_seed(0)
    models = [Gated() for _ in range(size)]
    alone = [[p.detach().clone().requires_grad_(True) for p in m.parameters()] for m in models]
    stack = ModelStack(models, torch.device("cpu"), "looped")
    decay = effective_weight_decay(kind, wd)
    opt = StackedOptimizer(
        kind, list(stack.params.values()), [0.05] * size, [0.9] * size, [wd] * size
    )
    for step in range(STEPS):
        x = torch.stack([batches(m)[step] for m in range(size)])
        stack.zero_grad()
        stack.forward(x, train=True).square().sum().backward()
        opt.step(None, stack.grads(), stack.present())
    for m in range(size):
        reference = Gated()
        with torch.no_grad():
            for p, q in zip(reference.parameters(), alone[m], strict=True):
                p.copy_(q)
        ref_opt = OPTIMIZERS[kind](list(reference.parameters()), 0.05, decay)
        for x in batches(m):
            ref_opt.zero_grad(set_to_none=True)
            reference(x).square().sum().backward()
            ref_opt.step()
        for name, p in reference.named_parameters():
            got = stack.params[name][m].detach()
            torch.testing.assert_close(got, p.detach(), rtol=TOL, atol=TOL, msg=name)
