"""Experiment specs: parsing, validation messages, grid expansion order, hash stability."""

import sys
from pathlib import Path

import numpy as np
import pytest

from initlab import config
from initlab.cli import main
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.sweep import expand, load_spec, parse_spec
from initlab.train.optimizers import effective_weight_decay

FIXED = {"dataset": "digits", "hidden": [16], "epochs": 1}
EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


def spec(fixed=None, **parts):
    return parse_spec({"name": "t", "fixed": {**FIXED, **(fixed or {})}, **parts})


def test_grid_is_the_product_in_file_order_with_seeds_innermost():
    s = spec(
        sweep={"init": ["he_normal", "zeros"], "activation": ["relu", "tanh", "sigmoid"]}, seeds=2
    )
    configs = expand(s)
    assert len(configs) == 2 * 3 * 2
    points = [(c.init, c.activation, c.seed) for c in configs]
    assert points[:4] == [
        ("he_normal", "relu", 0),
        ("he_normal", "relu", 1),
        ("he_normal", "tanh", 0),
        ("he_normal", "tanh", 1),
    ]
    assert points[-1] == ("zeros", "sigmoid", 1)
    assert all(c.dataset == "digits" and c.hidden == (16,) for c in configs)
    assert s.swept == ("init", "activation", "seed")
    assert s.group_by == ("init", "activation")


def test_seeds_as_a_count_a_list_or_one_fixed_seed():
    assert spec(seeds=3).seeds == (0, 1, 2)
    assert spec(sweep={"seed": [5, 7]}).seeds == (5, 7)
    assert spec(sweep={"seeds": 2}).seeds == (0, 1)
    assert spec(fixed={"seed": 4}).seeds == (4,)
    assert spec().seeds == (0,)


def test_zip_include_exclude_and_duplicates():
    s = spec(
        sweep={"init": ["he_normal", "zeros"]},
        zip=[{"optimizer": ["sgd", "adam"], "lr": [0.1, 0.001]}],
        exclude=[{"init": "zeros", "optimizer": "adam"}],
        include=[{"init": "he_normal", "optimizer": "sgd", "lr": 0.1}, {"init": "lecun_normal"}],
        seeds=2,
    )
    configs = expand(s)
    points = [(c.init, c.optimizer, c.lr) for c in configs[::2]]
    # the include equal to a grid point is kept once, at the grid's position
    assert points == [
        ("he_normal", "sgd", 0.1),
        ("he_normal", "adam", 0.001),
        ("zeros", "sgd", 0.1),
        ("lecun_normal", "sgd", 0.01),
    ]
    assert len({c.key() for c in configs}) == len(configs) == 8
    assert s.group_by == ("init", "optimizer", "lr")


def test_names_are_normalised_so_spellings_do_not_split_a_run():
    a = expand(spec(fixed={"dataset": "Digits", "activation": "ReLU"}))
    b = expand(spec(fixed={"dataset": "digits", "activation": "relu"}))
    assert [c.key() for c in a] == [c.key() for c in b]
    with pytest.raises(InitlabError, match="lists a value twice"):
        parse_spec({"sweep": {"hidden": [[16, 8], "16-8"]}})
    hidden = parse_spec({"sweep": {"hidden": [[16, 8], "16,8,4", "none"]}})
    assert [c.hidden for c in expand(hidden)] == [(16, 8), (16, 8, 4), ()]


def test_hashes_are_stable():
    # A run's key is its resume key: if this changes, every existing store stops resuming.
    assert RunConfig(dataset="digits", hidden=(16,), epochs=1).key() == "cd8ee83d9d8eef9b"
    # ...and a new setting left at its default must not change existing keys
    assert RunConfig(dataset="digits", hidden=(16,), epochs=1, extra={}).key() == "cd8ee83d9d8eef9b"
    one = parse_spec({"name": "t", "fixed": {"dataset": "digits", "epochs": 1}})
    two = parse_spec({"fixed": {"epochs": 1, "dataset": "digits"}, "name": "t"})
    assert one.spec_hash() == two.spec_hash() == "87207521968dfd85"  # the study id in stores
    assert one.spec_hash() != parse_spec({"name": "u", "fixed": {"epochs": 1}}).spec_hash()
    assert [c.key() for c in expand(spec(seeds=3))] == [c.key() for c in expand(spec(seeds=3))]


