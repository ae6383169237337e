"""digits, mnist1d and synthetic; the registry; the Dataset container."""

import contextlib
import dataclasses
import random

import numpy as np
import pytest
import torch

import initlab.data as data
from initlab.data import Dataset, availability, info, load, locate, mnist1d, names, synthetic
from initlab.data.dataset import stratified_order
from initlab.errors import InitlabError, UnknownNameError

OFFLINE = ["digits", "mnist1d", "synthetic"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(locate.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(locate.ENV_DATA, raising=False)


@contextlib.contextmanager
def global_rng_untouched():
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    yield
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state


def sorted_rows(*xs):
    rows = torch.cat([x.reshape(len(x), -1) for x in xs]).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def same(a: Dataset, b: Dataset) -> bool:
    return all(
        torch.equal(u, v)
        for s in ("train", "val", "test")
        for u, v in zip(a.split(s), b.split(s), strict=True)
    )


@pytest.mark.parametrize(
    ("name", "sizes", "shape"),
    [
        ("digits", (1077, 360, 360), (1, 8, 8)),
        ("mnist1d", (3500, 500, 1000), (1, 40)),
        ("synthetic", (8000, 1000, 2000), (32,)),
    ],
)
def test_shapes_labels_and_info(name, sizes, shape):
    ds = load(name)
    assert (ds.num_train, ds.num_val, ds.num_test) == sizes
    assert ds.input_shape == shape and ds.x_train.shape == (sizes[0], *shape)
    assert ds.num_classes == 10 and len(ds.classes) == 10
    for x, y in (ds.split(s) for s in ("train", "val", "test")):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) <= 9 and torch.isfinite(x).all()
    meta = info(name)
    assert (meta["num_train"], meta["num_val"], meta["num_test"]) == sizes
    assert meta["input_shape"] == shape and meta["split"] and meta["citation"]


@pytest.mark.parametrize("name", OFFLINE)
def test_deterministic_and_no_global_rng_change(name):
    data.clear_cache()
    with global_rng_untouched():
        first = load(name, seed=3)
        data.clear_cache()
        second = load(name, seed=3)
    assert same(first, second)


def test_loading_digits_leaves_the_environment_as_it_was():
    """Importing scikit-learn sets KMP_DUPLICATE_LIB_OK=True, which would hide a real
    duplicate-OpenMP error for the rest of the user's session (a fresh process: this one
    has imported it already)."""
    import subprocess
    import sys

    code = (
        "import os, initlab.data as d; before = dict(os.environ); d.load('digits'); "
        "print(sorted(set(os.environ.items()) ^ set(before.items())))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", OFFLINE)
def test_different_seeds_differ(name):
    a, b = load(name, seed=0), load(name, seed=1)
    assert not torch.equal(a.y_val, b.y_val) or not torch.equal(a.x_val, b.x_val)


def test_digits_split_is_a_stratified_partition():
    from sklearn.datasets import load_digits

    ds = load("digits", seed=5)
    full = torch.from_numpy(load_digits().data.astype(np.float32) / 16)
    assert np.array_equal(sorted_rows(ds.x_train, ds.x_val, ds.x_test), sorted_rows(full))
    for y in (ds.y_val, ds.y_test):
        counts = torch.bincount(y, minlength=10)
        assert int(counts.min()) >= 34 and int(counts.max()) <= 38
    assert float(ds.x_train.max()) == 1.0 and float(ds.x_train.min()) == 0.0


def test_digits_test_set_depends_on_seed_not_val_size():
    a, b, c = load("digits", seed=2), load("digits", seed=2, val_size=100), load("digits", seed=9)
    assert torch.equal(a.x_test, b.x_test) and b.num_val == 100 and b.num_train == 1337
    assert not torch.equal(a.x_test, c.x_test)


def test_mnist1d_split_and_disk_cache(tmp_path, monkeypatch):
    a = load("mnist1d", seed=0)
    b = load("mnist1d", seed=1)
    assert torch.equal(a.x_test, b.x_test)  # official test set, seed-independent
    pool = sorted_rows(a.x_train, a.x_val)
    assert np.array_equal(pool, sorted_rows(b.x_train, b.x_val))
    assert len(np.unique(pool, axis=0)) == 4000  # the val rows are disjoint from train
    assert int(torch.bincount(a.y_val, minlength=10).min()) >= 45
    path = mnist1d.cache_path(mnist1d.generator_args())
    assert path.is_file() and path.is_relative_to(tmp_path / "cache")
    assert availability("mnist1d") == f"generated offline (cached: {path})"
    data.clear_cache()
    monkeypatch.setattr(mnist1d, "_generate", lambda args: pytest.fail("not read from disk"))
    assert same(load("mnist1d", seed=0), a)


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path):
    load("mnist1d")
    path = mnist1d.cache_path(mnist1d.generator_args())
    path.write_bytes(b"garbage")
    data.clear_cache()
    with global_rng_untouched():
        assert load("mnist1d").num_test == 1000
    assert path.stat().st_size > 1000


