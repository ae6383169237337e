"""Python API keywords: numpy scalars, output_init="same", one-layer models, coord_check data."""

import functools
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.cli import main
from initlab.compare import comparison_configs
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.notes import InitlabNote
from initlab.scaling import coord_check
from initlab.sweep.spec import parse_spec
from initlab.train.build import build_initialized_model


def tiny_data(n: int = 64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 32, 8, generator=g)
    y = torch.randint(0, 3, (n + 32,), generator=g)
    return x[:n], y[:n], x[n:], y[n:]


def one_layer() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 3))


def two_layers(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))


def notes_of(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, InitlabNote)]


# numpy scalars and floats ---------------------------------------------------------------


def test_numpy_integers_are_python_ints_in_the_configs():
    configs = comparison_configs(
        ["zeros"], np.int64(2), epochs=np.int64(1), batch_size=np.int32(16),
        model="mymodels:build", model_args={"width": np.int64(8), "sizes": [np.int64(2)]},
        device=torch.device("cpu"),
    )  # fmt: skip
    assert [c.seed for c in configs] == [0, 1]
    config = configs[0]
    assert type(config.epochs) is int and type(config.batch_size) is int
    assert type(config.model_args["width"]) is int and config.model_args["sizes"] == [2]
    assert config.device == "cpu"
    assert config.key() == RunConfig(**{**config.__dict__, "epochs": 1}).key()  # JSON-hashable
    assert (
        RunConfig(epochs=np.int64(2), seed=np.int64(1)).key() == RunConfig(epochs=2, seed=1).key()
    )


def test_seeds_take_numpy_sequences():
    assert [c.seed for c in comparison_configs(["zeros"], np.array([0, 3]))] == [0, 3]
    assert [c.seed for c in comparison_configs(["zeros"], [np.int64(5)])] == [5]
    assert [c.seed for c in comparison_configs(["zeros"], range(2))] == [0, 1]


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        (2.0, "seeds must be a whole number or a list of seeds, got 2.0"),
        (np.float64(2.5), "seeds must be a whole number or a list of seeds, got 2.5"),
        ([0, -1], "seeds: seed -1 is negative (seeds are integers >= 0)"),
        (-2, "seeds: a count of seeds cannot be negative, got -2"),
    ],
)
def test_bad_seeds_are_one_line(seeds, message):
    with pytest.raises(InitlabError) as e:
        comparison_configs(["zeros"], seeds)
    assert str(e.value) == message


def test_float_counts_and_workers_are_refused():
    with pytest.raises(InitlabError, match=r"^epochs must be an integer >= 1, got 1.0$"):
        comparison_configs(["zeros"], 1, epochs=1.0)
    with pytest.raises(InitlabError, match=r"^workers must be a whole number .* got 2.0$"):
        initlab.compare(["zeros"], 1, workers=2.0)


def test_compare_trains_with_numpy_keywords():
    results = initlab.compare(
        ["zeros"], np.int64(1), model=two_layers, data=tiny_data(), epochs=np.int64(1),
        batch_size=np.int64(32), model_args={"width": np.int64(4)}, device=torch.device("cpu"),
        track="off",
    )  # fmt: skip
    (run,) = results.runs.to_dict("records")
    assert run["status"] in ("ok", "stuck") and run["epochs"] == 1  # zeros: stuck
    assert json.loads(run["model_args"]) == {"width": 4}


# output_init = "same" -----------------------------------------------------------------


def test_output_init_same_is_none_everywhere():
    same, none = (comparison_configs(["he_normal"], 1, output_init=o)[0] for o in ("same", None))
    assert same.output_init is None and same.key() == none.key()
    other = comparison_configs(["zeros"], 1, output_init="same")[0]
    assert other.key() != same.key()  # the init stays in the key
    assert RunConfig(output_init="same") == RunConfig(output_init=None)
    fixed = parse_spec({"fixed": {"output_init": "same"}})
    assert fixed.fixed == {"output_init": None}
    swept = parse_spec({"sweep": {"output_init": ["same", "glorot_uniform"]}})
    assert swept.axes[0].values == ((None,), ("glorot_uniform",))
    with pytest.raises(InitlabError, match="lists a value twice"):
        parse_spec({"sweep": {"output_init": ["same", None]}})


