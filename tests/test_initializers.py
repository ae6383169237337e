"""The registry API: names, get, info, parse, register, errors, seeding, in-place filling."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab.errors import InitlabError, UnknownNameError
from initlab.initializers import (
    Fans,
    Initializer,
    Sampler,
    fans_of_module,
    get,
    info,
    names,
    parse,
    register,
    unregister,
)

REQUIRED = [
    *("zeros", "ones", "constant", "random_normal", "random_uniform", "truncated_normal"),
    *("variance_scaling", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform"),
    *("lecun_normal", "lecun_uniform", "orthogonal", "identity", "dirac", "delta_orthogonal"),
    *("sparse", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"),
    *("normal", "uniform", "trunc_normal", "eye", "torch_default", "torch_default_bias"),
    *("jax_normal", "jax_uniform"),
]
DETERMINISTIC = {"zeros", "ones", "constant", "identity", "eye", "dirac"}
CONV_ONLY = {"dirac", "delta_orthogonal"}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "initializers.md"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shape_for(name: str) -> tuple[int, ...]:
    return (8, 4, 3, 3) if name in CONV_ONLY else (16, 12)


def test_registry_has_every_required_name():
    assert set(REQUIRED) <= set(names())
    assert len(names()) == len(set(names()))


@pytest.mark.parametrize("name", REQUIRED)
def test_every_initializer_describes_itself(name):
    init, meta = get(name), info(name)
    assert isinstance(init, Initializer)
    assert init.name == meta["name"] == name
    assert init.origin == meta["origin"] and init.origin in {"keras", "pytorch", "jax", "initlab"}
    assert init.params == meta["params"]
    assert init.formula and "\n" not in init.formula and meta["formula"] == init.formula
    assert meta["doc"] and "\n" not in meta["doc"]
    assert any(k in meta for k in ("pytorch_equivalent", "keras_equivalent", "jax_equivalent"))
    assert parse(repr(init)) == init


@pytest.mark.parametrize("name", REQUIRED)
def test_fills_parameters_in_place_under_no_grad(name):
    param = nn.Parameter(torch.full(shape_for(name), 123.0))
    out = get(name)(param, gen(), fans=Fans(12, 16))
    assert out is param and param.requires_grad and param.grad_fn is None
    assert not torch.equal(param.detach(), torch.full(shape_for(name), 123.0))


@pytest.mark.parametrize("name", REQUIRED)
def test_seeding_and_the_global_rng(name):
    """Same seed, same numbers; another seed, other numbers; the global RNG is not touched."""
    init, shape = get(name), shape_for(name)
    before = torch.get_rng_state()
    first = init(torch.empty(shape), gen(1), fans=Fans(12, 16))
    again = init(torch.empty(shape), gen(1), fans=Fans(12, 16))
    other = init(torch.empty(shape), gen(2), fans=Fans(12, 16))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first, again)
    assert torch.equal(first, other) == (name in DETERMINISTIC)


def test_presets_are_variance_scaling_with_three_parameters():
    presets = {
        "glorot_uniform": (1.0, "fan_avg", "uniform"),
        "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
        "he_uniform": (2.0, "fan_in", "uniform"),
        "he_normal": (2.0, "fan_in", "truncated_normal"),
        "lecun_uniform": (1.0, "fan_in", "uniform"),
        "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    }
    for name, (scale, mode, distribution) in presets.items():
        core = get("variance_scaling", scale=scale, mode=mode, distribution=distribution)
        assert torch.equal(get(name)(torch.empty(30, 40), gen()), core(torch.empty(30, 40), gen()))
        assert get(name).formula == core.formula
        assert f"variance_scaling(scale={scale}, mode='{mode}'" in info(name)["doc"]


def test_he_normal_formula_states_the_truncation():
    assert get("he_normal").formula == (
        "truncated normal, std sqrt(2/fan_in), cut at ±2.27 std (N(0,1) cut at ±2, × std/0.8796)"
    )
    assert "UNtruncated" in info("he_normal")["pytorch_equivalent"]
    assert "TRUNCATED" in info("kaiming_normal")["keras_equivalent"]


def test_variance_scaling_normal_is_untruncated_like_jax():
    normal = get("variance_scaling", distribution="normal")
    untruncated = get("variance_scaling", distribution="untruncated_normal")
    assert torch.equal(normal(torch.empty(9, 9), gen()), untruncated(torch.empty(9, 9), gen()))
    assert normal.formula == "N(0, 1/fan_in)"


def test_get_passes_initializers_through_and_reads_specs():
    init = get("orthogonal", gain=2)
    assert get(init) is init
    assert init.params == {"gain": 2.0} and isinstance(init.params["gain"], float)
    assert get("orthogonal(gain=2)") == init
    assert get("He-Normal") == get("he_normal")
    with pytest.raises(InitlabError, match="cannot apply parameters"):
        get(init, gain=3.0)
    with pytest.raises(InitlabError, match="not both"):
        get("orthogonal(gain=2)", gain=3.0)


def test_equality_and_hashing():
    assert get("constant", value=1) == get("constant", value=1.0)
    assert get("constant", value=1) != get("constant", value=2)
    assert get("eye") != get("identity")
    assert len({get("he_normal"), get("he_normal"), get("glorot_normal")}) == 2


def test_repr():
    assert repr(get("he_normal")) == "he_normal"
    assert repr(get("variance_scaling", scale=2.0, mode="fan_in", distribution="uniform")) == (
        "variance_scaling(scale=2.0, mode='fan_in', distribution='uniform')"
    )


# ---- parse -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name", "params"),
    [
        ("he_normal", "he_normal", {}),
        ("he_normal()", "he_normal", {}),
        ("  orthogonal( gain = 1.41 ) ", "orthogonal", {"gain": 1.41}),
        (
            "variance_scaling(scale=2, mode=fan_in, distribution=uniform)",
            "variance_scaling",
            {"scale": 2.0, "mode": "fan_in", "distribution": "uniform"},
        ),
        ("constant(0.1)", "constant", {"value": 0.1}),
        ("trunc_normal(0, 0.02, a=-0.04)", "trunc_normal", {"mean": 0.0, "std": 0.02, "a": -0.04}),
        ("kaiming_normal(mode='fan_out')", "kaiming_normal", {"mode": "fan_out"}),
        ("kaiming_uniform(a=sqrt(5))", "kaiming_uniform", {"a": math.sqrt(5)}),
        ("dirac(groups=2.0)", "dirac", {"groups": 2}),
    ],
)
def test_parse(spec, name, params):
    init = parse(spec)
    assert init.name == name
    assert {k: init.params[k] for k in params} == params
    assert parse(repr(init)) == init


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "cannot read initializer spec"),
        ("orthogonal(gain=", "cannot read"),
        ("orthogonal(gain=)", "cannot read"),
        ("orthogonal(gain=__import__('os').getcwd())", "cannot read value"),
        ("orthogonal(gain=1+1)", "cannot read value"),
        ("orthogonal(gain=[1, 2])", "single scalar"),
        ("orthogonal(1, 2)", "takes 1 parameter"),
        ("he_normal(2)", "takes no parameters"),
        ("constant(0.1, value=2)", "given twice"),
        ("orthogonal(**{'gain': 2})", "not allowed"),
        ("orthogonal(gian=2)", "did you mean 'gain'"),
        ("he_normal(scale=2)", "takes no parameters"),
        ("orthogonal(gain=big)", "must be a float"),
        ("orthogonal(gain=1)(x)", "cannot read"),
        ("sqrt(5)(x)", "cannot read"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(InitlabError, match=re.escape(message)):
        parse(spec)


def test_parse_rejects_non_strings_and_never_evaluates(tmp_path, monkeypatch):
    with pytest.raises(InitlabError):
        parse(3)  # type: ignore[arg-type]
    marker = tmp_path / "evaluated"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InitlabError):
        parse("constant(value=open('evaluated', 'w'))")
    assert not marker.exists()


# ---- unknown names and bad parameters --------------------------------------------------------


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'he_normal'") as err:
        get("he_norml")
    assert err.value.kind == "initializer" and isinstance(err.value, ValueError)
    with pytest.raises(UnknownNameError, match="did you mean 'kaiming_uniform'"):
        parse("kaiming_unifrom(a=1)")
    with pytest.raises(UnknownNameError):
        info("nope")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("random_normal", {"stddev": -1.0}, "stddev must be >= 0"),
        ("normal", {"std": -0.1}, "std must be >= 0"),
        ("truncated_normal", {"stddev": 0.0}, "stddev must be > 0"),
        ("trunc_normal", {"a": 2.0, "b": -2.0}, "a must be <= b"),
        ("trunc_normal", {"a": 1.0, "b": 1.0}, "a must be < b"),
        ("random_uniform", {"minval": 1.0, "maxval": 0.0}, "minval must be <= maxval"),
        ("uniform", {"a": float("nan")}, "a must be a finite number"),
        ("constant", {"value": 1e308}, "value must be within ±1e+38 (weights are float32)"),
        ("normal", {"std": 1e39}, "std must be within ±1e+38"),
        ("variance_scaling", {"scale": 0.0}, "scale must be > 0"),
        ("variance_scaling", {"mode": "fan_inn"}, "did you mean 'fan_in'"),
        ("variance_scaling", {"mode": "avg"}, "fan_in, fan_out, fan_avg"),
        ("variance_scaling", {"distribution": "gaussian"}, "truncated_normal, untruncated_normal"),
        ("variance_scaling", {"scale": "2"}, "must be a float"),
        ("kaiming_normal", {"mode": "fan_avg"}, "mode must be one of fan_in, fan_out"),
        ("kaiming_uniform", {"nonlinearity": "gelu"}, "nonlinearity must be one of"),
        ("kaiming_uniform", {"nonlinearity": "Relu"}, "did you mean 'relu'"),
        ("xavier_normal", {"gain": -1.0}, "gain must be >= 0"),
        ("sparse", {"sparsity": 1.0}, "sparsity must be in [0, 1)"),
        ("sparse", {"sparsity": -0.1}, "sparsity must be in [0, 1)"),
        ("dirac", {"groups": 0}, "groups must be an integer >= 1"),
        ("dirac", {"groups": 1.5}, "must be a int"),
        ("jax_uniform", {"scale": -1.0}, "scale must be >= 0"),
        ("constant", {"value": True}, "must be a float"),
        ("orthogonal", {"gian": 2.0}, "unknown parameter 'gian'; did you mean 'gain'"),
        ("zeros", {"value": 1.0}, "takes no parameters"),
    ],
)
def test_bad_parameters_name_the_parameter(name, params, message):
    with pytest.raises(InitlabError, match=re.escape(message)) as err:
        get(name, **params)
    assert str(err.value).startswith(f"{name}: ")


def test_bad_call_arguments():
    with pytest.raises(InitlabError, match=r"expected a torch\.Tensor"):
        get("zeros")([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(InitlabError, match=r"torch\.Generator"):
        get("he_normal")(torch.empty(3, 3), 0)  # type: ignore[arg-type]
    with pytest.raises(InitlabError, match="dtype"):
        get("zeros")(torch.empty(3, 3, dtype=torch.long))
    with pytest.raises(InitlabError, match="fans must be"):
        get("he_normal")(torch.empty(3, 3), fans=5)  # type: ignore[arg-type]
    with pytest.raises(InitlabError, match="kaiming divides"):
        get("kaiming_normal")(torch.empty(3, 3), fans=Fans(0, 3))


def test_empty_tensor_is_a_no_op_and_fans_tuple_is_accepted():
    assert get("kaiming_normal")(torch.empty(0, 5)).shape == (0, 5)
    w = get("normal", std=2.0)(torch.empty(3, 3), gen(), fans=(4, 5))
    assert torch.equal(w, torch.empty(3, 3).normal_(0, 2.0, generator=gen()))


def test_std_is_none_where_entries_differ_in_law():
    for name in ("identity", "eye", "dirac", "delta_orthogonal"):
        assert get(name).std(Fans(4, 4)) is None
    assert get("zeros").std(Fans(4, 4)) == 0.0
    assert get("he_normal").std((784, 300)) == pytest.approx(math.sqrt(2 / 784))


def test_module_fans_through_an_initializer():
    """A transposed conv initialized with module fans gets He's std for its real fan_in."""
    layer = nn.ConvTranspose2d(64, 8, 3)  # weight [64, 8, 3, 3]; real fan_in 64·9
    init = get("kaiming_normal", nonlinearity="relu")
    init(layer.weight, gen(), fans=fans_of_module(layer))
    assert float(layer.weight.detach().std()) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    init(layer.weight, gen())  # tensor rule: fan_in read as 8·9
    assert float(layer.weight.detach().std()) == pytest.approx(math.sqrt(2 / (8 * 9)), rel=0.05)


