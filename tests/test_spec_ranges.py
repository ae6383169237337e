"""Every setting's range, checked before anything runs: in a spec, in a TOML file, and in
``RunConfig`` itself (the Python API). Each mistake is one line naming the field, the value
and the valid range."""

import math

import pytest

from initlab.cli import main
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.ranges import RANGES
from initlab.sweep import expand, load_spec, parse_spec

FIXED = {"dataset": "digits", "hidden": [16], "epochs": 1}
NAN, INF = math.nan, math.inf

# (field, bad value, text of the valid range that the message must contain)
BAD = [
    ("epochs", 0, "an integer >= 1"),
    ("epochs", -3, "an integer >= 1"),
    ("epochs", 2.5, "an integer >= 1"),
    ("epochs", True, "an integer >= 1"),
    ("batch_size", 0, "an integer >= 1"),
    ("batch_size", False, "an integer >= 1"),
    ("limit_train", -5, "an integer >= 1 (or unset: all examples)"),
    ("limit_train", 0, "an integer >= 1"),
    ("val_size", -10, "an integer >= 0 (or unset: the dataset's default)"),
    ("val_size", 1.5, "an integer >= 0"),
    ("seed", -1, "an integer in [0, 9223372036854775807]"),
    ("seed", 2**63, "an integer in [0, 9223372036854775807]"),
    ("lr", 0, "a finite number in (0, 1e+38]"),
    ("lr", -0.1, "a finite number in (0, 1e+38]"),
    ("lr", NAN, "a finite number in (0, 1e+38]"),
    ("lr", INF, "a finite number in (0, 1e+38]"),
    ("lr", True, "a finite number in (0, 1e+38]"),
    ("momentum", 1.0, "a finite number in [0, 1)"),
    ("momentum", -0.5, "a finite number in [0, 1)"),
    ("momentum", NAN, "a finite number in [0, 1)"),
    ("weight_decay", -1e-4, "a finite number in [0, 1e+38]"),
    ("weight_decay", INF, "a finite number in [0, 1e+38]"),
    ("lr", 1e308, "a finite number in (0, 1e+38]"),  # float32 overflowed in the first step
    ("dropout", 1.0, "a finite number in [0, 1)"),
    ("warmup_steps", -1, "an integer in [0, 9223372036854775807]"),
    ("warmup_steps", 2.5, "an integer in [0, 9223372036854775807]"),
    ("clip_norm", 0.0, "a finite number in (0, 1e+38] (or unset: no clipping)"),
    ("clip_norm", INF, "a finite number in (0, 1e+38]"),
    ("dropout", -0.1, "a finite number in [0, 1)"),
    ("dropout", NAN, "a finite number in [0, 1)"),
    ("device", "gpu", "auto, cpu, cuda, cuda:N or mps"),
    ("device", "cuda:one", "auto, cpu, cuda, cuda:N or mps"),
    ("device", 0, "auto, cpu, cuda, cuda:N or mps"),
]