def test_weight_decay_zero_is_no_decay_and_keys_move_only_where_training_changed(monkeypatch):
    """``weight_decay = 0`` meant AdamW's 0.01 (its runs train again: new keys); for the
    other optimizers 0 and unset both mean no decay and keep the key they had."""
    sgd = RunConfig(dataset="digits", hidden=(16,), epochs=1)
    assert sgd.replace(weight_decay=0.0).key() == sgd.key()
    adamw = sgd.replace(optimizer="adamw")
    assert adamw.replace(weight_decay=0.0).key() != adamw.key()
    assert effective_weight_decay("adamw", None) == 0.01
    assert effective_weight_decay("adamw", 0.0) == effective_weight_decay("sgd", None) == 0.0
    norm = sgd.replace(batch_norm=True)
    before = norm.key()
    monkeypatch.setattr(config, "BIAS_BEFORE_NORM", True)
    assert norm.key() != before and sgd.key() == "cd8ee83d9d8eef9b"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (
            {"sweep": {"activaton": ["relu"]}},
            "unknown setting 'activaton' in [sweep]; did you mean 'activation'?",
        ),
        (
            {"sweep": {"init": ["he_norml"]}},
            "[sweep] init: unknown initializer 'he_norml'; did you mean 'he_normal'?",
        ),
        (
            {"fixed": {"dataset": "fashon-mnist"}},
            "[fixed] dataset: unknown dataset 'fashon-mnist'; did you mean 'fashion-mnist'?",
        ),
        ({"fixd": {}}, "unknown key 'fixd' at the top level; did you mean 'fixed'?"),
        (
            {"fixed": {"learning_rate": 0.1}},
            "unknown setting 'learning_rate' in [fixed]; did you mean 'lr'?",
        ),
        ({"sweep": {"optimizer": ["adm"]}}, "did you mean 'adam'"),
        ({"sweep": {"init": "he_normal"}}, "[sweep] init must be a non-empty list of values"),
        ({"sweep": {"hidden": [100, 100]}}, "hidden is a list of architectures"),
        ({"sweep": {"lr": [0.1, -1.0]}}, "[sweep] lr must be a finite number in (0, 1e+38]"),
        ({"sweep": {"activation": ["relu", "relu"]}}, "lists a value twice"),
        ({"fixed": {"epochs": "3"}}, "[fixed] epochs must be an integer >= 1, got '3'"),
        ({"fixed": {"batch_norm": 1}}, "batch_norm must be true or false"),
        ({"fixed": {"bias": "zeroes"}}, "did you mean 'zeros'"),
        ({"fixed": {"lr": 0.1}, "sweep": {"lr": [0.2]}}, "'lr' is set in both [fixed] and [sweep]"),
        (
            {"zip": [{"lr": [0.1], "optimizer": ["sgd", "adam"]}]},
            "the lists must have the same length",
        ),
        ({"seeds": 2, "sweep": {"seed": [0]}}, "seeds are given twice"),
        ({"seeds": 0}, "need at least one seed"),
        ({"group_by": ["initt"]}, "unknown setting 'initt' in group_by; did you mean 'init'?"),
        (
            {"include": [{"sed": 1}]},
            "unknown setting 'sed' in [[include]] #1; did you mean 'seed'?",
        ),
        ({"exclude": [{"init": "he_norml"}]}, "[[exclude]] #1 init: unknown initializer"),
    ],
)
def test_every_mistake_is_one_clear_error(parts, message):
    fixed = parts.pop("fixed", {})
    with pytest.raises(InitlabError) as caught:
        spec(fixed=fixed, **parts)
    assert message in str(caught.value)