# ---- register ----------------------------------------------------------------------------------


def test_register_a_fill_function():
    def scaled_sign(scale: float = 1.0):
        """Random signs times scale / sqrt(fan_in)."""

        def fill(tensor, generator, fans):
            signs = torch.randint(0, 2, tensor.shape, generator=generator) * 2 - 1
            tensor.copy_(signs * scale / math.sqrt(fans.fan_in))

        return fill

    register("scaled_sign", scaled_sign, origin="initlab", formula="±{scale}/sqrt(fan_in)")
    try:
        init = parse("scaled_sign(scale=2)")
        w = init(torch.empty(4, 16), gen())
        assert set(w.abs().flatten().tolist()) == {0.5}
        assert info("scaled_sign")["params"] == {"scale": 1.0}
        assert info("scaled_sign")["doc"] == "Random signs times scale / sqrt(fan_in)."
        assert init.formula == "±2.0/sqrt(fan_in)" and init.std(Fans(16, 4)) is None
        assert "scaled_sign" in names()
        with pytest.raises(InitlabError, match="already registered"):
            register("scaled_sign", scaled_sign, origin="initlab", formula="x")
    finally:
        unregister("scaled_sign")
    assert "scaled_sign" not in names()


def test_register_a_sampler_and_validation():
    class Half(Sampler):
        def fill(self, tensor, generator, fans):
            tensor.fill_(0.5)

        def std(self, fans, shape=None):
            return 0.0

    register("half", lambda: Half(), origin="initlab", formula="W = 0.5")
    try:
        assert torch.equal(get("half")(torch.empty(2, 2)), torch.full((2, 2), 0.5))
        assert get("half").std(Fans(1, 1)) == 0.0
    finally:
        unregister("half")
    with pytest.raises(InitlabError, match="already registered"):
        register("he_normal", lambda: Half(), origin="initlab", formula="x")
    with pytest.raises(InitlabError, match="needs a default"):
        register("needs_value", lambda value: Half(), origin="initlab", formula="x")
    with pytest.raises(InitlabError, match="lowercase"):
        register("Bad Name", lambda: Half(), origin="initlab", formula="x")
    with pytest.raises(InitlabError, match="built in"):
        unregister("he_normal")
    assert "needs_value" not in names()


# ---- documentation -----------------------------------------------------------------------------


def test_docs_table_lists_every_scheme():
    text = DOCS.read_text(encoding="utf-8")
    for name in names():
        assert f"| `{name}` |" in text, name
    assert "Keras vs PyTorch: same name, different numbers" in text


def test_plan_as_an_init_points_to_the_doctor_that_trains_it():
    """`compare --inits default,plan` listed every initializer name: 'plan' is the doctor's."""
    from initlab.errors import InitlabError
    from initlab.initializers import parse

    with pytest.raises(InitlabError, match=r"^'plan' is not an initializer: .*doctor --trials"):
        parse("plan")


def test_a_spec_giving_a_parameter_twice_is_refused():
    """'orthogonal(gain=1, gain=2)' read as orthogonal(gain=2.0): the last value won."""
    from initlab.errors import InitlabError
    from initlab.initializers import parse

    with pytest.raises(InitlabError, match=r"gives gain twice: give it once"):
        parse("orthogonal(gain=1, gain=2)")
