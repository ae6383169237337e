"""Tasks beyond classification, devices, and the one-line errors of preflight."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from initlab.config import RunConfig
from initlab.data import load
from initlab.errors import InitlabError
from initlab.train import run_config, train_configs
from initlab.train.device import check_precision, resolve_device
from initlab.train.engine import train_stack
from initlab.train.preflight import preflight
from initlab.train.schedule import Member, StackSettings

HERE = Path(__file__).resolve()
BASE = dict(dataset="digits", hidden=(16,), epochs=1, batch_size=32, track="off")


def tensors(x_all, y_all, task, num_classes):
    """A dataset-like object with the data contract (train/val/test, task, num_classes)."""
    n = len(x_all)
    a, b = n * 3 // 5, n * 4 // 5
    return SimpleNamespace(
        x_train=x_all[:a], y_train=y_all[:a], x_val=x_all[a:b], y_val=y_all[a:b],
        x_test=x_all[b:], y_test=y_all[b:], num_classes=num_classes, task=task,
        input_shape=tuple(x_all.shape[1:]),
    )  # fmt: skip


def test_regression_trains_and_reports_r2():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 5, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * torch.randn(1000, generator=gen)
    data = tensors(x, y, "regression", 1)
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1)) for _ in range(2)]
    shared = StackSettings(task="regression", optimizer="adam", epochs=4, batch_size=32)
    results = train_stack(models, data, shared, [Member(seed=s, lr=1e-2) for s in range(2)])
    for r in results:
        assert r.status == "ok"
        assert r.epochs[-1]["train_loss"] < 0.2 * r.epochs[0]["train_loss"]
        assert r.test_accuracy > 0.9  # R², noise variance 0.01 of ~14.25
        assert r.task == "regression"  # what the store records: test_accuracy is an R²


class Copier(nn.Module):
    """Token ids [B, T] -> logits [B, T, V]: an embedding and a linear read-out."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        self.embed, self.out = nn.Embedding(vocab, 16), nn.Linear(16, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(x)))


def test_sequence_task_trains_to_copy_tokens():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 7, (800, 6), generator=gen)
    data = tensors(x, x.clone(), "sequence", 7)
    torch.manual_seed(0)
    shared = StackSettings(task="sequence", optimizer="adam", epochs=3, batch_size=32)
    results = train_stack(
        [Copier(), Copier()], data, shared, [Member(seed=s, lr=1e-2) for s in (0, 1)]
    )
    for r in results:
        assert r.epochs[-1]["train_loss"] < 0.5 * r.epochs[0]["train_loss"]
        assert r.test_accuracy > 0.95 and r.status == "ok"  # token accuracy; never "stuck"
        assert r.task == "sequence"


def test_unknown_or_missing_devices_are_one_line_errors():
    with pytest.raises(InitlabError, match="got 'gpu'; did you mean 'cuda'") as info:
        resolve_device("gpu")
    assert "\n" not in str(info.value)
    if not torch.cuda.is_available():
        with pytest.raises(InitlabError, match=r"CUDA is not available.*use device='cpu'") as info:
            resolve_device("cuda:0")
        assert "\n" not in str(info.value)
    assert resolve_device("cpu") == torch.device("cpu")
    check_precision("bf16", torch.device("cpu"))  # bf16 autocast runs on every CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_fails_before_training():
    with pytest.raises(InitlabError, match="device='cuda'"):
        run_config(RunConfig(**BASE, device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_matches_the_cpu():
    data = load("digits")
    configs = [RunConfig(**BASE, batch_norm=True, seed=s, lr=0.05) for s in range(3)]
    cpu = train_configs(configs, data)
    gpu = train_configs([c.replace(device="cuda") for c in configs], data)
    for a, b in zip(cpu, gpu, strict=True):
        assert b.status == "ok"
        assert a.epochs[0]["train_loss"] == pytest.approx(b.epochs[0]["train_loss"], rel=1e-3)
    # bf16 products keep 8 significant bits (relative rounding 2^-9 each); an epoch's mean
    # loss averages those errors over 45 steps, so 4 units of 2^-8 are ample. One epoch of
    # this small net leaves some seeds near 50% accuracy in fp32 too: compare, not threshold.
    bf16 = train_configs([c.replace(device="cuda", precision="bf16") for c in configs], data)
    for a, b in zip(gpu, bf16, strict=True):
        assert b.status == "ok", b.message
        assert b.epochs[0]["train_loss"] == pytest.approx(a.epochs[0]["train_loss"], rel=2**-6)
        assert abs(b.test_accuracy - a.test_accuracy) <= 0.05


def test_bf16_trains_on_the_cpu():
    config = RunConfig(**{**BASE, "epochs": 2}, precision="bf16", lr=0.1)
    result = run_config(config, load("digits"))
    assert result.status == "ok" and result.test_accuracy > 0.5


def raises() -> nn.Module:
    raise RuntimeError("out of coffee")


def needs_width(width: int) -> nn.Module:
    return nn.Linear(width, 10)


def not_a_module() -> str:
    return "a string"


def five_classes() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


def wrong_input() -> nn.Module:
    return nn.Linear(10, 10)  # digits are [1, 8, 8]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            dict(model=f"{HERE}:raises"),
            r"the model factory \S+:raises raised RuntimeError: out of coffee",
        ),
        (
            dict(model=f"{HERE}:needs_width"),
            r"model_args .*; pass each as model_args=\{NAME: VALUE\}$",
        ),
        (dict(model=f"{HERE}:not_a_module"), "returned a str, not a torch.nn.Module"),
        (dict(model=f"{HERE}:five_classes"), "outputs 5 classes but the labels need 10"),
        (dict(model=f"{HERE}:wrong_input"), r"data examples have shape \[1, 8, 8\] but the model"),
        (dict(batch_size=5000), r"has \d+ examples \(after \d+ held out for validation\), fewer "),
        (dict(device="tpu"), "'tpu'"),
        (dict(task="regression"), "regression outputs per example"),
        (dict(task="sequence"), "sequence tasks need outputs"),
    ],
)
def test_preflight_errors_are_one_line_each(change, message):
    data = load("digits")
    with pytest.raises(InitlabError, match=message) as info:
        preflight(RunConfig(**{**BASE, **change}), data)
    assert "\n" not in str(info.value)


