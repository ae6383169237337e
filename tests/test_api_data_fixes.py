"""User-reported API defects around ``data=`` and a ResultSet's notebook view:
whole-number regression targets read as classes, ``pathlib.Path`` and ``DataLoader`` data,
and the progress line a partial result's HTML dropped."""

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import initlab
from initlab.data.user import from_value
from initlab.errors import InitlabError
from initlab.results import ResultSet, progress_line
from initlab.train.output_checks import check_output

RUN = dict(seeds=1, epochs=1, batch_size=16)


def one_output():
    return nn.Linear(4, 1)


def four_outputs():
    return nn.Linear(4, 4)


def arrays(targets: np.ndarray) -> tuple:
    """``(x_train, y_train, x_test, y_test)``: 48 train and 16 test examples of 4 features."""
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    return x[:48], targets[:48], x[48:], targets[48:]


def counts() -> np.ndarray:
    """Float64 whole numbers 25..346, as sklearn's diabetes targets are."""
    return np.random.default_rng(1).integers(25, 347, 64).astype(np.float64)


@pytest.mark.filterwarnings("ignore:the float targets are all whole numbers")
def test_inferred_whole_number_targets_with_one_output_offer_regression_first_if_not_declared():
    with pytest.raises(InitlabError) as info:
        initlab.compare(["default"], model=one_output, data=arrays(counts()), **RUN)
    line = str(info.value)
    assert "\n" not in line
    assert "inferred" in line and "whole-number" in line
    regression, logits = line.find("task='regression'"), line.find("logits")
    assert 0 <= regression < logits  # regression first, the logits still offered
    with pytest.raises(InitlabError) as info:  # declared: the labels are classes
        initlab.compare(
            ["default"], model=one_output, data=arrays(counts()), task="classification", **RUN
        )
    assert "regression" not in str(info.value) and "logits" in str(info.value)


def test_inferred_classes_with_too_few_outputs_mention_regression_after_the_logits():
    y = torch.tensor([0, 3, 9])
    with pytest.raises(InitlabError) as info:
        check_output("classification", torch.zeros(3, 4), y, 10, inferred=True)
    line = str(info.value)
    assert 0 <= line.find("make the model output 10 logits") < line.find("task='regression'")
    with pytest.raises(InitlabError) as info:
        check_output("classification", torch.zeros(3, 4), y, 10)
    assert "regression" not in str(info.value)


def test_data_takes_a_pathlib_path_as_its_string(tmp_path):
    x, y, xt, yt = arrays(np.arange(64) % 4)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    by_path = initlab.compare(["default"], model=four_outputs, data=Path(path), **RUN)
    by_str = initlab.compare(["default"], model=four_outputs, data=str(path), **RUN)
    assert by_path.runs["dataset"].iloc[0] == by_str.runs["dataset"].iloc[0] == str(path)


def loaders() -> tuple[DataLoader, DataLoader]:
    x, y, xt, yt = (torch.as_tensor(a) for a in arrays(np.arange(64) % 4))
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(xt, yt))


@pytest.mark.parametrize(
    "data", [loaders, lambda: loaders()[0], lambda: (*arrays(np.arange(64) % 4)[:3], loaders()[1])]
)
def test_a_dataloader_as_data_says_to_pass_its_dataset(data):
    with pytest.raises(InitlabError) as info:
        initlab.compare(["default"], model=four_outputs, data=data(), **RUN)
    line = str(info.value)
    assert "loader.dataset" in line and "initlab batches the data itself" in line
    assert "map-style" not in line and "\n" not in line


def test_a_data_function_returning_dataloaders_says_to_pass_their_datasets():
    with pytest.raises(InitlabError, match=r"train_loader\.dataset"):
        from_value(loaders())


def test_html_of_a_partial_result_shows_the_progress_line_escaped():
    runs = pd.DataFrame(
        {"run_id": ["a"], "init": ["x<y"], "seed": [0], "test_accuracy": [0.5],
         "final_train_loss": [1.0], "status": ["ok"]}
    )  # fmt: skip
    progress = progress_line(8, 1, 0)
    partial = ResultSet(runs, pd.DataFrame(), progress=progress)
    html = partial._repr_html_()
    assert progress in html and html.index(progress) < html.index("<table")
    assert "ResultSet: 1 runs grouped by init" in html
    escaped = ResultSet(runs, pd.DataFrame(), progress="<b>1 of 2</b> & more")
    assert "&lt;b&gt;1 of 2&lt;/b&gt; &amp; more" in escaped._repr_html_()


def _convnet(channels: int):
    return lambda: nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3)
    )


