"""initlab.testing: healthy inits pass, injected faults fail with their findings."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab.apply import initialize
from initlab.testing import assert_healthy_init


def _tanh(depth=12, width=64):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 64, generator=g), torch.randint(0, 10, (256,), generator=g)


def test_a_glorot_tanh_net_is_healthy(healthy_init):
    model = _tanh()
    initialize(model, "glorot_normal", generator=torch.Generator().manual_seed(0))
    healthy_init(model, *_batch())


@pytest.mark.parametrize(
    ("scheme", "finding"),
    [
        ("random_normal(stddev=0.01)", "vanishing"),
        ("random_normal(stddev=1.0)", "saturation"),
        ("constant(0.05)", "symmetry"),
    ],
)
def test_injected_bad_inits_fail_with_the_finding(scheme, finding):
    model = _tanh()
    initialize(model, scheme, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match=finding):
        assert_healthy_init(model, *_batch())


def test_dead_relu_units_fail_and_allow_tolerates():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    initialize(model, "he_normal", bias=-100.0, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="dead_units"):
        assert_healthy_init(model, *_batch())
    names = ["dead_units", "vanishing_activations", "vanishing_gradients", "symmetry"]
    assert_healthy_init(model, *_batch(), allow=names)


def test_the_example_in_docs_testing_runs():
    text = (Path(__file__).parents[1] / "docs" / "testing.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    space: dict = {}
    exec(code, space)
    tests = [v for k, v in space.items() if k.startswith("test_")]
    assert tests
    for test in tests:
        test()


def test_the_plugin_imports_no_torch():
    # pytest loads initlab.testing in every session of an environment with initlab
    # installed (entry point pytest11): it must not import torch (nor run anything) there
    import subprocess
    import sys

    code = "import initlab.testing, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_docs_name_every_finding_allow_takes():
    """docs/testing.md listed 10 findings of 12: the recurrent ones could not be allowed by a
    reader who did not know their names."""
    from initlab.probe.findings import FINDINGS

    page = (Path(__file__).parents[1] / "docs" / "testing.md").read_text()
    assert [name for name in FINDINGS if f"`{name}`" not in page] == []


def test_allow_takes_a_name_or_names_and_refuses_the_rest():
    """allow="dead_units" was read as its letters (the finding not allowed); a misspelled
    name never matched, silently; allow=3 was a TypeError (API fuzz)."""
    from initlab.errors import InitlabError

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    initialize(model, "he_normal", bias=-10.0)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="dead_units"):
        assert_healthy_init(model, x)
    assert_healthy_init(model, x, allow=["dead_units", "vanishing_gradients"])
    with pytest.raises(AssertionError, match="vanishing_gradients") as caught:
        assert_healthy_init(model, x, allow="dead_units")  # one name, not its letters
    assert "dead_units" not in str(caught.value)
    with pytest.raises(InitlabError, match="did you mean 'dead_units'"):
        assert_healthy_init(model, x, allow=["dead_unit"])
    with pytest.raises(InitlabError, match="allow takes names of findings, got 3"):
        assert_healthy_init(model, x, allow=3)
