"""A user factory that calls torch.manual_seed builds one model for every seed: compare's
'default' runs then differ only in their data order, and their spread understates the
init's own. compare says so before training; a factory that draws per seed says nothing."""

import warnings

import pytest
import torch
from torch import nn

import initlab
from initlab.notes import InitlabNote

TINY = dict(data="digits", epochs=1, track="off", lr=0.05)


def seeded() -> nn.Module:
    torch.manual_seed(0)  # a reproducibility habit
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def unseeded() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def test_a_factory_that_seeds_torch_is_named_for_its_default_runs():
    with pytest.warns(InitlabNote, match=r"builds the same weights for seeds 0 and 1 \(does it"):
        results = initlab.compare(["default", "he_normal"], model=seeded, seeds=2, **TINY)
    default = results.runs[results.runs["init"] == "default"]
    assert len(default) == 2  # trained all the same: a note, not a refusal


def test_a_factory_that_draws_per_seed_or_one_seed_says_nothing_of_it():
    for factory, seeds in ((unseeded, 2), (seeded, 1)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            initlab.compare(["default"], model=factory, seeds=seeds, **TINY)
        assert not [w for w in caught if "same weights" in str(w.message)]
