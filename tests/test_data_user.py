"""The user's own data: ``--data module:function`` / ``file.py:function`` / ``.npz`` / ``.pt``,
task inference, the validation split, one-line errors and the in-process cache."""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab.data import (
    Dataset,
    availability,
    canonical_name,
    clear_cache,
    from_value,
    info,
    load,
)
from initlab.errors import InitlabError
from initlab.notes import InitlabNote
from initlab.usercode.inprocess import data_spec
from initlab.usercode.specs import load_callable, source_fingerprint

N_TRAIN, N_TEST, FEATURES, CLASSES = 200, 40, 5, 4

MODULE = '''
import numpy as np
import torch
from torch.utils.data import TensorDataset

CALLS = []


def arrays(n, seed):
    """x[:, 0] is the row id; labels cycle through 4 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[:, 0] = np.arange(n)
    return x, np.arange(n) % 4


def tensors():
    CALLS.append(1)
    x, y = arrays(200, 0)
    xt, yt = arrays(40, 1)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt), torch.from_numpy(yt)


def numpy_arrays():
    return (*arrays(200, 0), *arrays(40, 1))


def datasets():
    train = TensorDataset(*map(torch.as_tensor, arrays(200, 0)))
    test = TensorDataset(*map(torch.as_tensor, arrays(40, 1)))
    train.classes = ["a", "b", "c", "d"]
    return train, test


def mapping():
    x, y = arrays(200, 0)
    xt, yt = arrays(40, 1)
    return {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, "num_classes": 6}


def regression():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(240, 3)), rng.normal(size=(240, 2))
    return x[:200], y[:200], x[200:], y[200:]


def sequences():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 13, (60, 7), generator=g)
    return x[:50], x[:50].roll(-1, 1), x[50:], x[50:].roll(-1, 1)


def integral_floats():
    x, y = arrays(200, 0)
    xt, yt = arrays(40, 1)
    return x, y.astype(np.float64), xt, yt.astype(np.float32)


def reseeds():
    np.random.seed(123)
    torch.manual_seed(123)
    return numpy_arrays()


def raises():
    raise RuntimeError("disk on fire")


def exits():
    raise SystemExit(3)


def three():
    return 1, 2, 3


def text():
    return "data"


def not_pairs():
    return [1, 2, 3], [4, 5]


def ambiguous():
    x, y = np.random.default_rng(0).normal(size=(25, 3)), np.ones((25, 2), np.int64)
    return x[:20], y[:20], x[20:], y[20:]


def one_hot():
    x, y = arrays(200, 0)
    xt, yt = arrays(40, 1)
    return x, np.eye(4, dtype=np.float32)[y], xt, np.eye(4, dtype=np.float32)[yt]


def whole_counts():
    x, y = np.random.default_rng(0).normal(size=(25, 3)), np.full((25, 2), 3.0, np.float32)
    return x[:20], y[:20], x[20:], y[20:]
'''


@pytest.fixture
def spec(tmp_path: Path):
    """``spec("tensors")`` → ``"<tmp>/userdata.py:tensors"``; the cache starts empty."""
    clear_cache()
    path = tmp_path / "userdata.py"
    path.write_text(textwrap.dedent(MODULE))
    yield lambda name: f"{path}:{name}"
    clear_cache()


def reference() -> tuple[torch.Tensor, ...]:
    """What ``tensors()`` returns, rebuilt here: x (ids in column 0), y, x_test, y_test."""
    out = []
    for n, seed in ((N_TRAIN, 0), (N_TEST, 1)):
        x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
        x[:, 0] = np.arange(n)
        out += [torch.from_numpy(x), torch.arange(n) % CLASSES]
    return tuple(out)


def check_round_trip(data: Dataset) -> None:
    """Train + val are the training pool (each row once, train and val in original order),
    test is the test set, all with the classification dtypes."""
    x, y, x_test, y_test = reference()
    assert data.task == "classification" and data.num_classes >= CLASSES
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    pool_x = torch.cat([data.x_train, data.x_val])
    pool_y = torch.cat([data.y_train, data.y_val])
    order = pool_x[:, 0].argsort()
    torch.testing.assert_close(pool_x[order], x, rtol=0, atol=0)
    torch.testing.assert_close(pool_y[order], y, rtol=0, atol=0)
    for part in (data.x_train, data.x_val):
        assert bool((part[1:, 0] > part[:-1, 0]).all())
    torch.testing.assert_close(data.x_test, x_test, rtol=0, atol=0)
    torch.testing.assert_close(data.y_test, y_test, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["tensors", "numpy_arrays", "datasets", "integral_floats"])
