"""The user's own model, data and device on the command line and in ``initlab.compare``:
end to end on tiny factories and data, and every bad input as one line, exit 2, before
anything trains and before the store exists."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import initlab
from argv import merged
from initlab.cli import main
from initlab.cli.parsing import parse_model_args
from initlab.compare import comparison_configs, comparison_spec
from initlab.errors import InitlabError
from initlab.store import open_store
from initlab.sweep.grid import expand
from initlab.sweep.preflight import preflight_configs
from initlab.usercode.fingerprint import arrays_digest
from initlab.usercode.inprocess import data_spec, is_registered, model_spec

MODELS = """
import torch
from torch import nn


def build(width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def five_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


def wide_input():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def raises(width=8):
    raise ValueError("width must be even")


def not_a_model():
    return 42


def needs_width(width):
    return nn.Linear(64, width)


def regressor(width=8):
    return nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 1))


class TinyLM(nn.Module):
    def __init__(self, vocab, dim):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, vocab)

    def forward(self, x):
        return self.head(torch.tanh(self.embed(x)))


def lm(vocab=12, dim=8):
    return TinyLM(vocab, dim)


class Bare(nn.Module):  # weights as bare parameters in F.linear: no layer a scheme sets

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(10, 64) / 8)

    def forward(self, x):
        return nn.functional.linear(x.flatten(1), self.w)


def bare():
    return Bare()


def tokens():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 12, (160, 6), generator=g)
    y = (x + 1) % 12  # next token: a task a tiny model learns
    return x[:128], y[:128], x[128:], y[128:]


def self_editing(width=8):  # a user saving the file while the sweep trains
    with open(__file__, "a") as handle:
        handle.write("# edited while a run trained\\n")
    return build(width)