def test_preflight_finds_nan_inputs_and_stops_before_training():
    data = load("digits")
    x = data.x_train.clone()
    x[3, 0, 2, 2] = math.nan
    broken = dataclasses.replace(data, x_train=x)
    with pytest.raises(InitlabError, match="train inputs contain 1 NaN/inf"):
        run_config(RunConfig(**BASE), broken)
    preflight(RunConfig(**BASE), data)  # the clean data passes


class TokenClassifier(nn.Module):
    """Token ids [B, T] -> one class per sequence: embedding, GRU, the last step's state."""

    def __init__(self, vocab: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.embed, self.rnn = nn.Embedding(vocab, 8), nn.GRU(8, 16, batch_first=True)
        self.out = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.embed(x))[0][:, -1])


def token_classifier() -> nn.Module:
    return TokenClassifier()


def test_integer_inputs_stay_token_ids_for_a_sequence_classifier():
    """Signed integer inputs are ids (int64), so an embedding takes them; the class is the
    last token mod 3, which a GRU learns in a few epochs; unsigned bytes are pixels (float)."""
    from initlab.data import from_value

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (600, 5), generator=gen, dtype=torch.int32)
    y = x[:, -1].long() % 3
    data = from_value((x[:500], y[:500], x[500:], y[500:]), val_size=50)
    assert data.task == "classification" and data.x_train.dtype == torch.int64
    config = RunConfig(
        **{**BASE, "epochs": 4, "dataset": "arrays"}, model=f"{HERE}:token_classifier",
        optimizer="adam", lr=0.02,
    )  # fmt: skip
    preflight(config, data)
    assert run_config(config, data).test_accuracy > 0.9
    pixels = from_value((x[:500].to(torch.uint8), y[:500], x[500:].to(torch.uint8), y[500:]))
    assert pixels.x_train.dtype == torch.float32
    with pytest.raises(
        InitlabError,
        match=r"embed \(Embedding\) takes the inputs as token ids, "
        r"but they are float32.*int64",
    ):
        preflight(config, pixels)  # uint8 ids: one line, not torch's dtype error
    features = dataclasses.replace(data, x_train=data.x_train.float().long())
    with pytest.raises(InitlabError, match=r"integer dtype int64 \(kept as token ids.*float"):
        preflight(config.replace(model=f"{HERE}:wrong_input"), features)


def small_vocabulary() -> nn.Module:
    return Copier(vocab=5)


