"""PyTorch names reproduce ``torch.nn.init`` number for number, given identically seeded
generators: equal to float rounding (the floating-point rule of tests/conftest.py), exactly
where no arithmetic is involved (constants, eye, dirac)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.initializers import Fans, fans_of_module, get, parse

init = torch.nn.init


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_same_numbers(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """``|ours - theirs| <= 50 · eps · sqrt(n) · max|theirs|``, ``n`` the row length (the
    longest reduction either side runs: orthogonal's QR)."""
    n = theirs[0].numel() if theirs.dim() > 1 else theirs.numel()
    atol = 50 * torch.finfo(theirs.dtype).eps * math.sqrt(n) * float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=0, atol=atol)


SHAPES = [(30, 50), (50, 30), (8, 4, 3, 3), (6, 2, 5)]

CASES = [
    ("xavier_normal", init.xavier_normal_, {}),
    ("xavier_normal(gain=2.5)", init.xavier_normal_, {"gain": 2.5}),
    ("xavier_uniform", init.xavier_uniform_, {}),
    ("xavier_uniform(gain=0.5)", init.xavier_uniform_, {"gain": 0.5}),
    ("kaiming_normal", init.kaiming_normal_, {}),
    ("kaiming_normal(nonlinearity=relu)", init.kaiming_normal_, {"nonlinearity": "relu"}),
    (
        "kaiming_normal(a=0.2, mode=fan_out)",
        init.kaiming_normal_,
        {"a": 0.2, "mode": "fan_out"},
    ),
    ("kaiming_normal(nonlinearity=tanh)", init.kaiming_normal_, {"nonlinearity": "tanh"}),
    ("kaiming_uniform", init.kaiming_uniform_, {}),
    ("kaiming_uniform(a=sqrt(5))", init.kaiming_uniform_, {"a": math.sqrt(5)}),
    (
        "kaiming_uniform(mode=fan_out, nonlinearity=selu)",
        init.kaiming_uniform_,
        {"mode": "fan_out", "nonlinearity": "selu"},
    ),
    ("normal", init.normal_, {}),
    ("normal(mean=0.5, std=2)", init.normal_, {"mean": 0.5, "std": 2.0}),
    ("uniform", init.uniform_, {}),
    ("uniform(a=-1, b=3)", init.uniform_, {"a": -1.0, "b": 3.0}),
    ("trunc_normal", init.trunc_normal_, {}),
    (
        "trunc_normal(mean=0.1, std=0.5, a=-0.3, b=0.8)",
        init.trunc_normal_,
        {"mean": 0.1, "std": 0.5, "a": -0.3, "b": 0.8},
    ),
    (  # p < 0.3: torch's second (uniform proposal) algorithm
        "trunc_normal(a=2, b=3)",
        init.trunc_normal_,
        {"a": 2.0, "b": 3.0},
    ),
    ("orthogonal", init.orthogonal_, {}),
    ("orthogonal(gain=1.41)", init.orthogonal_, {"gain": 1.41}),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("spec", "torch_fn", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_same_numbers_as_torch_nn_init(spec, torch_fn, kwargs, shape):
    ours = parse(spec)(torch.empty(shape), gen(7))
    theirs = torch_fn(torch.empty(shape), generator=gen(7), **kwargs)
    assert_same_numbers(ours, theirs)
    with pytest.raises(AssertionError):  # another draw is not "the same numbers"
        assert_same_numbers(parse(spec)(torch.empty(shape), gen(8)), theirs)


@pytest.mark.parametrize(
    ("spec", "torch_fn", "kwargs", "shape"),
    [
        ("zeros", init.zeros_, {}, (5, 7)),
        ("ones", init.ones_, {}, (5, 7)),
        ("constant(value=0.3)", init.constant_, {"val": 0.3}, (5, 7)),
        ("eye", init.eye_, {}, (5, 7)),
        ("identity", init.eye_, {}, (7, 5)),
        ("dirac", init.dirac_, {}, (6, 4, 3, 3)),
        ("dirac(groups=2)", init.dirac_, {"groups": 2}, (6, 4, 5)),
        ("dirac(groups=3)", init.dirac_, {"groups": 3}, (6, 2, 3, 3, 3)),
    ],
)
def test_deterministic_schemes_equal_torch(spec, torch_fn, kwargs, shape):
    assert torch.equal(parse(spec)(torch.full(shape, 9.0)), torch_fn(torch.empty(shape), **kwargs))


def test_fans_override_changes_only_the_scale():
    """With fans=..., kaiming uses the given fan: same draws as torch at that std."""
    ours = get("kaiming_normal", nonlinearity="relu")(torch.empty(4, 5), gen(), fans=Fans(100, 7))
    assert_same_numbers(ours, torch.empty(4, 5).normal_(0, math.sqrt(2.0) / 10, generator=gen()))


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Linear(784, 300),
        lambda: nn.Linear(3, 1),
        lambda: nn.Conv2d(3, 16, 5),
        lambda: nn.Conv1d(8, 4, 3, groups=2),
    ],
)
def test_torch_default_equals_the_layers_own_init(make):
    """``torch_default`` + ``torch_default_bias`` = what the layer's constructor draws."""
    with torch.random.fork_rng():
        torch.manual_seed(123)
        layer = make()
    weight, bias = torch.empty_like(layer.weight), torch.empty_like(layer.bias)
    g = gen(123)
    get("torch_default")(weight, g)
    get("torch_default_bias")(bias, g, fans=fans_of_module(layer))
    assert_same_numbers(weight, layer.weight.detach())
    assert_same_numbers(bias, layer.bias.detach())


def test_sparse_draws_torchs_normals_and_zeroes_with_the_generator():
    """The nonzero entries are torch's N(0, std²) draws for the same generator state."""
    ours = get("sparse", sparsity=0.2, std=0.3)(torch.empty(50, 40), gen(5))
    normals = torch.empty(50, 40).normal_(0, 0.3, generator=gen(5))
    kept = ours != 0
    assert torch.equal(ours[kept], normals[kept])
    assert int(kept.sum()) == 40 * (50 - 10)