def test_output_init_same_gives_the_output_layer_the_scheme():
    config = comparison_configs(["zeros"], 1, hidden=(4,), output_init="same")[0]
    model = build_initialized_model(config, (8,), 3)
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())
    plain = build_initialized_model(config.replace(output_init="glorot_uniform"), (8,), 3)
    assert torch.count_nonzero(list(plain.parameters())[-2]) > 0  # the output weight


def test_compare_takes_output_init_same():
    results = initlab.compare(
        ["zeros"], 1, model=two_layers, data=tiny_data(), epochs=1, output_init="same",
        track="off",
    )  # fmt: skip
    (run,) = results.runs.to_dict("records")
    assert run["status"] in ("ok", "stuck") and run["output_init"] == "same"


# a one-layer model --------------------------------------------------------------------


def test_a_one_layer_model_gets_a_note_before_training():
    def compare(**options):
        return initlab.compare(
            ["he_normal", "zeros"], 1, model=one_layer, data=tiny_data(), epochs=1,
            track="off", **options,
        )  # fmt: skip

    _, notes = notes_of(compare)
    (note,) = [n for n in notes if "set no layer" in n]
    assert note.startswith("he_normal, zeros set no layer of test_api_keywords:one_layer: ")
    assert "its only layer (1) is the output layer" in note
    assert "output_init='glorot_uniform'" in note and "identical runs" in note
    assert "output_init='same'" in note
    _, notes = notes_of(lambda: compare(output_init="same"))
    assert not [n for n in notes if "set no layer" in n]


def test_two_layers_and_default_get_no_one_layer_note():
    _, notes = notes_of(
        lambda: initlab.compare(
            ["he_normal", "zeros"], 1, model=two_layers, data=tiny_data(), epochs=1, track="off"
        )
    )
    assert not [n for n in notes if "set no layer" in n]
    _, notes = notes_of(
        lambda: initlab.compare(
            ["default"], 1, model=one_layer, data=tiny_data(), epochs=1, track="off"
        )
    )
    assert not [n for n in notes if "set no layer" in n]


def frozen_first_layer() -> nn.Module:
    model = two_layers()
    model[0].requires_grad_(False)  # a "pretrained" backbone
    return model


def test_a_frozen_layer_that_the_schemes_redraw_gets_a_note():
    """A scheme re-draws a frozen layer, which then never trains: zeros left it at chance
    (a user's frozen backbone) with nothing said."""

    def compare(inits):
        return initlab.compare(
            inits, 1, model=frozen_first_layer, data=tiny_data(), epochs=1, track="off"
        )

    _, notes = notes_of(lambda: compare(["default", "zeros"]))
    (note,) = [n for n in notes if "frozen" in n]
    assert note.startswith("0.weight, 0.bias of test_api_keywords:frozen_first_layer are frozen")
    assert "zeros re-draw them" in note and "default keeps the factory's" in note
    _, notes = notes_of(lambda: compare(["default"]))
    assert not [n for n in notes if "frozen" in n]


def test_the_cli_prints_the_one_layer_note(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Linear(8, 3))\n"
    )
    x, y, xt, yt = (t.numpy() for t in tiny_data())
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    model, data = f"{tmp_path / 'net.py'}:net", str(tmp_path / "d.npz")
    args = ["compare", "--model", model, "--data", data, "--inits", "he_normal,zeros",
            "--seeds", "1", "--epochs", "1", "--track", "off"]  # fmt: skip
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "note: he_normal, zeros set no layer of" in err and "--output-init same" in err


# coord_check data ---------------------------------------------------------------------


def test_coord_check_takes_arrays_as_compare_does():
    x, y, xt, yt = (t.numpy() for t in tiny_data())
    sizes = {"input_size": 8, "num_classes": 3}
    result = coord_check("mlp", widths=(8, 16), seeds=2, steps=1, batch_size=16,
                         model_args=sizes, data=(x, y, xt, yt))  # fmt: skip
    assert set(result.coords["width"]) == {8, 16}
    # a notebook shows the outcome and the design, not a dump of the coords table
    shown = repr(result)
    assert shown.startswith(f"ScalingResult: {result.outcome} (widths 8, 16; 2 seeds, 1 steps")
    assert len(shown.splitlines()) <= 1 + 5 + 1 + 3 and "DataFrame" not in shown