def test_synthetic_balanced_iid_and_teacher_consistent():
    ds = load("synthetic", seed=4)
    for y in (ds.y_train, torch.cat([ds.y_val, ds.y_test])):
        share = torch.bincount(y, minlength=10).double() / len(y)
        assert float(share.min()) > 0.07 and float(share.max()) < 0.13
    x, y = synthetic.make_synthetic(4)
    assert torch.equal(torch.cat([ds.x_val, ds.x_train, ds.x_test]), x)
    assert torch.equal(torch.cat([ds.y_val, ds.y_train, ds.y_test]), y)
    assert len(np.unique(sorted_rows(x), axis=0)) == len(x)  # splits disjoint
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


def test_synthetic_is_learnable_not_noise():
    x, y = synthetic.make_synthetic(0)
    x_tr, y_tr, x_te, y_te = x[:9000].double(), y[:9000], x[9000:].double(), y[9000:]
    onehot = torch.nn.functional.one_hot(y_tr, 10).double()
    w = torch.linalg.lstsq(torch.cat([x_tr, torch.ones(9000, 1)], 1), onehot).solution
    acc = (torch.cat([x_te, torch.ones(2000, 1)], 1) @ w).argmax(1).eq(y_te).double().mean()
    assert 0.3 < float(acc) < 0.99  # a linear probe beats chance (0.1) but is not perfect


def test_stratified_order_prefixes_are_balanced():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    order = stratified_order(labels, seed=0)
    assert sorted(order) == list(range(200))
    counts = np.bincount(labels[order[:50]], minlength=4)
    assert np.all(np.abs(counts - np.array([25, 12.5, 7.5, 5])) <= 1)
    assert not np.array_equal(order, stratified_order(labels, seed=1))


def test_names_aliases_and_unknown():
    assert names() == ["fashion-mnist", "mnist", "digits", "mnist1d", "synthetic"]
    for spelling in ("fashion_mnist", "FashionMNIST", "Fashion-MNIST", "fmnist"):
        assert data.canonical_name(spelling) == "fashion-mnist"
    assert data.canonical_name("MNIST_1D") == "mnist1d"
    with pytest.raises(UnknownNameError, match="did you mean 'mnist1d'"):
        load("mnist-2d")
    with pytest.raises(UnknownNameError):
        info("cifar10")
    assert availability("digits") == "bundled with scikit-learn"
    assert availability("synthetic") == "generated offline"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_size": -1},
        {"val_size": 1.5},
        {"val_size": True},
        {"val_size": 1437},
        {"seed": -1},
        {"seed": "0"},
        {"limit_train": 0},
        {"download": "yes"},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(InitlabError):
        load("digits", **kwargs)


def test_limit_train_and_val_size():
    ds = load("synthetic", limit_train=100, val_size=0)
    assert (ds.num_train, ds.num_val, ds.num_test) == (100, 0, 2000)
    assert torch.equal(ds.x_train, load("synthetic", val_size=0).x_train[:100])
    assert load("digits", limit_train=10**6).num_train == 1077  # at most, not exactly


def test_dataset_is_frozen_and_summarised():
    ds = load("digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.x_train = ds.x_test
    assert ds.summary().startswith("digits: 1077 train / 360 val / 360 test, input 1x8x8")
    assert repr(ds) == f"Dataset({ds.summary()})"
    assert ds.input_size == 64
    with pytest.raises(InitlabError, match="unknown split"):
        ds.split("validation")


def test_dataset_rejects_inconsistent_tensors():
    ds = load("digits")
    with pytest.raises(ValueError, match="dtypes"):
        dataclasses.replace(ds, y_train=ds.y_train.int())
    with pytest.raises(ValueError, match="shapes"):
        dataclasses.replace(ds, x_val=ds.x_val[:, :, :4])


def test_the_torch_free_dataset_names_are_the_registry_s():
    """Run keys spell a dataset by :mod:`initlab.dataset_names` (read without torch) and
    loading by the registry: a dataset added to one only would key its runs apart."""
    from initlab.data import canonical_name, names
    from initlab.dataset_names import ALIASES, BUILT_IN

    assert tuple(names()) == BUILT_IN
    assert all(canonical_name(alias) == name for alias, name in ALIASES.items())
    assert canonical_name("Fashion_MNIST") == "fashion-mnist"