"""
FAST = ["--epochs", "1", "--seeds", "1", "--batch-size", "16", "--workers", "1"]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """``models.py`` (factories and a token-sequence data function) and ``reg.npz``
    (random regression data) in the current directory."""
    (tmp_path / "models.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x @ rng.standard_normal(5)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _compare(*args: str) -> int:
    return main(merged(["compare", *FAST], list(args)))


def _run_ids(out) -> set[str]:
    return set(pd.read_csv(out / "summary.csv")["run_id"])


def test_compare_a_user_factory_with_default_and_he_and_new_keys_after_an_edit(user_dir, capsys):
    out = user_dir / "out"
    args = ["--model", "models.py:build", "--model-arg", "width=16", "--data", "digits"]
    args += ["--inits", "default,he_normal", "--limit-train", "300", "--out", str(out)]
    assert _compare(*args) == 0
    runs = pd.read_csv(out / "summary.csv")
    assert list(runs["init"]) == ["default", "he_normal"]
    assert set(runs["status"]) <= {"ok", "stuck"} and runs["model_args"].str.contains("16").all()
    # 'default' keeps the factory's output layer and biases: no output_init or bias recorded
    assert runs[["output_init", "bias"]].iloc[0].isna().all()
    assert runs[["output_init", "bias"]].iloc[1].notna().all()
    first = _run_ids(out)
    capsys.readouterr()
    assert _compare(*args) == 0  # unchanged: resumed, nothing trains
    assert "2 of 2 runs already done" in capsys.readouterr().err
    path = user_dir / "models.py"
    path.write_text(path.read_text() + "\n# edited: new runs, not stale ones\n")
    assert _compare(*args) == 0
    assert _run_ids(out).isdisjoint(first)


def test_runs_of_an_edited_model_file_are_not_pooled_with_its_new_runs(user_dir, capsys):
    """Each edit keeps the old runs in the store under the same settings: read back as they
    were, 'default' held seed 0 twice (old and new code) and counted it as two seeds."""
    out = user_dir / "out"
    args = ["--model", "models.py:build", "--data", "digits", "--limit-train", "200"]
    args += ["--out", str(out)]
    assert _compare(*args, "--inits", "default,he_normal", "--seeds", "2") == 0
    path = user_dir / "models.py"
    path.write_text(path.read_text() + "\n# edited\n")
    capsys.readouterr()
    assert _compare(*args, "--inits", "default", "--seeds", "2") == 0
    said = " ".join(capsys.readouterr().err.split())  # the retraining is announced
    assert "2 stored run(s) with these settings were trained before models.py last changed" in said
    assert len(pd.read_csv(out / "summary.csv")) == 2  # this command's study: new runs only
    capsys.readouterr()
    assert main(["results", str(out)]) == 0  # two studies: all runs of the store
    err = capsys.readouterr().err
    assert "left out 2 run(s) trained before models.py last changed" in err
    assert "2 of the runs date from before models.py last changed" in err  # he_normal's
    with open_store(out) as store:
        assert len(store.runs()) == 4
        summary = store.results().summary().set_index("init")
    assert summary.loc["default", "runs"] == summary.loc["he_normal", "runs"] == 2


def test_a_model_file_edited_while_its_run_trains_is_not_stored_as_finished(user_dir, capsys):
    out = user_dir / "out"
    args = ["--model", "models.py:self_editing", "--data", "digits", "--inits", "he_normal"]
    # every run failed: exit 1 (the CSVs are still written)
    assert _compare(*args, "--limit-train", "100", "--engine", "single", "--out", str(out)) == 1
    runs = pd.read_csv(out / "summary.csv")
    assert list(runs["status"]) == ["failed"]  # not "ok": resuming would reuse it
    assert "edited while the sweep ran" in runs["message"].iloc[0]


def test_a_file_edited_while_worker_processes_train_fails_its_runs_not_the_sweep(user_dir, capsys):
    # the workers' epoch reports and the store both outlive the edit (keys hash the file)
    out = user_dir / "out"
    args = ["--model", "models.py:self_editing", "--data", "digits", "--limit-train", "100"]
    args += ["--inits", "he_normal,lecun_normal", "--engine", "single", "--out", str(out)]
    assert main(["compare", "--epochs", "2", "--seeds", "1", "--workers", "2", *args]) == 1
    assert "edited while the sweep ran" in capsys.readouterr().err
    runs = pd.read_csv(out / "summary.csv")
    assert list(runs["status"]) == ["failed", "failed"]


def test_an_edited_module_is_imported_again_not_run_from_the_cache(user_dir):
    from initlab.usercode.specs import load_callable, source_fingerprint

    path = user_dir / "widths.py"
    path.write_text("WIDTH = 8\ndef build():\n    return WIDTH\n")
    before = source_fingerprint("widths:build")
    assert load_callable("widths:build")() == 8
    path.write_text("WIDTH = 32\ndef build():\n    return WIDTH\n")
    assert source_fingerprint("widths:build") != before  # new runs: the new code must run
    assert load_callable("widths:build")() == 32


def test_a_module_the_user_imported_and_then_edited_is_refused_not_reloaded(user_dir, monkeypatch):
    """A notebook imported it, then its file was edited: initlab's first look at it took
    the new file's key for the old code, and a later call reloaded the user's own module
    under their objects. Now: one line saying to reload, and their module left as it is."""
    import importlib
    import sys

    from initlab.usercode.specs import load_callable

    monkeypatch.syspath_prepend(str(user_dir))
    path = user_dir / "nb_widths.py"
    path.write_text("def build():\n    return 8\n")
    module = importlib.import_module("nb_widths")
    try:
        assert load_callable("nb_widths:build")() == 8
        path.write_text("def build():\n    return 32\n")
        with pytest.raises(InitlabError, match=r"changed since .*importlib.reload\(nb_widths\)"):
            load_callable("nb_widths:build")
        assert sys.modules["nb_widths"] is module and module.build() == 8
        importlib.reload(module)
        assert load_callable("nb_widths:build")() == 32
    finally:
        sys.modules.pop("nb_widths", None)


@pytest.mark.parametrize("spec", ["bye.py:build", "bye:build"])
def test_a_model_file_that_exits_while_it_imports_is_one_line_not_a_silent_exit(
    user_dir, monkeypatch, capsys, spec
):
    """A script's ``sys.exit(0)`` at import ended initlab with status 0 and no output."""
    import sys

    monkeypatch.syspath_prepend(str(user_dir))
    monkeypatch.delitem(sys.modules, "bye", raising=False)
    (user_dir / "bye.py").write_text("import sys\nsys.exit(0)\n")
    assert main(["diagnose", "--data", "digits", "--model", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model") and "SystemExit" in err and len(err.splitlines()) == 1


def test_regression_from_an_npz_file(user_dir, capsys):
    out = user_dir / "out"
    args = ["--model", "models.py:regressor", "--data", "reg.npz", "--inits", "default,zeros"]
    assert _compare(*args, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "test R² by init" in printed and "ranking by test R²" in printed
    assert "stuck: test accuracy" not in printed  # a classification rule
    runs = pd.read_csv(out / "summary.csv")
    assert runs["status"].eq("ok").all()
    assert np.isfinite(runs["test_accuracy"]).all()  # R²: a regression score, not accuracy
    # trained in stacks; the engine column says how each stack ran its models
    assert runs["engine"].str.fullmatch("batched/(stacked|vmap|looped)").all()
    # the built-in MLP's settings are empty for a model that has none of them
    for column in ("hidden", "activation", "batch_norm", "dropout", "residual"):
        assert runs[column].isna().all(), column
    assert runs["momentum"].isna().all()  # plain SGD: no momentum, not the unused default


def test_token_sequences_from_a_data_function(user_dir, capsys):
    """The embedding keeps the factory's init whatever the scheme: one note says so."""
    out = user_dir / "out"
    args = ["--model", "models.py:lm", "--data", "models.py:tokens", "--inits", "he_normal"]
    assert _compare(*args, "--task", "sequence", "--out", str(out)) == 0
    assert pd.read_csv(out / "summary.csv")["status"].isin(["ok", "stuck"]).all()  # 8 steps
    notes = [line for line in capsys.readouterr().err.splitlines() if "embed" in line]
    assert notes == [
        "note: he_normal set only the weight layers of models.py:lm (Linear, Conv, RNN, "
        "attention); embed (Embedding: weight) keeps the factory's initialization in every run"
    ]
    assert _compare(*args, "--task", "sequence", "--inits", "default") == 0
    assert "embed" not in capsys.readouterr().err  # the factory's init is what was asked


BAD_INPUTS = [
    (["--model", "models.py:raises"], "raised ValueError: width must be even"),
    (["--model", "models.py:not_a_model"], "not a torch.nn.Module"),
    (["--model", "models.py:needs_width"], "'width'"),
    (["--model", "models.py:biuld"], "did you mean 'build'"),
    (["--model", "no_such_file.py:build"], "no such file"),
    (["--model", "models.py:build", "--model-arg", "width"], "key=value"),
    (["--model", "models.py:wide_input"], "shape [1, 8, 8]"),
    (["--model", "models.py:five_classes"], "outputs 5 classes but the labels need 10"),
    (["--model", "models.py:build", "--limit-train", "8"], "fewer than one batch"),
    (["--device", "tpu"], "got 'tpu'"),
    (["--precision", "fp16"], "unknown precision 'fp16'"),
    (["--gpus-per-trial", "1"], "Ray backend"),
    (["--task", "clustering"], "unknown task"),
    (["--dataset", "mnist1d"], "give --data or --dataset (its old name), not both"),
    (["--model", "mlp", "--model-arg", "width=3"], "are for a model factory"),
    (
        ["--model", "models.py:build", "--hidden", "10", "--activation", "tanh"],
        "hidden=10, activation=tanh: the model models.py:build does not use them",
    ),
    (["--model", "models.py:build", "--batch-norm"], "--model-arg NAME=VALUE"),
    (["--model", "cnn", "--dropout", "0.2"], "dropout=0.2: the model cnn does not use it"),
    (["--model", "models.py:bare"], "init 'he_normal' would change nothing: models.py:bare"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_store(user_dir, capsys, args, message):
    out = user_dir / "out"
    assert _compare("--data", "digits", "--inits", "he_normal", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_an_init_that_changes_nothing_is_refused_wherever_it_is_listed(user_dir, capsys):
    out = user_dir / "out"
    for inits in ("default,he_normal", "he_normal,default"):
        args = ["--data", "digits", "--model", "models.py:bare", "--inits", inits]
        assert _compare(*args, "--out", str(out)) == 2
        assert "init 'he_normal' would change nothing" in capsys.readouterr().err
    assert not out.exists()


def test_nan_inputs_are_refused_before_the_store(user_dir, capsys):
    x = np.ones((64, 5), np.float32)
    x[3, 2] = np.nan
    y = np.zeros(64, np.float32)
    np.savez(user_dir / "nan.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    out = user_dir / "out"
    assert _compare("--model", "models.py:regressor", "--data", "nan.npz", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "NaN" in err and "Traceback" not in err and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(user_dir, capsys):
    assert _compare("--data", "digits", "--device", "cuda", "--out", str(user_dir / "o")) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (user_dir / "o").exists()


def test_bf16_on_a_gpu_without_it_is_one_line(user_dir, capsys, monkeypatch):
    """Fault injected: a CUDA device that lacks bf16 (the check runs before any tensor
    reaches the device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    args = ["--data", "digits", "--device", "cuda", "--precision", "bf16"]
    assert _compare(*args, "--out", str(user_dir / "o")) == 2
    assert "bf16 is not supported on cuda" in capsys.readouterr().err
    assert not (user_dir / "o").exists()


def test_diagnose_and_doctor_take_a_file_factory_with_arguments(user_dir, capsys):
    args = ["--data", "digits", "--batch", "64", "--model", "models.py:build"]
    assert main(["diagnose", *args, "--model-arg", "width=32", "--init", "default,zeros"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "symmetry" in out
    assert main(["doctor", *args, "--model-arg", "width=32"]) == 0
    assert "the plan" in capsys.readouterr().out
    assert main(["diagnose", "--data", "digits", "--model", "models.py:needs_width"]) == 2
    assert "'width'" in capsys.readouterr().err
    # no layer the probe sees: one line, not an empty table called healthy
    assert main(["diagnose", "--data", "digits", "--model", "models.py:bare"]) == 2
    assert "nothing to diagnose: the forward pass of Bare" in capsys.readouterr().err


SPEC = """
name = "user-sweep"
seeds = 1
[fixed]
dataset = "digits"
epochs = 1
batch_size = 16
limit_train = 200
[sweep]
init = ["default", "he_normal"]
"""


def test_sweep_options_replace_the_specs_fixed_values(user_dir, capsys):
    (user_dir / "s.toml").write_text(SPEC)
    out = user_dir / "out"
    args = ["sweep", "s.toml", "--model", "models.py:build", "--model-arg", "width=4"]
    assert main([*args, "--workers", "1", "--out", str(out)]) == 0
    with open_store(out) as store:
        runs = store.results().runs
    assert set(runs["model"]) == {"models.py:build"} and len(runs) == 2
    assert runs["model_args"].str.contains('"width": 4').all()
    swept = SPEC.replace("[sweep]", "[sweep.model_args]\nwidth = [4, 8]\n[sweep]")
    (user_dir / "t.toml").write_text(swept)
    capsys.readouterr()
    again = ["sweep", "t.toml", "--model", "models.py:build", "--out", str(user_dir / "t")]
    assert main([*again, "--model-arg", "width=16"]) == 2
    assert "the spec varies 'model_args.width'" in capsys.readouterr().err
    assert not (user_dir / "t").exists()
    typo = swept.replace("width = [4, 8]", "widht = [4, 8]")
    (user_dir / "u.toml").write_text(typo.replace("[fixed]", '[fixed]\nmodel = "models.py:build"'))
    for dry in (["--dry-run"], []):  # the dry run fails as the sweep would
        assert main(["sweep", "u.toml", "--out", str(user_dir / "u"), *dry]) == 2
        err = capsys.readouterr().err
        assert "it takes no 'widht' (did you mean 'width'?" in err
        assert "--model " not in err  # the spec named the model, not the command line
    assert not (user_dir / "u").exists()
    (user_dir / "v.toml").write_text(swept)  # model_args on the built-in mlp
    for dry in (["--dry-run"], []):
        assert main(["sweep", "v.toml", "--out", str(user_dir / "v"), *dry]) == 2
        assert "are for a model factory" in capsys.readouterr().err


def test_parse_model_args_reads_numbers_booleans_and_text():
    parsed = parse_model_args(["width=64", "p=0.5", "bn=True", "act=gelu"])
    assert parsed == {"width": 64, "p": 0.5, "bn": True, "act": "gelu"}
    assert isinstance(parsed["width"], int) and isinstance(parsed["bn"], bool)
    with pytest.raises(InitlabError, match="key=value"):
        parse_model_args(["2x=3"])


def test_python_api_with_a_notebook_factory_and_tensors():
    def build(width=8):  # defined inside a function: not importable, registered in-process
        return torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.Linear(width, 1))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = x @ torch.randn(5, generator=g)
    data = (x[:80], y[:80], x[80:], y[80:])
    results = initlab.compare(
        "default,he_normal",  # a string, as the CLI takes it, is not read letter by letter
        seeds=1,
        model=build,
        data=data,
        model_args={"width": 4},
        epochs=1,
        batch_size=16,
        device="cpu",
    )
    assert list(results.runs["init"]) == ["default", "he_normal"]
    assert results.runs["model"].str.startswith("callable:build:").all()
    with pytest.raises(InitlabError, match=r"data given as tensors or arrays .* workers=1"):
        initlab.compare(["default"], seeds=1, model="mlp", data=data, workers=2)
    with pytest.raises(InitlabError, match=r"^build \(defined in __main__ .* workers=1"):
        initlab.compare(["default"], seeds=1, model=build, data="digits", workers=2)

    def data():  # a function called data is a function, not tensors
        return (x[:80], y[:80], x[80:], y[80:])

    with pytest.raises(InitlabError, match=r"^build, data \(defined in __main__ or a notebook\)"):
        initlab.compare(["default"], seeds=1, model=build, data=data, workers=2)
    with pytest.raises(InitlabError, match="model= takes a factory, not a built Sequential"):
        initlab.compare(["default"], seeds=1, model=build(), data=data)


def test_specs_of_callables_and_data():
    from initlab.models import build_model

    assert model_spec(build_model) == "initlab.models:build_model"
    assert model_spec("pkg.mod:fn") == "pkg.mod:fn"
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.int64)
    spec = data_spec((x, y, x, y))
    assert is_registered(spec) and spec.startswith("callable:data:")
    assert data_spec((x, y, x, y)) == spec  # same bytes, same spec
    x2 = x.copy()
    x2[0, 0] = 1.0
    assert data_spec((x2, y, x, y)) != spec  # one changed byte: a new spec, new run keys
    # the same numbers as a tensor: the same data (loaded alike), so the same runs resume
    assert data_spec((torch.from_numpy(x), torch.from_numpy(y), x, y)) == spec
    # and tensors hash as they always did: stores of tensor data keep resuming
    t, labels = torch.arange(6, dtype=torch.float32).reshape(3, 2), torch.tensor([0, 1, 0])
    assert arrays_digest((t, labels, t, labels)) == "1a1bb3843a565150"  # as at 3d8402b
    assert data_spec((x.astype(np.float64), y, x, y)) != spec  # another dtype: other data
    with pytest.raises(InitlabError, match="x_train, y_train, x_test"):
        data_spec((x, y))


@pytest.mark.parametrize(
    ("factory", "data", "task"),
    [
        ("resnet", "digits", "auto"),
        ("regression_mlp", "examples/my_data.py:regression", "auto"),
        ("tiny_transformer", "examples/my_data.py:tokens", "sequence"),
    ],
)
def test_the_documented_examples_fit_their_data(factory, data, task, monkeypatch):
    """docs/your-model.md's factories and data pass every pre-training check."""
    monkeypatch.chdir(Path(__file__).parents[1])
    model = f"examples/my_models.py:{factory}"
    configs = comparison_configs(["default"], 1, model=model, dataset=data, task=task)
    assert preflight_configs(configs) is not None


def test_study_takes_device_and_checks_it_before_anything(tmp_path, capsys):
    out = tmp_path / "study"
    assert (
        main(["study", "glorot2010", "--scale", "tiny", "--device", "tpu", "--out", str(out)]) == 2
    )
    assert "got 'tpu'" in capsys.readouterr().err and not out.exists()


def test_diagnose_checks_the_device_before_loading_anything(capsys, monkeypatch):
    from initlab.probe import batch as probing

    monkeypatch.setattr(probing, "load_data", lambda *a, **k: pytest.fail("data loaded"))
    assert main(["diagnose", "--data", "digits", "--device", "cuda:99"]) == 2
    assert "--device cuda:99" in capsys.readouterr().err


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_compare_on_cuda_records_the_device_and_keeps_the_keys(user_dir):
    args = ["--model", "models.py:build", "--data", "digits", "--inits", "default,he_normal"]
    args += ["--limit-train", "300"]
    assert _compare(*args, "--device", "cuda", "--out", str(user_dir / "gpu")) == 0
    assert _compare(*args, "--device", "cpu", "--out", str(user_dir / "cpu")) == 0
    gpu = pd.read_csv(user_dir / "gpu" / "summary.csv")
    assert set(gpu["device"]) == {"cuda"} and gpu["status"].isin(["ok", "stuck"]).all()
    assert _run_ids(user_dir / "gpu") == _run_ids(user_dir / "cpu")  # device is not in the key


@needs_cuda
def test_diagnose_and_doctor_on_cuda_in_bf16(user_dir, capsys):
    args = ["--data", "digits", "--batch", "64", "--model", "models.py:build", "--device", "cuda"]
    assert main(["diagnose", *args, "--precision", "bf16"]) == 0
    assert main(["doctor", *args]) == 0
    assert "the plan" in capsys.readouterr().out


def test_gpus_per_trial_reaches_the_ray_executor(user_dir, monkeypatch):
    """Ray faked: the executor it would build gets --gpus-per-trial; the runs train inline."""
    from initlab.sweep import ray_backend
    from initlab.sweep.engine import DataCache
    from initlab.sweep.executor import InlineExecutor

    made = []

    def fake_ray_executor(address, *, engine, data_dir, **options):
        made.append(options)
        return InlineExecutor(engine, DataCache(data_dir))

    monkeypatch.setattr(ray_backend, "import_ray", lambda: None)
    monkeypatch.setattr(ray_backend, "RayExecutor", fake_ray_executor)
    monkeypatch.setattr(ray_backend, "check_gpus_here", lambda *args: None)  # a GPU cluster
    args = ["--data", "digits", "--inits", "he_normal", "--limit-train", "64"]
    assert _compare(*args, "--backend", "ray", "--gpus-per-trial", "0.5") == 0
    assert made and made[0]["gpus_per_trial"] == 0.5


def test_the_resume_hint_repeats_each_model_arg():
    import typer.main

    from initlab.cli import _register_commands, app
    from initlab.sweep.interrupted import resume_command

    _register_commands()
    command = typer.main.get_command(app).get_command(None, "compare")
    args = ["--model", "m.py:build", "--model-arg", "width=16", "--model-arg", "depth=2"]
    hint = resume_command(command.make_context("compare", args))
    assert "--model m.py:build --model-arg width=16 --model-arg depth=2" in hint


def test_track_off_skips_the_per_layer_statistics(user_dir, capsys):
    for track, written in (("off", False), ("epoch", True)):
        out = user_dir / track
        args = ["--model", "models.py:build", "--data", "digits", "--inits", "he_normal"]
        assert _compare(*args, "--track", track, "--out", str(out)) == 0
        assert (out / "layer_stats.csv").exists() is written
    assert _compare("--track", "sometimes") == 2
    err = capsys.readouterr().err
    assert "track must be 'epoch', 'off' or a step count in [1, 2^63 - 1]" in err


def test_integer_features_train_the_built_in_mlp_and_are_ids_for_a_factory(user_dir, capsys):
    """Integer inputs are token ids for a user's model (so an embedding takes them) and
    float features for initlab's MLP, which takes no ids."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (200, 6))
    y = x.sum(1) % 3
    np.savez(
        user_dir / "ints.npz", x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:]
    )
    assert _compare("--data", "ints.npz", "--hidden", "8", "--inits", "he_normal") == 0
    assert _compare("--data", "ints.npz", "--model", "models.py:regressor") == 2
    assert "integer dtype int64 (kept as token ids" in capsys.readouterr().err


def test_a_fallback_note_prints_once_however_many_workers_give_it(capsys):
    """Each worker finds that vmap cannot run an LSTM; the parent prints the note once."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    args = ["--model", f"{examples}/my_models.py:lstm_classifier", "--seeds", "2"]
    args += ["--data", f"{examples}/my_data.py:first_token", "--inits", "default,he_normal"]
    argv = ["compare", "--epochs", "1", "--batch-size", "16", "--workers", "2", *args]
    assert main([*argv, "--limit-train", "200"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: models trained one at a time") == 1, err


def test_a_factory_missing_several_arguments_names_them_all_at_once(tmp_path, capsys):
    (tmp_path / "m.py").write_text(
        "import torch\ndef required(width, depth, *, act='relu'):\n"
        "    return torch.nn.Linear(64, 10)\n"
    )
    model = f"{tmp_path / 'm.py'}:required"
    assert main(["compare", "--model", model, "--data", "digits"]) == 2
    assert "it needs 'width', 'depth'" in capsys.readouterr().err
    args = ["--model-arg", "width=3", "--model-arg", "dpth=2"]
    assert main(["compare", "--model", model, *args, "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "it needs 'depth'; it takes no 'dpth' (did you mean 'depth'?" in err
    assert len(err.strip().splitlines()) == 1


def test_python_api_takes_two_datasets_and_output_layer_same():
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 5, generator=g), torch.randint(0, 3, (96,), generator=g)
    train, test = TensorDataset(x[:80], y[:80]), TensorDataset(x[80:], y[80:])

    def build():
        return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    # as the CLI's --data file.py:function returning two Datasets already could
    results = initlab.compare(["he_normal"], seeds=1, model=build, data=(train, test), epochs=1)
    assert results.runs["status"].tolist()[0] in ("ok", "stuck")  # random labels: it trained
    same = build()
    initlab.initialize(same, "zeros", output_init="same")
    assert same[2].weight.count_nonzero() == 0
    with pytest.raises(InitlabError, match=r"or \(train_dataset, test_dataset\); got a tuple"):
        initlab.compare(["he_normal"], seeds=1, model=build, data=(x, y, x), epochs=1)


def test_compare_sweeps_several_residual_rules_and_names_the_rule_in_its_groups():
    """--residual-init none,fixup was 'unknown residual rule', and with one rule the tables
    named it nowhere."""
    spec = comparison_spec(["default", "he_normal"], 2, residual_init="none,fixup,zero")
    configs = expand(spec)
    assert spec.group_by == ("init", "residual_init") and len(configs) == 2 * 3 * 2
    assert {c.residual_init for c in configs} == {"none", "fixup", "zero"}
    assert comparison_spec(["he_normal"], 1, residual_init="fixup").group_by == (
        "init", "residual_init",
    )  # fmt: skip
    assert comparison_spec(["he_normal"], 1, residual_init="none").group_by == ("init",)
    with pytest.raises(InitlabError, match="unknown residual rule 'fixp'"):
        comparison_spec(["he_normal"], 1, residual_init="none,fixp")


def test_a_rerun_on_another_device_supersedes_the_run_of_the_old_file(user_dir):
    """Twins were matched on the whole config, device included, which the key leaves out:
    a rerun with --device cuda after an edit left the old run in, as an extra seed."""
    import json

    from initlab.config import RunConfig
    from initlab.store.versions import current_runs

    old = RunConfig(model="models.py:build", dataset="digits", device="auto")
    new = old.replace(device="cpu")
    runs = pd.DataFrame({
        "run_id": ["0123456789abcdef", new.key()],  # the first: keyed by an older models.py
        "config": [json.dumps(old.to_dict()), json.dumps(new.to_dict())],
    })  # fmt: skip
    with pytest.warns(initlab.notes.InitlabNote, match="left out 1 run"):
        kept = current_runs(runs)
    assert kept["run_id"].tolist() == [new.key()]
    builtin = runs.assign(config=[json.dumps(RunConfig().to_dict())] * 2)
    assert current_runs(builtin) is builtin  # nothing to check for built-in models


def test_the_resume_hint_starts_initlab_as_the_user_did(monkeypatch, tmp_path):
    """Run as .venv/bin/initlab without activating the venv, the hint said a bare
    'initlab', which is not on PATH there."""
    import shutil

    from initlab.sweep.interrupted import invoked_program

    script = tmp_path / "venv" / "bin" / "initlab"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr("sys.argv", [str(script), "compare"])
    assert invoked_program() == [str(script)]
    monkeypatch.setattr(shutil, "which", lambda name: str(script))  # the one on PATH
    assert invoked_program() == ["initlab"]
    monkeypatch.setattr("sys.argv", ["/x/initlab/__main__.py", "compare"])
    assert invoked_program() == [sys.executable, "-m", "initlab"]  # a bare python may lack it


def test_the_resume_hint_after_python_m_initlab_names_this_interpreter(monkeypatch):
    """click names the program 'python -m initlab'; that python (a pyenv shim) had no
    initlab module."""
    import typer.main

    from initlab.cli import _register_commands, app
    from initlab.sweep.interrupted import resume_command

    _register_commands()
    monkeypatch.setattr("sys.argv", ["/x/initlab/__main__.py", "compare"])
    root = typer.main.get_command(app).make_context("python -m initlab", ["compare"])
    command = root.command.get_command(root, "compare")
    hint = resume_command(command.make_context("compare", ["--seeds", "4"], parent=root))
    assert hint.startswith(f"{sys.executable} -m initlab compare --seeds 4")