def test_coord_check_names_the_type_of_bad_data():
    with pytest.raises(InitlabError) as e:
        coord_check("mlp", widths=(8, 16), seeds=2, steps=1, data={"x": np.zeros((100, 8))})
    assert str(e.value).endswith("got a dict") and len(str(e.value)) < 200


def test_a_fractional_hidden_width_is_refused_not_truncated():
    assert RunConfig(hidden=(64.0, np.int64(32))).hidden == (64, 32)
    with pytest.raises(InitlabError, match=r"hidden widths must be whole numbers, got 64\.7"):
        RunConfig(hidden=(64.7,))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_momentum_for_an_optimizer_without_one_is_refused(optimizer, tmp_path):
    """momentum=0.5 with the default sgd (or Adam) trained exactly what momentum=0.9 did,
    under another run key: a PyTorch user reads it as SGD(momentum=0.5)."""
    with pytest.raises(InitlabError, match=rf"^momentum=0.5: the optimizer {optimizer} does not"):
        initlab.compare(["he_normal"], 1, data="digits", optimizer=optimizer, momentum=0.5,
                        epochs=1, out=tmp_path / "out")  # fmt: skip
    assert not (tmp_path / "out").exists()
    [config] = comparison_configs(["he_normal"], 1, optimizer="momentum", momentum=0.5)
    assert config.momentum == 0.5


@pytest.mark.parametrize(
    ("keyword", "hint"), [("n_seeds", "seeds"), ("num_epochs", "epochs"), ("datadir", "data_dir")]
)
def test_a_mistyped_compare_keyword_is_pointed_to_compares_own(keyword, hint):
    """n_seeds= was answered "did you mean 'seed'?", which compare then refused (it sweeps
    seed): the suggestions now include compare's own keywords and leave out what it sweeps."""
    with pytest.raises(InitlabError) as raised:
        initlab.compare(["he_normal"], data="digits", **{keyword: 2})
    assert str(raised.value).startswith(f"unknown keyword '{keyword}'; did you mean '{hint}'?")


