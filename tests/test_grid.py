"""Grids counted without expanding them, a run limit, lazy expansion, and the spec keys
for user models (``model``, ``model_args`` swept per argument, ``data``)."""

import itertools
import json
import tracemalloc

import pytest

from initlab.cli import main
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.store import open_store
from initlab.sweep import expand, parse_spec, run_study
from initlab.sweep.dryrun import dry_run
from initlab.sweep.grid import count_runs, iter_runs, swept_values

FIXED = {"dataset": "digits", "hidden": [16], "epochs": 1}


def spec(fixed=None, **parts):
    return parse_spec({"name": "t", "fixed": {**FIXED, **(fixed or {})}, **parts})


def million():
    """10 × 100 × 100 × 10 = 10^6 runs."""
    return spec(
        sweep={
            "init": ["he_normal", "zeros", "glorot_normal", "lecun_normal", "orthogonal"],
            "lr": [round(0.001 * (i + 1), 6) for i in range(100)],
            "batch_size": list(range(1, 101)),
            "activation": ["relu", "tanh"],
        },
        seeds=10,
    )


SPECS = [
    {"sweep": {"init": ["he_normal", "zeros"]}, "seeds": 3},
    {
        "sweep": {"init": ["he_normal", "zeros", "lecun_normal"], "lr": [0.1, 0.01]},
        "zip": [{"optimizer": ["sgd", "adam"], "batch_size": [32, 64]}],
        "exclude": [{"init": "zeros", "optimizer": "adam"}, {"lr": 0.1, "init": "zeros"}],
        "include": [
            {"init": "he_normal", "lr": 0.1, "optimizer": "sgd", "batch_size": 32},  # in grid
            {"init": "zeros", "lr": 0.1, "optimizer": "adam", "batch_size": 64},  # excluded: new
            {"init": "orthogonal"},
            {"init": "orthogonal"},  # twice: once
            {"init": "he_normal", "lr": 0.01, "seed": 1},  # in the grid
            {"init": "he_normal", "lr": 0.01, "seed": 9},  # a new seed
            {"init": "zeros", "activation": "tanh"},  # a setting off the axes: new
        ],
        "seeds": 2,
    },
    {"sweep": {"init": ["zeros"]}, "exclude": [{"init": "zeros"}], "include": [{"lr": 0.2}]},
    {"sweep": {"lr": [0.1, 0.2]}, "exclude": [{"activation": "tanh"}]},  # never matches
]


@pytest.mark.parametrize("parts", SPECS)
def test_the_count_from_the_axes_equals_the_expansion(parts):
    s = spec(**json.loads(json.dumps(parts)))
    configs = list(iter_runs(s))
    assert count_runs(s) == len(configs) == len({c.key() for c in configs})
    assert configs == expand(s)


def test_a_million_runs_are_counted_refused_and_dry_run_in_a_few_mb(tmp_path):
    big = million()
    tracemalloc.start()
    try:
        assert count_runs(big) == 10**6
        with pytest.raises(InitlabError) as caught:
            expand(big)
        plan = dry_run(big, tmp_path / "initlab.db")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        "spec 't' has 1,000,000 runs, over the limit of 100,000: make the grid smaller or "
        "raise the limit (max_runs=1000000)"
    )
    # 10^6 RunConfigs would take ~1 GB; the dry run keeps a sample of 1000 and 20 rows
    assert peak < 50e6, f"peak {peak / 1e6:.0f} MB"
    assert plan.total == 10**6 and len(plan.table) == 20
    assert "over the limit of 100,000" in plan.lines[0]
    assert plan.lines[1].startswith("estimated from 1000 runs drawn at random")
    assert not (tmp_path / "initlab.db").exists()


def test_sampled_totals_agree_with_the_exact_ones_within_sampling_error(tmp_path):
    s = parse_spec(
        {
            "fixed": {"dataset": "digits", "hidden": [16]},
            "sweep": {"epochs": list(range(1, 21)), "init": ["he_normal", "zeros"]},
            "seeds": 5,
        }
    )
    exact = dry_run(s, tmp_path / "a.db")
    sampled = dry_run(s, tmp_path / "a.db", max_runs=10)
    epochs = range(1, 21)  # sampled uniformly: mean 10.5, sd sqrt((20^2 - 1) / 12) = 5.77
    sd_of_total = 200 * (((20**2 - 1) / 12) ** 0.5) / 1000**0.5
    total = int(exact.table["epochs"].sum())
    assert total == 5 * 2 * sum(epochs)
    words = sampled.lines[1].split()
    estimate = float(words[words.index("model-epochs,") - 1].replace(",", ""))
    assert abs(estimate - total) < 5 * sd_of_total