@pytest.mark.parametrize(
    ("shape", "channels", "hint"),
    [
        ((8, 8, 3), 3, "look channels-last ([8, 8, 3], 3 channels last) while Conv2d takes "
         "channels first: transpose them, x.transpose(0, 3, 1, 2)"),
        ((8, 8), 1, "have no channel axis: add one, x[:, None]"),
        ((8, 8, 1), 1, "look channels-last ([8, 8, 1], 1 channel last) while Conv2d"),
    ],
)  # fmt: skip
def test_images_in_the_wrong_layout_are_told_how_to_fix_them(shape, channels, hint):
    """numpy/PIL batches are [N, H, W, C]: the error named both shapes but not the fix."""
    x = np.random.default_rng(0).random((40, *shape), dtype=np.float32)
    y = np.arange(40) % 3
    with pytest.raises(InitlabError) as raised:
        initlab.compare(["default"], 1, model=_convnet(channels), data=(x, y, x, y), epochs=1)
    assert hint in str(raised.value)


class _Flipping(torch.utils.data.Dataset):
    """A Dataset with a random augmentation in ``__getitem__`` (a flip, as torchvision's)."""

    def __init__(self, random: bool):
        self.x, self.y, self.random = torch.randn(20, 4), torch.arange(20) % 2, random

    def __len__(self):
        return 20

    def __getitem__(self, i):
        flip = self.random and bool(torch.rand(()) < 0.5)
        return (self.x[i].flip(0) if flip else self.x[i]), self.y[i]