@pytest.mark.parametrize(("key", "value", "valid"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_each_bad_value_is_one_line_naming_field_value_and_range(key, value, valid):
    with pytest.raises(InitlabError) as caught:
        parse_spec({"fixed": {**FIXED, key: value}})
    message = str(caught.value)
    assert message.startswith(f"[fixed] {key} must be {valid}")
    assert message.split("; did you mean")[0].endswith(f"got {value!r}") and "\n" not in message
    with pytest.raises(InitlabError, match=f"^{key} must be"):  # the Python API too
        RunConfig(**{key: value})


def test_every_numeric_setting_has_a_range_and_its_edges_are_accepted():
    assert set(RANGES) == {
        "epochs", "batch_size", "seed", "val_size", "limit_train",
        "lr", "momentum", "weight_decay", "dropout", "warmup_steps", "clip_norm",
    }  # fmt: skip
    edges = {"val_size": 0, "limit_train": 1, "momentum": 0.0, "dropout": 0.0, "seed": 0}
    edges |= {"warmup_steps": 0, "clip_norm": 1e-30}
    configs = expand(parse_spec({"fixed": {**FIXED, **edges, "weight_decay": 0}}))
    assert configs[0].val_size == 0 and configs[0].weight_decay == 0.0
    assert RunConfig(lr=1, device="cuda:3").lr == 1  # ints are numbers; cuda:N is syntax only


def test_a_toml_sweep_unsets_a_number_with_none_so_clipping_is_compared_with_none():
    """TOML has no null: `clip_norm = [1.0]` could not be swept against no clipping."""
    spec = parse_spec({"fixed": FIXED, "sweep": {"clip_norm": ["none", 1.0], "seeds": 1}})
    assert [c.clip_norm for c in expand(spec)] == [None, 1.0]
    spec = parse_spec({"fixed": {**FIXED, "limit_train": " None"}})
    assert expand(spec)[0].limit_train is None
    with pytest.raises(InitlabError, match="epochs must be an integer >= 1") as refused:
        parse_spec({"fixed": {**FIXED, "epochs": "none"}})  # epochs cannot be unset
    assert "unsets" not in str(refused.value)
    with pytest.raises(InitlabError, match=r"got 'off' \(\"none\" unsets it in a spec\)"):
        parse_spec({"fixed": FIXED, "sweep": {"clip_norm": ["off", 1.0]}})


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ({"hidden": [0]}, "hidden widths must be integers >= 1, got [0]"),
        ({"hidden": [16, True]}, "hidden must be a list of widths"),
        ({"batch_norm": 1}, "[fixed] batch_norm must be true or false, got 1"),
        ({"task": "ranking"}, "[fixed] task: unknown task 'ranking'"),
        ({"precision": "fp16"}, "[fixed] precision: unknown precision 'fp16'"),
        ({"residual_init": "fixp"}, "did you mean 'fixup'"),
        ({"track": 0}, "track must be 'epoch', 'off' or a step count in [1, 2^63 - 1], got 0"),
        (
            {"track": True},
            "track must be 'epoch', 'off' or a step count in [1, 2^63 - 1], got True",
        ),
        ({"bias": NAN}, "bias must be a finite number within"),
        ({"model": "resnet"}, "[fixed] model: unknown model 'resnet'"),
        ({"model": "mymodels:"}, "model takes module:function"),
        ({"model_args": [1]}, "model_args must be a table of keyword arguments"),
        ({"model_args": {"width": NAN}}, "model_args.width must be a string, number, boolean"),
        ({"model_args": {"width": {"a": 1}}}, "model_args.width must be a string"),
        ({"model_args": {"not a name": 1}}, "model_args keys must be argument names"),
    ],
)
def test_names_types_and_tables_are_checked_too(fixed, message):
    with pytest.raises(InitlabError) as caught:
        parse_spec({"fixed": {**FIXED, **fixed}})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_toml_booleans_and_specs_are_refused_before_anything_starts(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[fixed]\ndataset = "digits"\nepochs = true\n')
    with pytest.raises(InitlabError, match=r"^bad.toml: \[fixed\] epochs must be an integer"):
        load_spec(path)
    path.write_text('[fixed]\ndataset = "digits"\nlimit_train = -5\nval_size = -10\n')
    store = tmp_path / "out"
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", str(path), "--out", str(store), *extra]) == 2
        err = capsys.readouterr().err
        assert err.strip() == (
            "error: bad.toml: [fixed] limit_train must be an integer >= 1 "
            "(or unset: all examples), got -5"
        )
    assert not store.exists()


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        (10**9, "seeds must be a count in [1, 1,000,000], got 1000000000"),
        ([0, -1], "seeds: seed -1 is negative"),
        ([2**63], "seeds: seed 9223372036854775808 is above 2^63 - 1, the largest seed"),
        ([0, 0], "seeds lists a seed twice"),
        (0, "seeds: need at least one seed"),
    ],
)
def test_seed_counts_and_lists_are_bounded(seeds, message):
    with pytest.raises(InitlabError) as caught:
        parse_spec({"fixed": FIXED, "seeds": seeds})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--limit-train", "-5"], "--limit-train must be an integer >= 1"),
        (["--lr", "nan"], "lr must be a finite number in (0, 1e+38], got nan"),
        (["--lr", "inf"], "lr must be a finite number in (0, 1e+38], got inf"),
        (["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
        (["--dropout", "1"], "dropout must be a finite number in [0, 1), got 1.0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    ],
)
def test_compare_options_are_checked_before_anything_starts(
    option, message, tmp_path, capsys, trainings
):
    out = tmp_path / "out"
    assert main(["compare", "--dataset", "digits", *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and trainings == []