def test_token_ids_beyond_the_embedding_are_one_line_before_training():
    """Ids 0..6 in the test split only (the probe's two training examples fit): the check
    covers every split, so training does not fail later with 'index out of range'."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (100, 6), generator=gen)
    x[-1, 0] = 6
    data = tensors(x, x.clone(), "sequence", 7)
    config = RunConfig(**{**BASE, "dataset": "arrays"}, model=f"{HERE}:small_vocabulary")
    with pytest.raises(
        InitlabError, match=r"x_test has token id 6 but .* embed \(Embedding\) has 5 rows"
    ):
        preflight(config.replace(task="sequence"), data)
    x[-1, 0] = -1
    with pytest.raises(InitlabError, match=r"x_test has a negative token id \(-1\)"):
        preflight(config.replace(task="sequence"), tensors(x, x.clone().abs(), "sequence", 7))


def test_a_residual_rule_that_changes_nothing_says_so_before_training():
    """A residual MLP without batch norm: no branch ends in a norm, so zero_last_norm would
    train the runs of residual_init 'none' under another name; so would zero_last_layer on
    ReLU branches (zeroed, relu(0) = 0 with relu'(0) = 0 would never train: it keeps them,
    and says so); on tanh branches it acts, silently."""
    import warnings

    from initlab.train.preflight import check_initializes

    data = load("digits")
    settings = {**BASE, "hidden": (16, 16, 16), "residual": True}
    config = RunConfig(**settings, residual_init="zero_last_norm")
    with pytest.warns(UserWarning, match="'zero_last_norm' changes nothing in MLP: no residual"):
        check_initializes(config, data)
    relu = config.replace(residual_init="zero_last_layer")
    with pytest.warns(UserWarning, match="'zero_last_layer' leaves all 2 branches as init"):
        check_initializes(relu, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_initializes(relu.replace(activation="tanh"), data)


def test_labels_that_start_at_one_are_named_as_such():
    from initlab.train.output_checks import check_output

    logits = torch.zeros(8, 10)
    one_based = torch.arange(1, 11).repeat(2)[:8].clamp(max=10)
    one_based[0] = 10  # labels 1..10 for ten classes
    with pytest.raises(InitlabError, match="no label here is 0: if they start at 1, subtract 1"):
        check_output("classification", logits, one_based, 10)
    zero_based = one_based.clone()
    zero_based[1] = 0  # a 0 is there: an 11th class, not an off-by-one
    with pytest.raises(InitlabError) as info:
        check_output("classification", logits, zero_based, 10)
    assert "start at 1" not in str(info.value)


def test_float_class_labels_are_told_they_made_the_task_regression():
    from initlab.train.output_checks import check_output

    labels = torch.tensor([0.5, 1.5, 2.5, 3.5])  # y + 0.5: floats, so regression
    with pytest.raises(InitlabError, match=r"give them as integers .* task='classification'"):
        check_output("regression", torch.zeros(4, 4), labels, 0)
    with pytest.raises(InitlabError) as info:  # two targets per example: no such hint
        check_output("regression", torch.zeros(4, 3), torch.zeros(4, 2), 0)
    assert "classification" not in str(info.value)


def test_whole_number_labels_under_task_regression_are_told_to_drop_it():
    """--task regression on integer labels advised 'give them as integers', which they were."""
    from initlab.train.output_checks import check_output

    labels = torch.tensor([0.0, 1.0, 2.0, 3.0])  # integer labels, as float32 after loading
    with pytest.raises(InitlabError, match=r"whole numbers, i\.e\. class labels: drop task=") as e:
        check_output("regression", torch.zeros(4, 4), labels, 0)
    assert "give them as integers" not in str(e.value)


def test_channels_last_images_get_a_hint_from_the_cnn():
    from initlab.models.cnn import SmallCNN

    with pytest.raises(InitlabError, match=r"look channels-last .*\(x\.transpose\(0, 3, 1, 2\)\)"):
        SmallCNN((8, 8, 1), 10)
    with pytest.raises(InitlabError) as info:  # [C, H, W] too small: no such hint
        SmallCNN((1, 2, 2), 10)
    assert "channels-last" not in str(info.value)


def test_the_device_auto_chose_is_stored_with_each_run(tmp_path):
    import initlab
    from initlab.store import open_store

    results = initlab.compare(
        ["he_normal"], seeds=1, data="digits", hidden=(8,), epochs=1, track="off",
        device="auto", out=str(tmp_path),
    )  # fmt: skip
    expected = "cpu" if not torch.cuda.is_available() else "cuda:0 ("
    assert results.runs["resolved_device"].iloc[0].startswith(expected)
    assert results.runs["device"].iloc[0] == "auto"  # the setting, which the key holds
    with open_store(tmp_path / "initlab.db") as store:
        stored = store.runs()
    assert stored["resolved_device"].iloc[0].startswith(expected)


def local_class_net() -> nn.Module:
    """A factory that defines its class in its body (a notebook's habit): each call makes a
    new class, which ``torch.func.stack_module_state`` refused, failing every stacked run."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    return Net()


@pytest.mark.parametrize("strategy", ["auto", "vmap", "looped"])
def test_models_of_one_structure_but_different_classes_train_stacked(strategy):
    data = load("digits")
    torch.manual_seed(0)
    models = [local_class_net() for _ in range(2)]
    assert type(models[0]) is not type(models[1])
    alone = [copy.deepcopy(m) for m in models]
    shared = StackSettings(task="classification", epochs=1, batch_size=32, strategy=strategy)
    members = [Member(seed=s, lr=0.05) for s in range(2)]
    results = train_stack(models, data, shared, members)
    for m, model in enumerate(alone):
        single = train_stack([model], data, shared, [members[m]])[0]
        assert results[m].status == single.status == "ok"
        # 56 steps of float32 training: summation order differs between the paths
        assert results[m].test_loss == pytest.approx(single.test_loss, rel=1e-3, abs=1e-4)


class Counting(nn.Module):
    """A forward whose Python state switches a branch after some calls (a warm-up, a
    schedule): a traced graph froze the first call's branch and trained every model as if
    the switch never came."""

    def __init__(self) -> None:
        super().__init__()
        self.flat, self.fc1, self.fc2 = nn.Flatten(), nn.Linear(64, 16), nn.Linear(16, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        h = torch.relu(self.fc1(self.flat(x)))
        return self.fc2(h * 0.0 if self.calls > 5 else h)  # from the 6th step: a constant


class TrainOnlyNoise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flat, self.fc1, self.fc2 = nn.Flatten(), nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(self.flat(x)))
        return self.fc2(h + 1.0 if self.training else h)


class PrivateCounting(Counting):
    def __init__(self) -> None:
        super().__init__()
        del self.calls
        self._calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._calls += 1
        return self.fc2(torch.relu(self.fc1(self.flat(x))) * (0.0 if self._calls > 5 else 1.0))


class LazyWidth(TrainOnlyNoise):
    """An attribute set on the first call (None before): tracing set it, and restoring
    deleted it, so every copy of the template raised AttributeError."""

    def __init__(self) -> None:
        super().__init__()
        self.width = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.width is None:
            self.width = 16
        return self.fc2(torch.relu(self.fc1(self.flat(x))))


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (Counting, "changes calls"),
        (PrivateCounting, "changes _calls"),
        (LazyWidth, "changes width"),
        (TrainOnlyNoise, "branches on self.training"),
    ],
)
def test_a_forward_whose_python_branches_move_is_not_traced_into_a_frozen_copy(model, why):
    from initlab.train.stack import ModelStack

    torch.manual_seed(0)
    with pytest.raises(ValueError, match=why):
        ModelStack([model() for _ in range(2)], torch.device("cpu"), "stacked")
    stack = ModelStack([model() for _ in range(2)], torch.device("cpu"), "auto")
    assert stack.strategy == "vmap" and stack.template.training
    plain = [
        {k: v for k, v in vars(m).items() if not isinstance(v, dict)}
        for m in (stack.template, model())
    ]
    assert plain[0] == plain[1]  # the attributes tracing changed are put back (width: None)