def test_spec_files_toml_yaml_json_and_their_errors(tmp_path, monkeypatch):
    toml = tmp_path / "a.toml"
    toml.write_text('[fixed]\ndataset = "digits"\n[sweep]\ninit = ["zeros", "he_normal"]\n')
    loaded = load_spec(toml)
    assert loaded.name == "a" and len(expand(loaded)) == 2
    (tmp_path / "b.json").write_text('{"name": "b", "sweep": {"seed": [1, 2]}}')
    assert load_spec(tmp_path / "b.json").seeds == (1, 2)
    (tmp_path / "bad.toml").write_text("[sweep\ninit = 1")
    with pytest.raises(InitlabError, match=r"bad.toml: cannot read .toml spec"):
        load_spec(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text('[sweep]\nactivaton = ["relu"]\n')
    with pytest.raises(InitlabError, match=r"^typo.toml: unknown setting 'activaton'"):
        load_spec(tmp_path / "typo.toml")
    with pytest.raises(InitlabError, match="spec file not found"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "c.txt").write_text("")
    with pytest.raises(InitlabError, match=r"^c.txt: unknown spec format '\.txt'"):
        load_spec(tmp_path / "c.txt")
    (tmp_path / "plain").write_text("")
    with pytest.raises(InitlabError, match=r"^plain: a spec file needs a suffix: use .toml"):
        load_spec(tmp_path / "plain")
    yaml_file = tmp_path / "d.yaml"
    yaml_file.write_text("name: d\nsweep:\n  init: [zeros, he_normal]\n  seed: [0, 1]\n")
    if "yaml" in sys.modules or _has_yaml():
        assert len(expand(load_spec(yaml_file))) == 4
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(InitlabError, match=r"needs PyYAML: pip install pyyaml"):
        load_spec(yaml_file)


def test_a_broken_yaml_spec_is_one_line_with_its_line_and_column(tmp_path):
    """PyYAML's message took six lines (two marks, each quoting the line with a caret)."""
    pytest.importorskip("yaml")
    (tmp_path / "bad.yaml").write_text("name: x\nfixed:\n  lr: [0.1\n  epochs: 1\n")
    with pytest.raises(InitlabError) as raised:
        load_spec(tmp_path / "bad.yaml")
    assert str(raised.value) == (
        "bad.yaml: cannot read .yaml spec: line 4, column 9: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 3, column 7)"
    )
    (tmp_path / "tab.yml").write_text("a: 1\n\t b: 2\n")
    with pytest.raises(InitlabError, match=r"^tab.yml: cannot read .yml spec: line 2, column 1: "):
        load_spec(tmp_path / "tab.yml")
    (tmp_path / "bad.json").write_text('{"a": }')
    for name in ("tab.yml", "bad.json"):
        with pytest.raises(InitlabError) as raised:
            load_spec(tmp_path / name)
        assert "\n" not in str(raised.value)


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    """PyYAML and json keep the last of two equal keys, so a spec that lists ``epochs`` (or
    ``sweep``) twice ran only the second; TOML already refuses it. A YAML merge key
    (``<<: *defaults``) may still be overridden: that is what it is for."""
    pytest.importorskip("yaml")
    (tmp_path / "twice.yaml").write_text("name: t\nfixed:\n  epochs: 1\n  lr: 0.1\n  epochs: 2\n")
    with pytest.raises(InitlabError) as raised:
        load_spec(tmp_path / "twice.yaml")
    assert (
        str(raised.value)
        == "twice.yaml: line 5: key 'epochs' is given twice in one table; keep one"
    )
    (tmp_path / "twice.json").write_text('{"name": "t", "fixed": {"seeds": 1}, "fixed": {}}')
    with pytest.raises(InitlabError, match=r"^twice.json: key 'fixed' is given twice"):
        load_spec(tmp_path / "twice.json")
    merged = "name: m\nfixed:\n  <<: {epochs: 1, lr: 0.1}\n  epochs: 2\n"
    (tmp_path / "merged.yaml").write_text(merged)
    assert load_spec(tmp_path / "merged.yaml").fixed["epochs"] == 2


def _has_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_example_specs_are_valid(path):
    assert len(expand(load_spec(path))) > 1


def test_a_bad_spec_fails_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[fixed]\ndataset = "digits"\n[sweep]\ninit = ["he_normal", "he_norml"]\n')
    store = tmp_path / "out"
    assert main(["sweep", str(bad), "--out", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad.toml: [sweep] init: unknown initializer 'he_norml'")
    assert "did you mean 'he_normal'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not store.exists()
    cnn = tmp_path / "cnn.toml"
    cnn.write_text('[fixed]\nmodel = "cnn"\ndataset = "synthetic"\n')
    assert main(["sweep", str(cnn), "--out", str(store)]) == 2
    assert "the CNN needs inputs shaped" in capsys.readouterr().err
    assert not store.exists()


def test_python_objects_in_a_spec_are_named_by_kind_not_dumped():
    """Arrays under data dumped 1,367 characters of repr over 24 lines into the message."""
    x = np.zeros((2000, 64))
    with pytest.raises(InitlabError) as caught:
        parse_spec({"fixed": {"data": (x, x[:, 0], x, x[:, 0])}})
    message = str(caught.value)
    assert "not a tuple of 4 ndarray: save arrays with numpy.savez(" in message
    assert "\n" not in message and len(message) < 400
    with pytest.raises(InitlabError, match=r"activation must be a name, got array\(") as caught:
        parse_spec({"fixed": {"activation": x}})
    assert len(str(caught.value)) < 120 and str(caught.value).endswith("...")


def test_group_by_naming_a_setting_twice_is_refused_before_anything_runs():
    """group_by = ["init", "init"] trained every run, then crashed on the summary with a
    pandas traceback, and results/report could not open the store afterwards."""
    with pytest.raises(InitlabError, match=r"^group_by lists 'init' twice; list each setting"):
        parse_spec({"sweep": {"init": ["zeros", "he_normal"]}, "group_by": ["init", "init"]})


def test_a_spec_saved_with_a_utf8_bom_reads_as_without(tmp_path):
    """Windows editors start UTF-8 files with a BOM: TOML said 'Invalid statement (at line
    1, column 1)', naming neither the cause nor a fix."""
    body = 'name = "b"\n[sweep]\ninit = ["zeros", "he_normal"]\n'
    (tmp_path / "b.toml").write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert load_spec(tmp_path / "b.toml").name == "b"


def test_a_directory_given_as_a_spec_says_it_is_one(tmp_path):
    """'spec file not found: DIR' of a directory that exists (a study's --out, or the
    examples folder) read as a typo in the path."""
    (tmp_path / "grid.toml").write_text('name = "g"\n')
    with pytest.raises(InitlabError, match=r"a directory, not a spec file \(it holds grid.toml\)"):
        load_spec(tmp_path)


def test_a_residual_mlp_under_a_zero_rule_trains_again_and_no_other_key_moves(monkeypatch):
    """A zero rule now leaves the built-in residual MLP's ReLU-ended branches as
    initialized, where it killed them: those runs must not resume from the store."""
    plain = RunConfig(dataset="digits", hidden=(16,), epochs=1, residual=True)
    zeroed = [plain.replace(residual_init=r) for r in ("zero", "zero_last_layer")]
    kept = [plain, plain.replace(residual_init="fixup"), zeroed[0].replace(activation="tanh")]
    before = [c.key() for c in (*kept, *zeroed)]
    monkeypatch.setattr(config, "RELU_END_RULE", 3)
    after = [c.key() for c in (*kept, *zeroed)]
    assert after[:3] == before[:3] and after[3] != before[3] and after[4] != before[4]