def test_a_spec_with_momentum_needs_a_run_that_uses_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fixed = 'name = "m"\n[fixed]\ndata = "digits"\nmomentum = 0.5\n'
    (tmp_path / "m.toml").write_text(fixed)
    assert main(["sweep", "m.toml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: m.toml: [fixed] momentum=0.5: the optimizer sgd does not use")
    (tmp_path / "m.toml").write_text(fixed + '[sweep]\noptimizer = ["sgd", "momentum"]\n')
    assert main(["sweep", "m.toml", "--dry-run"]) == 0  # the momentum runs use it


def test_errors_about_arrays_or_functions_passed_in_python_name_them_so():
    """They said `--data callable:data:ea368be…` and `use --device cpu` to a Python caller."""
    x, y = np.zeros((20, 3), np.float32), np.zeros(18, np.int64)
    with pytest.raises(InitlabError, match=r"^data \(the arrays passed in Python\): x_train"):
        initlab.compare(["he_normal"], 1, data=(x, y, x, y), epochs=1)

    def broken():
        raise ValueError("no such table")

    with pytest.raises(InitlabError, match=r"^data broken \(defined in this Python session\)"):
        initlab.compare(["he_normal"], 1, data=broken, epochs=1)

    def three():  # a factory of no module: "--model callable:three:3a7e… returned a int"
        return 3

    with pytest.raises(
        InitlabError, match=r"^the model factory three \(defined .*\) returned an int, not"
    ):
        initlab.compare(["he_normal"], 1, model=three, data="digits", epochs=1)
    if not torch.cuda.is_available():
        good = (x, np.zeros(20, np.int64), x, np.zeros(20, np.int64))
        with pytest.raises(InitlabError, match=r"use device='cpu'$"):
            initlab.compare(["he_normal"], 1, data=good, epochs=1, device="cuda")


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(8, 16), nn.Linear(16, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def test_the_per_model_functions_take_arrays_and_refuse_a_class_or_factory_in_one_line():
    """A class, a factory, inputs of the wrong width or a numpy batch gave raw TypeErrors,
    AttributeErrors or a shape error from deep in the tracer."""
    x = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)
    with pytest.raises(InitlabError, match=r"^plan needs a model, not the class _Net: pass _Net"):
        initlab.plan(_Net, "he_normal")
    with pytest.raises(InitlabError, match=r"^plan\(\) takes no keyword 'residual_int'; did you"):
        initlab.plan(_Net(), "he_normal", residual_int="fixup")  # a TypeError naming initialize
    with pytest.raises(InitlabError, match=r"^initialize needs a built model, got <lambda>"):
        initlab.initialize(lambda: _Net(), "he_normal")
    with pytest.raises(
        InitlabError, match=r"^diagnose: the model cannot run on the data: .* on a batch"
    ):
        initlab.diagnose(_Net(), np.zeros((4, 5), np.float32))
    assert initlab.recommend(_Net(), x).entries[0].activation == "relu"  # a numpy batch
    with pytest.raises(InitlabError, match=r"^recommend needs a batch of inputs"):
        initlab.recommend(_Net(), None)
    record = initlab.initialize(_Net(), "lsuv", data=x)
    assert record.rows[0]["expected_std"] is None  # LSUV ran on the array
    assert {c.init for c in comparison_configs("default,he_normal", 1)} == {"default", "he_normal"}
    with pytest.raises(InitlabError, match="inits is empty"):
        comparison_configs([], 1)


def test_a_batch_no_statistic_can_come_from_is_refused_before_any_weight_changes():
    """NaN inputs read as 'exploding gradients, standardize the inputs', an empty batch as
    'healthy', and LSUV on NaN returned quietly with output_var NaN."""
    x = torch.randn(16, 8)
    nan = torch.full((16, 8), float("nan"))
    with pytest.raises(InitlabError, match=r"^diagnose: the inputs contain 128 NaN/inf value\(s\)"):
        initlab.diagnose(_Net(), nan)
    with pytest.raises(InitlabError, match=r"^recommend: the batch of inputs has no examples"):
        initlab.recommend(_Net(), x[:0])
    net = _Net()
    before = [p.clone() for p in net.parameters()]
    for data, message in ((nan, "NaN/inf"), (x[:, :7], "cannot run on the data")):
        with pytest.raises(InitlabError, match=rf"^initialize: .*{message}"):
            initlab.initialize(net, "lsuv", data=data)
        # exact: refused before anything is written, the tensors are the ones of before
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


class _BreaksOnBatches(nn.Module):
    """Runs on the preflight's two examples, fails on a training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("batch too big for this demo")
        return self.fc(x)


def test_failed_runs_are_a_note_with_their_error_in_python():
    """Every run failing returned quietly: the error only sat in results.runs.message, and
    the repr said to 'run the sweep again' to a compare without a store."""
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    y = np.arange(64) % 2
    with pytest.warns(InitlabNote, match=r"2 of 2 run\(s\) failed, e\.g\. he_normal seed 0: "
                      r"RuntimeError: batch too big"):  # fmt: skip
        results = initlab.compare(["he_normal"], 2, model=_BreaksOnBatches,
                                  data=(x, y, x, y), epochs=1)  # fmt: skip
    assert set(results.runs["status"]) == {"failed"} and "sweep again" not in repr(results)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(inits=5), "inits takes init names"),
        (dict(inits=["he_normal", 3]), "inits takes init names"),
        (dict(model_args=[1]), "model_args takes a dict"),
        (dict(out=5), "out takes a directory"),
        (dict(progress=5), "progress takes a function"),
    ],
)
def test_compare_arguments_of_the_wrong_type_are_one_clear_error(kwargs, message, tmp_path):
    """They were bare TypeErrors from deep inside ('int' object is not iterable); progress=5
    failed only after the first run had trained."""
    args = {"inits": ["he_normal"], **kwargs}
    with pytest.raises(InitlabError, match=message):
        initlab.compare(args.pop("inits"), seeds=1, data="digits", epochs=1, **args)


def test_python_calls_that_raised_raw_python_errors(tmp_path):
    """run_study on a path, build_report on a string, coord_check widths as text and
    save() onto a file raised AttributeError, ValueError or FileExistsError."""
    from initlab.report import build_report
    from initlab.sweep import run_study

    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'name = "tiny"\n[fixed]\ndataset = "digits"\nhidden = [8]\nepochs = 1\ntrack = "off"\n'
        '[sweep]\ninit = ["he_normal"]\nseed = [0]\n'
    )
    results, report = run_study(str(spec), None)
    assert len(results.runs) == 1 and report.total == 1
    with pytest.raises(InitlabError, match=r"^run_study takes no option 'device' \(options: "):
        run_study(str(spec), None, device="cpu")  # a run setting: the spec's
    with pytest.raises(InitlabError, match=r"^build_report takes a ResultSet .* got str"):
        build_report("results", tmp_path / "report")
    with pytest.raises(InitlabError, match=r"^widths takes integers like 64,128,256; got '8,x'"):
        coord_check("mlp", widths="8,x", data="digits")
    with pytest.raises(InitlabError, match=r"data directory .*nowhere does not exist"):
        initlab.compare(["he_normal"], 1, data="digits", data_dir=tmp_path / "nowhere")
    (tmp_path / "taken.png").write_text("a plot of before")
    with pytest.raises(InitlabError, match="a file is there; save takes a directory"):
        results.save(tmp_path / "taken.png")
    assert (tmp_path / "taken.png").read_text() == "a plot of before"


def test_a_batch_goes_to_the_device_of_the_model():
    """initialize, recommend and diagnose move an array batch to the model's device (the
    meta device stands in for a GPU here; tests/test_gpu.py runs the real one)."""
    from initlab.arguments import as_inputs

    model = torch.nn.Linear(3, 2).to("meta")
    x = as_inputs(model, np.zeros((4, 3)))
    assert (x.device.type, x.dtype) == ("meta", torch.float32)
    assert as_inputs(torch.nn.Linear(3, 2), np.zeros((4, 3))).device.type == "cpu"


def test_the_coordinate_check_is_a_top_level_name_like_parametrize():
    """A user looked for initlab.coord_check beside initlab.parametrize and found none."""
    from initlab.scaling.check import coord_check

    assert initlab.coord_check is coord_check and "coord_check" in initlab.__all__


# initialize/plan keywords are named as in compare ------------------------------------------


def test_initialize_and_plan_take_compares_keyword_names_and_the_old_ones_with_a_warning():
    """compare(output_init=...) but initialize(output_layer=...): users wrote the CLI's
    names into initialize and got a TypeError. The old names still work, with a warning."""

    def drawn(**keywords):
        model = two_layers(6)
        initlab.initialize(model, "he_normal", generator=torch.Generator().manual_seed(0),
                           **keywords)  # fmt: skip
        return model[2].weight.detach().clone()

    new = drawn(output_init="zeros", residual_init="none", embedding_init="default")
    assert torch.count_nonzero(new) == 0  # the output layer got its own scheme
    with pytest.warns(DeprecationWarning, match=r"initialize\(output_layer=...\) is now "
                      "output_init="):  # fmt: skip
        old = drawn(output_layer="zeros", residual="none", embedding="default")
    torch.testing.assert_close(old, new, rtol=0, atol=0)  # both all zeros: exact by construction
    with pytest.raises(InitlabError, match="got output_layer= and output_init="):
        drawn(output_layer="zeros", output_init="zeros")
    with pytest.warns(DeprecationWarning, match=r"plan\(residual=...\) is now residual_init="):
        planned = initlab.plan(two_layers(), "he_normal", residual="none")
    assert planned.residual_rule == "none"
    with pytest.raises(InitlabError, match="plan\\(\\) takes no keyword 'output_int'; did you "
                       "mean 'output_init'"):  # fmt: skip
        initlab.plan(two_layers(), "he_normal", output_int="zeros")


def test_a_factory_that_returns_the_same_model_twice_is_refused_before_any_run():
    """``model=lambda: net``: every run trained the one object, so all inits scored the same
    (each run continuing the last one's weights), and the user's ``net`` was changed."""
    net = two_layers()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InitlabError, match=r"returned the same Sequential object twice: "):
        initlab.compare(["he_normal", "zeros"], seeds=2, model=lambda: net, data=tiny_data(),
                        epochs=1, device="cpu")  # fmt: skip
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name  # refused before any init touched it
    fresh = initlab.compare(["he_normal"], seeds=1, model=lambda: two_layers(), data=tiny_data(),
                            epochs=1, device="cpu")  # fmt: skip
    assert set(fresh.runs["status"]) <= {"ok", "stuck"}  # a new model per call trains


def test_a_lambda_or_partial_factory_is_named_by_what_it_is_and_progress_false_is_silence():
    """A lambda was named ``callable`` in messages and in the runs' model column;
    ``progress=False``, the natural way to ask for silence, was refused as not a function."""
    with pytest.raises(InitlabError, match=r"^the model factory lambda \(defined in this Python "):
        initlab.compare(["he_normal"], seeds=1, model=lambda: 3, data=tiny_data(), epochs=1)
    with pytest.raises(InitlabError, match=r"^the model factory two_layers \(defined in "):
        initlab.compare(["he_normal"], seeds=1, model=functools.partial(two_layers, "x"),
                        data=tiny_data(), epochs=1)  # fmt: skip
    result = initlab.compare(["he_normal"], seeds=1, model=lambda: two_layers(),
                             data=tiny_data(), epochs=1, progress=False)  # fmt: skip
    assert result.runs["model"].str.startswith("callable:lambda:").all()


def test_a_factory_named_like_a_built_in_model_is_told_apart_from_it():
    """ "the model mlp does not use it (only the built-in mlp does)" contradicted itself."""

    def mlp() -> nn.Module:  # defined in a function: registered, as a notebook's factory is
        return two_layers()

    with pytest.raises(InitlabError, match=r"the model mlp \(defined in this Python session\) "):
        initlab.compare(["he_normal"], model=mlp, hidden=[64], data=tiny_data(), device="cpu")


def meta_model() -> nn.Module:
    with torch.device("meta"):
        return two_layers()


@pytest.mark.parametrize(
    ("factory", "said"),
    [
        (meta_model, r"parameters are on the meta device \(0.weight: no storage to train\)"),
        (lambda: two_layers().double(), r"with float64 parameters \(0.weight\); runs train"),
    ],
)
def test_a_model_a_run_cannot_train_as_built_is_named_not_blamed_on_the_data(factory, said):
    """Both failed the data check: "data examples have shape [8] but the model failed"."""
    with pytest.raises(InitlabError, match=said):
        initlab.compare(["he_normal"], seeds=1, model=factory, data=tiny_data(), device="cpu")


def test_the_per_model_functions_name_a_model_on_the_meta_device():
    """``initialize`` raised "Tensor.item() cannot be called on meta tensors" and diagnose a
    RuntimeError from its batch check."""
    x, y = tiny_data()[:2]
    calls = {
        "initialize": lambda: initlab.initialize(meta_model(), "he_normal"),
        "diagnose": lambda: initlab.diagnose(meta_model(), x, y),
        "recommend": lambda: initlab.recommend(meta_model(), x),
        "plan": lambda: initlab.plan(meta_model(), "he_normal"),
    }
    said = r": the model's parameters are on the meta device \(0.weight: no storage\); call "
    for caller, call in calls.items():
        with pytest.raises(InitlabError, match=rf"^{caller}{said}model.to_empty"):
            call()
    model = meta_model().to_empty(device="cpu")
    initlab.initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(model[0].weight).all() and model[0].weight.std() > 0


def test_a_spec_key_for_a_factory_argument_is_pointed_to_model_args():
    """``**{"model_args.width": 3}`` reached RunConfig: a TypeError, in compare and trials."""
    said = r"^model_args.width= is how a spec names a factory argument; from Python pass "
    for call in (initlab.compare, initlab.trials):
        with pytest.raises(InitlabError, match=said + r"model_args=\{'width': ...\}"):
            call(model=two_layers, data=tiny_data(), **{"model_args.width": 3})


def test_a_run_config_shows_the_settings_its_run_uses_not_every_default():
    """progress=... callbacks printed RunConfig(hidden=(300, 100), activation='relu', ...)
    for a user's factory, which has neither: 30 fields, most of them defaults."""
    config = RunConfig(model="f.py:build", dataset="digits", seed=2, hidden=(300, 100))
    assert repr(config) == "RunConfig(dataset='digits', model='f.py:build', seed=2)"
    assert repr(RunConfig(hidden=(16,))) == "RunConfig(hidden=(16,))"  # the mlp uses it
    assert repr(RunConfig(momentum=0.5)) == "RunConfig()"  # plain sgd has no momentum