def test_max_runs_refuses_and_raises_the_limit(tmp_path, capsys, trainings):
    path = tmp_path / "s.toml"
    path.write_text(
        '[fixed]\ndataset = "digits"\nhidden = [8]\nepochs = 1\nlimit_train = 64\n'
        '[sweep]\ninit = ["he_normal", "zeros", "lecun_normal"]\n'
    )
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--max-runs", "2"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: spec 's' has 3 runs, over the limit of 2") and "--max-runs 3" in err
    )
    assert not out.exists() and trainings == []
    assert main(["sweep", str(path), "--out", str(out), "--max-runs", "2", "--dry-run"]) == 0
    assert "3 runs: over the limit of 2" in capsys.readouterr().out
    args = ["sweep", str(path), "--out", str(out), "--max-runs", "3", "--workers", "1"]
    assert main([*args, "--engine", "single"]) == 0
    assert len(trainings) == 3
    assert len(expand(parse_spec({"sweep": {"lr": [0.1, 0.2]}}), max_runs=None)) == 2
    with pytest.raises(InitlabError, match="max_runs must be an integer in"):
        expand(parse_spec({}), max_runs=0)


def test_model_args_are_swept_per_argument_over_the_fixed_ones():
    s = parse_spec(
        {
            "fixed": {"model": "models.py:build", "model_args": {"depth": 2}, "data": "digits"},
            "sweep": {"model_args": {"width": [64, 128, 256]}, "init": ["he_normal", "default"]},
            "exclude": [{"model_args": {"width": 128}, "init": "default"}],
            "include": [{"model_args": {"width": 8}, "init": "zeros"}],
        }
    )
    assert s.swept == ("model_args.width", "init")
    assert s.group_by == ("model_args.width", "init")
    configs = expand(s)
    assert [(c.model_args, c.init) for c in configs] == [
        ({"depth": 2, "width": 64}, "he_normal"),
        ({"depth": 2, "width": 64}, "default"),
        ({"depth": 2, "width": 128}, "he_normal"),
        ({"depth": 2, "width": 256}, "he_normal"),
        ({"depth": 2, "width": 256}, "default"),
        ({"depth": 2, "width": 8}, "zeros"),
    ]
    assert count_runs(s) == 6 and len({c.key() for c in configs}) == 6
    assert all(c.model == "models.py:build" and c.dataset == "digits" for c in configs)
    assert swept_values(configs[2], s.swept) == {"model_args.width": 128, "init": "he_normal"}
    assert configs[0].label == "he_normal/build,depth=2,width=64/seed0"
    zipped = spec(zip=[{"model_args": {"width": [8, 16]}, "lr": [0.1, 0.2]}], group_by="data")
    assert [c.model_args for c in expand(zipped)] == [{"width": 8}, {"width": 16}]
    assert zipped.group_by == ("dataset",)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (
            {"fixed": {"model_args": {"width": 8}}, "sweep": {"model_args": {"width": [8, 16]}}},
            "'model_args.width' is set in both [fixed] model_args and [sweep]",
        ),
        ({"sweep": {"model_args": [{"width": 8}]}}, "model_args in [sweep] is a table"),
        ({"sweep": {"model_args": {"width": [8, 8]}}}, "[sweep] model_args.width lists a value"),
        ({"sweep": {"model_args": {"w": [float("inf")]}}}, "[sweep] model_args.w must be a"),
        ({"sweep": {"device": ["cpu", "cuda"]}}, "device in [sweep]: the device says where"),
        ({"fixed": {"data": "digits"}}, "'dataset' is given twice in [fixed]"),
        ({"zip": [{"lr": [0.1, 0.1], "epochs": [1, 1]}]}, "lists a combination twice"),
        ({"group_by": ["model_args.2x"]}, "unknown setting 'model_args.2x' in group_by"),
        (
            {"group_by": ["model_args.widht"], "sweep": {"model_args": {"width": [4, 8]}}},
            "unknown model argument 'widht' in group_by (the spec's model arguments: width); "
            "did you mean 'width'?",
        ),
        ({"group_by": ["model_args.width"]}, "(the spec's model arguments: none)"),
        (
            {"group_by": ["width"], "sweep": {"model_args": {"width": [4, 8]}}},
            "unknown setting 'width' in group_by; did you mean 'model_args.width'?",
        ),
        (
            {
                "sweep": {"model_args": {"width": [4, 8]}},
                "exclude": [{"model_args": {"widht": 8}}],
            },
            "unknown model argument 'widht' in [[exclude]]",
        ),
    ],
)
def test_model_args_data_and_device_mistakes(parts, message):
    fixed = parts.pop("fixed", {})
    with pytest.raises(InitlabError) as caught:
        spec(fixed=fixed, **parts)
    assert message in str(caught.value)