def test_a_counting_forward_trains_in_the_stack_as_alone():
    """Whatever strategy auto keeps for it (not the traced one), each model of the stack
    sees the switch when it would alone."""
    data = load("digits")
    torch.manual_seed(0)
    models = [Counting() for _ in range(2)]
    alone = [copy.deepcopy(m) for m in models]
    shared = StackSettings(task="classification", epochs=1, batch_size=32)
    members = [Member(seed=s, lr=0.05) for s in range(2)]
    results = train_stack(models, data, shared, members)
    for m, model in enumerate(alone):
        single = train_stack([model], data, shared, [members[m]])[0]
        # 56 float32 steps; from the 6th the hidden layer is cut: both paths must see that
        assert results[m].test_loss == pytest.approx(single.test_loss, rel=1e-3, abs=1e-4)


def frozen() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return model.requires_grad_(False)


def test_a_model_with_every_parameter_frozen_is_refused_before_training(tmp_path):
    """Every run failed on its first backward, and the message said to run it again."""
    import initlab

    frozen_ = r"^every parameter of the model \(2 tensors\) is frozen"
    with pytest.raises(InitlabError, match=frozen_):
        initlab.compare(["he_normal"], 1, model=f"{HERE}:frozen", data="digits", epochs=1,
                        out=tmp_path / "o")  # fmt: skip
    assert not (tmp_path / "o").exists()