def test_function_specs_round_trip(spec, name: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load(spec(name))
    # whole-number floats read as labels say so (counts 0..144 became 145 classes silently)
    noted = [str(w.message) for w in caught if "read as class labels (4 classes" in str(w.message)]
    assert len(noted) == (name == "integral_floats")
    check_round_trip(data)
    assert data.name == spec(name) and data.num_classes == CLASSES
    assert (data.num_train, data.num_val, data.num_test) == (180, 20, N_TEST)  # 10% val


def test_datasets_keep_their_class_names(spec):
    assert load(spec("datasets")).classes == ("a", "b", "c", "d")
    assert load(spec("tensors")).classes == ("0", "1", "2", "3")


def test_mapping_declares_more_classes_than_it_uses(spec):
    data = load(spec("mapping"))
    check_round_trip(data)
    assert data.num_classes == 6 and len(data.classes) == 6


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".pth"])
def test_data_files_round_trip(tmp_path: Path, suffix: str):
    x, y, x_test, y_test = reference()
    path = save(tmp_path / f"data{suffix}", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    data = load(str(path), val_size=30)
    check_round_trip(data)
    assert data.num_val == 30 and data.num_classes == CLASSES


def test_keys_a_data_file_has_beyond_the_four_are_noted_not_dropped_silently(tmp_path: Path):
    """A user's x_val/y_val were ignored without a word: initlab holds out its own."""
    x, y, x_test, y_test = reference()
    path = save(tmp_path / "val.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test,
                x_val=x[:5], y_val=y[:5])  # fmt: skip
    with pytest.warns(InitlabNote, match=r"x_val, y_val not read \(a validation set is held "):
        data = load(str(path), val_size=30)
    assert data.num_val == 30  # the held-out set, not the file's 5
    plain = save(tmp_path / "plain.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load(str(plain), val_size=30)
    assert not [w for w in caught if "not read" in str(w.message)]


def save(path: Path, **arrays) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    else:
        torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, path)
    return path


def test_regression_is_inferred_from_float_targets(spec):
    data = load(spec("regression"))
    assert data.task == "regression" and data.num_classes == 2 and data.classes == ()
    assert data.y_train.dtype == torch.float32 and data.y_train.shape == (180, 2)
    assert data.x_train.dtype == torch.float32 and data.input_shape == (3,)
    assert "2 regression targets" in data.summary()


def test_regression_on_whole_numbers_is_an_override(spec):
    data = load(spec("integral_floats"), task="regression")
    assert data.task == "regression" and data.num_classes == 1
    assert data.y_train.dtype == torch.float32 and data.y_train.shape == (180,)


def test_sequence_is_inferred_from_integer_inputs_and_targets(spec):
    data = load(spec("sequences"))
    assert data.task == "sequence" and data.input_shape == (7,)
    assert data.x_train.dtype == torch.int64 and data.y_train.shape == data.x_train.shape
    all_ids = torch.cat([data.x_train, data.x_val, data.x_test]).flatten()
    assert data.num_classes == int(all_ids.max()) + 1
    assert "vocabulary" in data.summary()


def test_val_size_seed_and_limit_train(spec):
    a = load(spec("tensors"), val_size=40, seed=0)
    b = load(spec("tensors"), val_size=40, seed=1)
    assert a.num_val == 40 and a.num_train == N_TRAIN - 40
    assert not torch.equal(a.x_val[:, 0], b.x_val[:, 0])  # a different seeded sample
    # stratified: 4 balanced classes of 50 -> exactly 10 of each in a 40-example val set
    assert torch.bincount(a.y_val, minlength=CLASSES).tolist() == [10] * CLASSES
    limited = load(spec("tensors"), val_size=40, limit_train=25)
    assert limited.num_train == 25 and torch.equal(limited.x_val, a.x_val)
    ids, pool = limited.x_train[:, 0].tolist(), set(a.x_train[:, 0].tolist())
    assert set(ids) <= pool and ids == sorted(ids)  # a sample of the training set, in order
    counts = torch.bincount(limited.y_train, minlength=CLASSES).tolist()
    assert max(counts) - min(counts) <= 1  # class-balanced: 6 or 7 of each of the 4
    assert load(spec("tensors"), val_size=0).num_train == N_TRAIN


def test_same_spec_twice_is_one_load(spec):
    first = load(spec("tensors"), val_size=20)
    second = load(spec("tensors"), val_size=20)
    assert second.x_train is first.x_train and second.y_test is first.y_test
    other = load(spec("tensors"), val_size=30)  # new split, same arrays: not called again
    assert other.num_val == 30
    assert load(spec("tensors"), task="classification").num_val == 20
    loaded = inspect.unwrap(load_callable(spec("tensors"), "--data"))  # the user's function
    assert loaded.__globals__["CALLS"] == [1]


def test_a_changed_file_is_a_new_fingerprint_and_a_reload(tmp_path: Path):
    x, y, x_test, y_test = reference()
    path = save(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    before, data = source_fingerprint(str(path)), load(str(path))
    save(path, x_train=x[:100], y_train=y[:100], x_test=x_test, y_test=y_test)
    assert source_fingerprint(str(path)) != before
    assert load(str(path)).num_train + load(str(path)).num_val == 100
    assert data.num_train + data.num_val == N_TRAIN


def test_user_code_leaves_the_global_rngs_alone(spec):
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (np.random.random(), float(torch.rand(())))
    np.random.seed(7)
    torch.manual_seed(7)
    load(spec("reseeds"))
    assert (np.random.random(), float(torch.rand(()))) == expected


def test_user_specs_are_names_with_availability_and_info(spec, tmp_path: Path):
    assert canonical_name(spec("tensors")) == spec("tensors")
    assert "your code" in availability(spec("tensors"))
    assert availability(str(tmp_path / "none.npz")).endswith("(missing)")
    facts = info(spec("regression"))
    assert facts["task"] == "regression" and facts["input_shape"] == (3,)
    assert facts["num_classes"] == 2


def one_line_error(match: str, spec: str, **kwargs) -> str:
    """Load ``spec``; it must fail with a one-line InitlabError matching ``match``."""
    with pytest.raises(InitlabError, match=match) as caught:
        load(spec, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and caught.value.__cause__ is None
    return message


def test_function_errors(spec, tmp_path: Path):
    one_line_error("calling it failed: RuntimeError: disk on fire", spec("raises"))
    one_line_error("calling it failed: SystemExit: 3", spec("exits"))
    message = one_line_error("returned a tuple of 3 items; expected", spec("three"))
    assert "(x_train, y_train, x_test, y_test)" in message
    one_line_error("returned a str", spec("text"))
    one_line_error("items of the train Dataset are not", spec("not_pairs"))
    one_line_error("no such file", f"{tmp_path / 'absent.py'}:make")
    one_line_error("cannot infer the task.*pass task=", spec("ambiguous"))
    # one-hot float rows were fitted as 3 regression outputs, R² shown as the score
    one_line_error(r"one-hot rows: pass class indices \(y.argmax\(1\)\)", spec("one_hot"))
    one_line_error("cannot infer the task from whole-number targets", spec("whole_counts"))
    assert load(spec("whole_counts"), task="regression").num_classes == 2
    one_line_error("unknown task", spec("tensors"), task="vision")


def test_file_errors(tmp_path: Path):
    x, y, x_test, y_test = reference()
    one_line_error("no such file", str(tmp_path / "absent.npz"))
    npz = save(tmp_path / "partial.npz", x_train=x, y_train=y, x_test=x_test, labels=y_test)
    message = one_line_error(
        r"has no y_test \(keys found: x_train, y_train, x_test, labels\)", str(npz)
    )
    assert "expected x_train, y_train, x_test, y_test" in message
    pt = save(tmp_path / "partial.pt", x_train=x, y_train=y)
    one_line_error("has no x_test, y_test", str(pt))
    torch.save([x, y], tmp_path / "list.pt")
    one_line_error("holds a list; expected a dict", str(tmp_path / "list.pt"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")  # numpy said "pickled data"
    one_line_error(r"is not an .npz archive \(numpy.savez writes a zip", str(tmp_path / "junk.npz"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    one_line_error(r"cannot read it \(not a file torch.save wrote\)", str(tmp_path / "junk.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    one_line_error("cannot read it", str(tmp_path / "junk.pt"))
    arrays = {"x_train": x.numpy(), "y_train": y.numpy(), "x_test": x_test, "y_test": y_test}
    torch.save(arrays, tmp_path / "numpy.pt")  # numpy arrays: refused by weights_only=True
    one_line_error("numpy arrays.*use an .npz file", str(tmp_path / "numpy.pt"))


def write(tmp_path: Path, **changes) -> str:
    """A valid npz with some arrays replaced; returns its path."""
    x, y, x_test, y_test = reference()
    arrays = {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test, **changes}
    return str(save(tmp_path / f"d{len(list(tmp_path.iterdir()))}.npz", **arrays))


def test_data_errors(tmp_path: Path):
    _, y, x_test, y_test = reference()
    one_line_error("x_train has 200 examples but y_train has 150", write(tmp_path, y_train=y[:150]))
    # token data: the mismatch was reported as 'cannot infer the task from whole-number
    # targets' (a sequence needs targets the shape of its inputs)
    tokens = torch.randint(0, 9, (200, 6))
    short = write(
        tmp_path, x_train=tokens, y_train=tokens[:100], x_test=tokens[:40], y_test=tokens[:40]
    )
    one_line_error("x_train has 200 examples but y_train has 100", short)
    bad = x_test.clone()
    bad[3, 1], bad[3, 2], bad[9, 0] = float("nan"), float("inf"), float("nan")
    one_line_error(
        r"x_test has 3 NaN/inf value\(s\) \(in 2 of 40 examples\)", write(tmp_path, x_test=bad)
    )
    y_reg = torch.randn(N_TRAIN)
    y_reg[5] = float("nan")
    one_line_error("y_train has 1 NaN/inf", write(tmp_path, y_train=y_reg, y_test=torch.randn(40)))
    negative = y.clone()
    negative[:3] = -1
    one_line_error("y_train has 3 negative class labels", write(tmp_path, y_train=negative))
    halves = y.double() + 0.5 * (torch.arange(N_TRAIN) < 4)
    path = write(tmp_path, y_train=halves)
    one_line_error("y_train has 4 non-integer class labels", path, task="classification")
    assert load(path).task == "regression"  # float targets that are not whole numbers
    over = y_test.clone()
    over[0] = 9
    one_line_error(
        "y_test has 1 class labels >= 4 .* 4 classes are declared",
        write(tmp_path, y_test=over, classes=np.array(["a", "b", "c", "d"])),
    )
    one_line_error("the test split is empty", write(tmp_path, x_test=x_test[:0], y_test=y_test[:0]))
    one_line_error("differ in shape", write(tmp_path, x_test=x_test[:, :3]))
    one_line_error(r"val_size=200 leaves no training data", write(tmp_path), val_size=200)
    one_line_error("sequence needs token ids", write(tmp_path), task="sequence")


def test_builtin_datasets_are_classification_only():
    with pytest.raises(InitlabError, match="classification task"):
        load("digits", task="regression")
    assert load("digits", task="classification").task == "classification"


def test_dataset_checks_each_task():
    x, y = torch.zeros(6, 3), torch.zeros(6)
    reg = Dataset("r", x, y, x, y, x, y, 1, (3,), (), "test", task="regression")
    assert reg.num_classes == 1
    with pytest.raises(InitlabError, match="shapes"):
        dataclasses.replace(reg, num_classes=2)
    with pytest.raises(InitlabError, match="class names given"):
        dataclasses.replace(reg, classes=("a",))
    ids = torch.randint(0, 5, (6, 4))
    seq = Dataset("s", ids, ids, ids, ids, ids, ids, 5, (4,), (), "test", task="sequence")
    with pytest.raises(InitlabError, match=r"outside \[0, 4\)"):
        dataclasses.replace(seq, num_classes=4, x_val=ids.clamp(max=3), y_val=ids.clamp(max=3))
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    with pytest.raises(InitlabError, match="outside"):
        Dataset("c", x, labels, x, labels, x, labels, 3, (3,), ("a", "b", "c"), "test")
    with pytest.raises(InitlabError, match="unknown task"):
        dataclasses.replace(reg, task="auto")


def test_arrays_in_memory_are_checked_and_split_like_a_spec():
    x, y, x_test, y_test = reference()
    data = from_value((x.numpy(), y, x_test, y_test), val_size=40, seed=3)
    check_round_trip(data)
    assert data.name == "arrays" and data.num_val == 40 and data.source == "in memory"
    assert torch.bincount(data.y_val, minlength=CLASSES).tolist() == [10] * CLASSES
    bad = x.clone()
    bad[0, 1] = float("inf")
    with pytest.raises(InitlabError, match=r"^data='arrays': x_train has 1 NaN/inf"):
        from_value((bad, y, x_test, y_test))
    with pytest.raises(InitlabError, match="limit_train must be >= 1"):
        from_value((x, y, x_test, y_test), limit_train=0)


def test_one_stray_huge_label_is_one_line_not_gigabytes(tmp_path, capsys, monkeypatch):
    """A label of 10**9 built 10**9 class names (8 GB in 24 s, no output) and then asked a
    built-in MLP for a 400 GB output layer (an allocation traceback)."""
    from initlab.cli import main

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 8)).astype(np.float32), rng.integers(0, 3, 200)
    y[0] = 10**12  # 64 TB for the MLP's output layer: refused on any machine
    np.savez(tmp_path / "d.npz", x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    loaded = load(str(tmp_path / "d.npz"))
    assert loaded.num_classes == 10**12 + 1 and loaded.classes == ()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n\n\ndef build():\n    return nn.Linear(8, 3)\n"
    )
    base = ["compare", "--data", "d.npz", "--epochs", "1", "--seeds", "1", "--track", "off"]
    assert main([*base, "--model", "nets.py:build"]) == 2
    assert "the labels need 1000000000001" in capsys.readouterr().err
    assert main([*base, "--hidden", "16"]) == 2
    err = capsys.readouterr().err
    assert "does not fit in memory" in err and len(err.strip().splitlines()) == 1


def test_data_paths_of_the_wrong_kind_say_what_data_reads(tmp_path):
    """A directory said 'no such file'; a .csv 'unknown dataset'; a junk .pt repeated torch's
    advice to load it with weights_only=False (which runs the file's code); an unknown
    task on a built-in dataset said it 'needs your own data'."""
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(InitlabError, match="a directory, not a data file"):
        load(str(tmp_path / "d.npz"))
    (tmp_path / "t.csv").write_text("1,2\n")
    with pytest.raises(InitlabError, match=r"not a dataset name nor a file data= reads \(.npz"):
        load(str(tmp_path / "t.csv"))
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(InitlabError, match=r"\(not a file torch.save wrote\)") as info:
        load(str(tmp_path / "junk.pt"))
    assert "weights_only=False" not in str(info.value)
    with pytest.raises(InitlabError, match="unknown task 'foo'"):
        load("digits", task="foo")


@pytest.mark.parametrize("empty", ["train", "test"])
def test_an_empty_numpy_split_is_the_one_line_error_not_a_memoryview_traceback(empty):
    """Hashing the data for the run key cast a [0, 8] array's memoryview: TypeError."""
    x, y = np.random.default_rng(0).normal(size=(40, 8)), np.arange(40) % 3
    parts = {"train": (x, y), "test": (x[:10], y[:10])}
    parts[empty] = (x[:0], y[:0])
    with pytest.raises(InitlabError, match=f"the {empty} split is empty"):
        load(data_spec((*parts["train"], *parts["test"])))


def test_read_only_arrays_such_as_pandas_gives_load_without_torchs_warning():
    """pandas' copy-on-write .values are read-only: torch.from_numpy warned on each."""
    from initlab.data.values import as_tensor

    x = np.arange(12.0).reshape(4, 3)
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = as_tensor(x, "x_train", "data")
    assert tensor.tolist() == x.tolist() and x.flags.writeable is False


def test_limit_train_on_a_file_sorted_by_label_keeps_every_class(tmp_path: Path):
    """A user's file sorted by label, cut to its first examples, gave `doctor --trials` a
    training set of class 0 alone (and every candidate "learned nothing")."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(200)  # 0…0 1…1 2…2
    x = torch.randn(600, 4, generator=gen) + y[:, None].float()
    path = tmp_path / "sorted.npz"
    np.savez(path, x_train=x.numpy(), y_train=y.numpy(), x_test=x[:30].numpy(),
             y_test=y[:30].numpy())  # fmt: skip
    data = load(str(path), val_size=60, limit_train=90)
    assert torch.bincount(data.y_train, minlength=3).tolist() == [30, 30, 30]


def test_the_doctors_trials_cut_a_sorted_file_into_every_class(tmp_path: Path):
    """The budget's cut of the training set (the trials' `limit_train`) took the first rows
    of a file sorted by label: one class, and every candidate 'learned nothing'."""
    from initlab.doctor.trials import trial_data

    y = np.repeat(np.arange(4), 100)
    x = np.random.default_rng(0).normal(size=(400, 5)).astype(np.float32)
    path = tmp_path / "sorted.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    cut = trial_data(load(str(path)), 64)
    assert torch.bincount(cut.y_train, minlength=4).tolist() == [16] * 4


def test_run_keys_change_where_the_limit_now_takes_another_sample(monkeypatch):
    """A store from before the sampled cut must not resume digits/user-data runs with
    limit_train as finished (their training set changed); MNIST-like cuts keep their keys."""
    import initlab.config as config
    from initlab.config import RunConfig

    keys = {
        name: RunConfig(dataset=name, limit_train=64).key()
        for name in ("digits", "fashion-mnist", "fmnist", "mnist1d")
    }
    plain = RunConfig(dataset="digits").key()
    monkeypatch.setattr(config, "LIMIT_SAMPLE", 1)
    assert RunConfig(dataset="digits", limit_train=64).key() != keys["digits"]
    assert RunConfig(dataset="mnist1d", limit_train=64).key() != keys["mnist1d"]
    assert RunConfig(dataset="fashion-mnist", limit_train=64).key() == keys["fashion-mnist"]
    assert RunConfig(dataset="fmnist", limit_train=64).key() == keys["fmnist"]
    assert RunConfig(dataset="digits").key() == plain  # no limit: no marker


def _sorted_file(tmp_path: Path, classes: int = 4, each: int = 300) -> str:
    """A classification file sorted by label (0…0 1…1 …), with separated class means."""
    y = np.repeat(np.arange(classes), each)
    x = np.random.default_rng(0).normal(size=(len(y), 6)).astype(np.float32) + 3.0 * y[:, None]
    path = tmp_path / "sorted.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[::10], y_test=y[::10])
    return str(path)


def test_lsuv_and_the_tracking_probe_see_every_class_of_a_sorted_file(tmp_path: Path):
    """LSUV saw the first 512 training rows: in a file sorted by label, one class, so every
    layer's variance was fixed on that class alone; the tracking probe likewise."""
    from initlab.data.dataset import first_look

    data = load(_sorted_file(tmp_path))
    x, y = first_look(data, 512)
    counts = torch.bincount(y, minlength=4)
    expected = 512 * torch.bincount(data.y_train, minlength=4) / len(data.y_train)
    assert (counts - expected).abs().max() <= 1  # a class-balanced sample, within one
    rows = [int((data.x_train == row).all(1).nonzero()[0]) for row in x[:50]]
    assert torch.equal(data.y_train[rows], y[:50])  # inputs and labels stay paired
    assert torch.equal(first_look(data, 512)[0], x)  # the same batch every time


@pytest.mark.parametrize("name", ["synthetic", "digits"])
def test_first_look_keeps_the_first_rows_of_built_in_data(name):
    """Their files are in random or interleaved order, and their runs' keys stay."""
    from initlab.data.dataset import first_look

    data = load(name, limit_train=300)
    x, y = first_look(data, 100)
    assert torch.equal(x, data.x_train[:100]) and torch.equal(y, data.y_train[:100])
    assert len(torch.unique(y)) == data.num_classes  # every class among them


def test_runs_on_user_data_that_read_its_rows_get_new_keys_that_built_in_runs_keep(monkeypatch):
    """A store from before the sampled rows must not resume LSUV or tracked runs on the
    user's data (their init, or their curves, came from the first rows); untracked runs
    without data-dependent inits, and built-in data, keep their keys."""
    import initlab.config as config
    from initlab.config import RunConfig

    plan = {"spec": "m.py:f", "plan": '{"fc": "lsuv"}', "data": "mine.npz"}
    user = {"dataset": "mine.npz", "track": "off"}
    runs = {
        "lsuv": RunConfig(**user, init="lsuv"),
        "output": RunConfig(**user, output_init="lsuv"),
        "planned": RunConfig(**user, model_args=plan),
        "tracked": RunConfig(dataset="mine.npz", init="he_normal"),
        "he": RunConfig(**user, init="he_normal"),
        "digits": RunConfig(dataset="digits", init="lsuv"),
        "fashion": RunConfig(dataset="fashion-mnist", init="lsuv"),
    }
    keys = {name: run.key() for name, run in runs.items()}
    monkeypatch.setattr(config, "INIT_SAMPLE", 1)
    changed = {name for name, run in runs.items() if run.key() != keys[name]}
    assert changed == {"lsuv", "output", "planned", "tracked"}


def test_lsuv_fixes_the_variance_of_the_whole_sorted_file_not_of_its_first_class(tmp_path):
    """Scaled on class 0 alone (inputs near 0), the first layer's outputs over the whole
    training set had a variance many times the target of 1."""
    from initlab.config import RunConfig
    from initlab.train.build import build_initialized_model

    data = load(_sorted_file(tmp_path))
    config = RunConfig(dataset=data.name, model="mlp", hidden=(64,), init="lsuv", seed=3)
    model = build_initialized_model(config, data.input_shape, data.num_classes, data=data)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        variance = first(data.x_train.flatten(1)).var().item()
    # LSUV stops within tol 0.1 of 1 on its 512 rows; a 512-row variance of a
    # class-balanced sample is within ~4·sqrt(2/512) = 0.25 of the whole set's
    assert 0.65 < variance < 1.35


def test_a_loop_over_array_datasets_keeps_only_the_last_few_alive():
    """Every array tuple passed as data= stayed registered for the life of the process (and
    a slice kept its whole base array): a notebook loop grew by 25 MB a call."""
    import gc
    import weakref

    from initlab.usercode.inprocess import ARRAYS_KEPT, registered_callable

    bases, specs = [], []
    for i in range(ARRAYS_KEPT + 2):
        base = torch.randn(400, 3, generator=torch.Generator().manual_seed(i))
        bases.append(weakref.ref(base))
        y = torch.arange(400) % 2
        specs.append(data_spec((base[:300], y[:300], base[300:], y[300:])))
        del base, y
    gc.collect()
    alive = [ref() is not None for ref in bases]
    assert alive == [False] * 2 + [True] * ARRAYS_KEPT
    with pytest.raises(InitlabError, match=r"were released \(a process keeps the last 4"):
        registered_callable(specs[0], "--data")
    assert load(specs[-1]).x_train.shape[1] == 3  # the newest stay usable
    clear_cache()  # releases them all
    gc.collect()
    assert all(ref() is None for ref in bases)


def test_numbers_in_an_object_array_are_told_to_become_floats_not_class_ids():
    """A mixed pandas frame's float column arrives as dtype object: the hint said to map
    labels to integers 0..K-1, wrong for a regression target."""
    import numpy as np

    from initlab.data.values import as_tensor

    with pytest.raises(InitlabError, match=r"holds numbers: give y_train.astype\('float32'\)"):
        as_tensor(np.array([1.5, 2.0, 3], dtype=object), "y_train", "f.py:data")
    with pytest.raises(InitlabError, match=r"map the labels to integers"):
        as_tensor(np.array(["cat", "dog"], dtype=object), "y_train", "f.py:data")