def test_user_model_and_data_specs_are_accepted_without_importing_them():
    s = spec(fixed={"model": "no_such_module:build", "dataset": "no_such_file.npz"})
    config = expand(s)[0]
    assert config.model == "no_such_module:build" and config.dataset == "no_such_file.npz"
    assert RunConfig(task="regression", precision="bf16", device="cpu").device == "cpu"


def test_iteration_is_lazy():
    runs = iter_runs(million())
    first = list(itertools.islice(runs, 3))
    assert [c.seed for c in first] == [0, 1, 2] and first[0].init == "he_normal"


MODELS = """
from torch import nn

def build(width=8, depth=1):
    layers = [nn.Flatten(), nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))
"""


def test_a_model_args_sweep_trains_each_width_and_groups_by_it(tmp_path, capsys):
    (tmp_path / "models.py").write_text(MODELS)
    fixed = {"model": f"{tmp_path / 'models.py'}:build", "model_args": {"depth": 2}}
    fixed |= {"data": "digits", "epochs": 1, "limit_train": 64, "device": "cpu"}
    s = parse_spec({"fixed": fixed, "sweep": {"model_args": {"width": [4, 8]}}, "seeds": 2})
    results, report = run_study(s, tmp_path / "out", workers=1)
    assert report.finished == 4 and report.counts.get("failed", 0) == 0
    summary = results.summary()
    assert summary["model_args.width"].tolist() == [4, 8]
    assert summary["runs"].tolist() == [2, 2]
    with open_store(tmp_path / "out") as store:
        widths = sorted(json.loads(c)["width"] for c in store.runs()["model_args"])
    assert widths == [4, 4, 8, 8]
    # a misspelt model argument to group by: one line naming the ones the runs have
    assert main(["results", str(tmp_path / "out"), "--group-by", "model_args.widht"]) == 2
    error = capsys.readouterr().err
    assert "unknown model argument 'widht'; did you mean 'width'?" in error
    assert error.count("\n") == 1
    assert main(["results", str(tmp_path / "out"), "--group-by", "model_args.width"]) == 0
    capsys.readouterr()
    # --within takes the names --group-by takes: settings and the runs' model arguments
    for flag in ("--group-by", "--within"):
        assert main(["results", str(tmp_path / "out"), flag, "widht"]) == 2, flag
        said = capsys.readouterr()
        assert "unknown setting 'widht'; did you mean 'model_args.width'?" in said.err, flag
        assert "message" not in said.err and "test_accuracy" not in said.err, flag
        assert said.out == "" and said.err.count("\n") == 1, flag
    assert main(["results", str(tmp_path / "out"), "--within", "model_args.widht"]) == 2
    assert "unknown model argument 'widht'; did you mean 'width'?" in capsys.readouterr().err
    assert main(["results", str(tmp_path / "out"), "--within", "model_args.width"]) == 0


def test_dry_run_of_user_data_lists_the_runs_without_reading_the_data(tmp_path):
    s = spec(
        fixed={"dataset": str(tmp_path / "absent.npz")}, sweep={"init": ["zeros", "he_normal"]}
    )
    plan = dry_run(s, tmp_path / "initlab.db")
    assert len(plan.table) == 2 and plan.table["seconds"].isna().all()
    assert plan.lines == [
        f"2 runs, 0 already done in {tmp_path / 'initlab.db'}; to run: 2 runs, 2 model-epochs; "
        "2 runs not costed (their data or model is sized only when the sweep runs: user "
        "data is read then, and a factory that cannot build on the meta device is called "
        "then; see the model lines)"
    ]
    assert plan.models == [f"mlp 16 (batch 32, sgd): mlp on {tmp_path / 'absent.npz'}: sized "
                           "once the data is read (its shapes)"]  # fmt: skip