def test_a_dataset_with_a_random_transform_is_noted_as_read_once():
    """The flip was drawn once per example and frozen, without a word."""
    with pytest.warns(initlab.InitlabNote, match="gives other inputs for the same item"):
        torch.manual_seed(3)  # item 0 flipped on one read and not the other
        for _ in range(20):
            from_value((_Flipping(True), _Flipping(False)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", initlab.InitlabNote)
        from_value((_Flipping(False), _Flipping(False)))
        nan = _Flipping(False)
        nan.x[0, 0] = float("nan")  # NaN == NaN is False: a deterministic item is no draw
        from initlab.data.user import stack

        stack(nan, "train", "data")


def test_a_float64_default_dtype_is_named_as_the_cause_not_the_model():
    """After torch.set_default_dtype(torch.float64) every layer is built float64: the error
    told the user to remove a .double() their code does not have."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(InitlabError, match=r"set_default_dtype\(torch.float64\) is in eff"):
            initlab.compare(["default"], 1, model=lambda: nn.Linear(64, 10), data="digits")
    finally:
        torch.set_default_dtype(previous)


def test_a_model_ending_in_a_softmax_is_noted_before_training():
    """A model that returns probabilities trained without a word: cross-entropy applies
    log_softmax itself, so its outputs are logits squeezed into [0, 1]."""
    x = np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32)
    y = np.arange(40) % 3

    def softmaxed():
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(-1))

    with pytest.warns(initlab.InitlabNote, match="the model's outputs are probabilities"):
        initlab.compare(["default"], 1, model=softmaxed, data=(x, y, x, y), epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", initlab.InitlabNote)
        logits = lambda: nn.Sequential(nn.Linear(6, 3))  # noqa: E731
        initlab.compare(["default"], 1, model=logits, data=(x, y, x, y), epochs=1)


class _Ending(torch.nn.Module):
    """A digit classifier whose output goes through ``end`` (a detach, a sum) last."""

    def __init__(self, end=torch.Tensor.detach) -> None:
        super().__init__()
        self.layer, self.end = torch.nn.Linear(64, 10), end

    def forward(self, x):
        return self.end(self.layer(x.flatten(1)))


def test_a_model_whose_output_has_no_gradient_is_one_line_before_anything(tmp_path):
    """compare trained it, every run failed on 'element 0 of tensors does not require
    grad' after the store was made; diagnose reported exploding gradients (API fuzz)."""
    with pytest.raises(initlab.InitlabError, match="does not depend on its parameters"):
        initlab.compare(["default"], 1, model=_Ending, data="digits", out=tmp_path / "d")
    assert not (tmp_path / "d").exists()
    x, y = torch.randn(4, 64), torch.randint(0, 10, (4,))
    with pytest.raises(initlab.InitlabError, match=r"^diagnose: the model's output does not"):
        initlab.diagnose(_Ending(), x, y)


def test_save_plot_and_out_take_paths_and_say_so(tmp_path, monkeypatch):
    """plot('dir/') wrote dir.png beside the directory, plot('p.txt') and plot('/proc/x.png')
    were matplotlib/OS tracebacks, save('') and compare(out='') wrote into the current
    directory (API fuzz)."""
    monkeypatch.chdir(tmp_path)
    r = initlab.compare(["zeros"], 1, data="digits", epochs=1, hidden=(8,), limit_train=64)
    bad = [
        (lambda: r.plot(str(tmp_path) + "/"), "is a directory: give a file"),
        (lambda: r.plot("p.txt"), r"a figure is written as \.png, .*not \.txt"),
        (lambda: r.plot("/proc/initlab-x.png"), "cannot write /proc/initlab-x.png"),
        (lambda: r.plot(3), "plot takes a file name such as curves.png, got 3"),
        (lambda: r.save(""), "save is empty"),
        (lambda: r.save(None), r"save takes a directory \(str or Path\), got NoneType"),
        (lambda: initlab.compare(["zeros"], 1, data="digits", out=""), "out is empty"),
    ]
    for call, message in bad:
        with pytest.raises(initlab.InitlabError, match=message):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert r.plot("ok.svg").stat().st_size > 0
    figure = r.plot()  # no path: a notebook's figure, nothing written
    assert len(figure.axes) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["ok.svg"]


def test_a_store_in_memory_opens_and_other_paths_are_refused():
    """open_store(':memory:'), as its docstring says, raised 'None is an empty file';
    open_store(3) a TypeError; initialize(model, {0: ...}) a TypeError (API fuzz)."""
    from initlab.store import open_store

    with open_store(":memory:") as store:
        assert store.runs().empty
    with pytest.raises(initlab.InitlabError, match=r"takes a directory or \.db file"):
        open_store(3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(initlab.InitlabError, match=r"got the key 0; e\.g\. \{'0': 'he_normal'\}"):
        initlab.initialize(model, {0: "he_normal"})


def test_a_result_set_names_its_grouping_columns_or_says_why_not():
    """group_by=('nope',) was a pandas KeyError at ranking(), 'init' read as 'i', 'n', ...,
    () 'No group keys passed!' (API fuzz)."""
    r = initlab.compare(["zeros", "he_normal"], 1, data="digits", epochs=1, hidden=(8,),
                        limit_train=64)  # fmt: skip
    with pytest.raises(initlab.InitlabError, match="group_by: nope is not a column of the runs"):
        initlab.ResultSet(r.runs, r.epochs, group_by=("nope",))
    with pytest.raises(initlab.InitlabError, match=r"group_by takes column names \(str\)"):
        initlab.ResultSet(r.runs, r.epochs, group_by=())
    assert initlab.ResultSet(r.runs, r.epochs, group_by="init").group_by == ["init"]
    assert r.ranked_within("init").within == ["init"]


def test_a_model_returning_a_scalar_or_a_layer_of_width_0_is_diagnosed_without_a_traceback():
    """A forward ending in .sum() was 'IndexError: tuple index out of range'; a Linear(3, 0)
    'cannot reshape tensor of 0 elements' (API fuzz)."""
    x, y = torch.randn(4, 64), torch.randint(0, 10, (4,))
    with pytest.raises(initlab.InitlabError, match="the model returned a scalar; return one"):
        initlab.diagnose(_Ending(torch.Tensor.sum), x, y)
    empty = torch.nn.Sequential(torch.nn.Linear(3, 0), torch.nn.Linear(0, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: initializing zero-element tensors
        found = initlab.diagnose(empty, torch.randn(4, 3))
    assert math.isnan(float(found.layers["weight_duplicates"].iloc[0]))


def test_every_way_to_a_result_set_takes_one_grouping_name(tmp_path):
    """Store.results(group_by='init') was a KeyError of ['i', 'n', 't'], and
    ResultSet.from_results(..., group_by='init') built epoch rows without the init column
    (diff review)."""
    from initlab.config import RunConfig
    from initlab.store import open_store
    from initlab.train import run_config

    initlab.compare(["zeros"], 1, data="digits", epochs=1, hidden=(8,), limit_train=64,
                    out=tmp_path)  # fmt: skip
    with open_store(tmp_path) as store:
        assert store.results(group_by="init").group_by == ["init"]
        with pytest.raises(initlab.InitlabError, match="group_by: nope is not a column"):
            store.results(group_by=["nope"])
    result = run_config(RunConfig(dataset="digits", hidden=(8,), epochs=1, limit_train=64))
    built = initlab.ResultSet.from_results([result], group_by="init")
    assert "init" in built.epochs.columns and len(built.summary()) == 1


def test_a_one_logit_binary_classifier_hears_that_two_logits_are_the_same_model():
    """0/1 labels and one output (a BCEWithLogitsLoss model): the line says how to have it
    trained, and only there (a 3-class one-output model gets no BCE aside)."""
    with pytest.raises(InitlabError) as info:
        check_output("classification", torch.zeros(4, 1), torch.tensor([0, 1, 1, 0]), 2)
    assert "same classifier as 2 logits, nn.Linear(d, 2)" in str(info.value)
    with pytest.raises(InitlabError) as info:
        check_output("classification", torch.zeros(4, 1), torch.tensor([0, 1, 2, 0]), 3)
    assert "BCEWithLogitsLoss" not in str(info.value)
