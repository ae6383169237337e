"""A model's own normalization layers (nanoGPT's LayerNorm, LLaMA's RMSNorm) count as norms,
as PyTorch's do: in residual rules, plans, notes and parameter kinds."""

import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.coverage import untouched_weights
from initlab.norm_layers import is_norm
from initlab.residual import apply_residual


class RMSNorm(nn.Module):  # LLaMA's
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class LayerNorm(nn.Module):  # nanoGPT's: LayerNorm with an optional bias
    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class NormalizingProjection(nn.Module):  # "Norm" in the name, but a matrix: not a norm
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.eye(dim))

    def forward(self, x):
        return x @ self.proj


class Block(nn.Module):
    def __init__(self, dim: int, norm: type) -> None:
        super().__init__()
        self.fc1, self.fc2, self.norm = nn.Linear(dim, dim), nn.Linear(dim, dim), norm(dim)

    def forward(self, x):
        return x + self.norm(self.fc2(torch.relu(self.fc1(x))))


def _net(norm: type) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), Block(16, norm), Block(16, norm), nn.Linear(16, 3))


def test_a_models_own_norms_are_norms_and_look_alikes_are_not():
    assert is_norm(RMSNorm(4)) and is_norm(LayerNorm(4, bias=False)) and is_norm(nn.BatchNorm1d(4))
    assert not is_norm(NormalizingProjection(4)) and not is_norm(nn.Linear(4, 4))
    assert not is_norm(nn.Sequential(LayerNorm(4)))  # a container of norms is not one


def test_zero_last_norm_zeroes_a_hand_written_rmsnorm_ending_each_branch():
    model = _net(RMSNorm)
    result = apply_residual(model, "zero_last_norm")
    assert result.actions == {"1.norm.weight": "zeroed", "2.norm.weight": "zeroed"}
    assert not model[1].norm.weight.any() and model[0].weight.any()


def test_plans_and_notes_treat_them_as_pytorchs_norms():
    model = _net(LayerNorm)
    roles = {row["name"]: row["role"] for row in initlab.plan(model, "he_normal").parameters}
    assert roles["1.norm.weight"] == roles["1.norm.bias"] == "branch 1, last norm"
    assert untouched_weights(model) == []  # norms are not "left as the factory built them"
    assert untouched_weights(_net(NormalizingProjection)) != []
