"""Where MNIST-like files are looked for, in which order, and how bad files are reported."""

import dataclasses
import hashlib
import os

import numpy as np
import pytest

from initlab.data import availability, load, locate, mnist
from initlab.data.idx import encode_idx, read_bytes
from initlab.errors import DataNotFoundError, InitlabError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(locate.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(locate.ENV_DATA, raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.setattr(mnist, "RETRIES", 1)


def write(directory, n_train, n_test=4, *, compress=True, label_seed=0):
    """A tiny MNIST-like dataset whose size tells where it was read from."""
    rng = np.random.default_rng(label_seed)
    images = np.full((n_train, 28, 28), n_train, dtype=np.uint8)
    test = np.zeros((n_test, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n_train, dtype=np.uint8)
    return mnist.write_files(
        directory, (images, labels), (test, labels[:n_test]), compress=compress
    )


def origin(**kwargs):
    """Which of the test directories ``load`` read: the number of training images there."""
    return load("fashion-mnist", val_size=1, download=False, **kwargs).num_train + 1


def test_lookup_order(tmp_path, monkeypatch):
    write(tmp_path / "user", 21)
    write(tmp_path / "env", 22)
    write(tmp_path / "cache" / "fashion-mnist", 23)
    write(tmp_path / "system" / "fashion-mnist", 24)
    monkeypatch.setenv(locate.ENV_DATA, str(tmp_path / "env"))
    assert origin(data_dir=tmp_path / "user") == 21
    assert availability("fashion-mnist", tmp_path / "user") == f"local: {tmp_path / 'user'}"
    assert origin() == 22
    monkeypatch.delenv(locate.ENV_DATA)
    assert origin() == 23
    for path in (tmp_path / "cache" / "fashion-mnist").iterdir():
        path.unlink()
    assert origin() == 24
    assert availability("fashion_mnist") == f"local: {tmp_path / 'system' / 'fashion-mnist'}"


def test_named_subdirectory_and_env_layouts(tmp_path, monkeypatch):
    write(tmp_path / "user" / "fashion-mnist", 31)
    assert origin(data_dir=str(tmp_path / "user")) == 31
    write(tmp_path / "env" / "FashionMNIST" / "raw", 32, compress=False)  # torchvision layout
    monkeypatch.setenv(locate.ENV_DATA, str(tmp_path / "env"))
    assert origin() == 32


def test_flat_files_beat_subdirectory(tmp_path):
    write(tmp_path / "user", 41)
    write(tmp_path / "user" / "fashion-mnist", 42)
    assert origin(data_dir=tmp_path / "user") == 41


def test_incomplete_directory_is_skipped(tmp_path):
    paths = write(tmp_path / "user", 51)
    paths[3].unlink()
    write(tmp_path / "system" / "fashion-mnist", 52)
    assert origin(data_dir=tmp_path / "user") == 52


def test_uncompressed_and_dot_idx_spellings(tmp_path):
    for path in write(tmp_path / "user", 61, compress=False):
        os.rename(path, path.with_name(path.name.replace("-idx", ".idx")))
    assert origin(data_dir=tmp_path / "user") == 61


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(InitlabError, match="does not exist"):
        load("fashion-mnist", data_dir=tmp_path / "nope")


def test_other_dataset_in_flat_dir_is_skipped(tmp_path, monkeypatch):
    paths = write(tmp_path / "user", 71, label_seed=7)
    digest = hashlib.sha256(read_bytes(paths[1])).hexdigest()
    labels = dataclasses.replace(mnist.MNIST.files[1], raw_sha256=digest)
    fake_mnist = dataclasses.replace(
        mnist.MNIST, files=(mnist.MNIST.files[0], labels, *mnist.MNIST.files[2:])
    )
    monkeypatch.setitem(mnist.SOURCES, "mnist", fake_mnist)
    with pytest.raises(DataNotFoundError, match=r"holds MNIST, not Fashion-MNIST"):
        origin(data_dir=tmp_path / "user")
    write(tmp_path / "user" / "fashion-mnist", 72)
    assert origin(data_dir=tmp_path / "user") == 72
    assert load("mnist", data_dir=tmp_path / "user", val_size=1).num_train == 70


def test_corrupt_file_names_the_file(tmp_path):
    paths = write(tmp_path / "user", 10)
    paths[0].write_bytes(paths[0].read_bytes()[:-20])
    with pytest.raises(
        InitlabError, match=r"train-images-idx3-ubyte\.gz is a corrupt or truncated"
    ):
        origin(data_dir=tmp_path / "user")


@pytest.mark.parametrize(
    ("role", "array", "message"),
    [
        (1, np.full(10, 12, dtype=np.uint8), "label 12 outside"),
        (1, np.zeros(9, dtype=np.uint8), "10 images but"),
        (0, np.zeros((10, 28), dtype=np.uint8), "expected uint8 images"),
        (3, np.zeros((4, 2), dtype=np.uint8), "expected uint8 labels"),
    ],
)
def test_inconsistent_files_rejected(tmp_path, role, array, message):
    paths = write(tmp_path / "user", 10)
    paths[role].write_bytes(encode_idx(array))
    with pytest.raises(InitlabError, match=message):
        origin(data_dir=tmp_path / "user")


def test_rewritten_files_are_read_again(tmp_path):
    write(tmp_path / "user", 81)
    assert origin(data_dir=tmp_path / "user") == 81
    write(tmp_path / "user", 82)
    assert origin(data_dir=tmp_path / "user") == 82


def test_sizes_on_idx_data(tmp_path):
    write(tmp_path / "user", 20)
    ds = load("fashion-mnist", data_dir=tmp_path / "user", val_size=0, limit_train=7)
    assert (ds.num_train, ds.num_val, ds.num_test) == (7, 0, 4)
    with pytest.raises(InitlabError, match="leaves no training data"):
        load("fashion-mnist", data_dir=tmp_path / "user", val_size=20)
    with pytest.raises(InitlabError, match=r"val_size must be >= 0"):
        load("fashion-mnist", data_dir=tmp_path / "user", val_size=-1)


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    assert locate.cache_root() == tmp_path / "cache"
    monkeypatch.delenv(locate.ENV_CACHE)
    assert locate.cache_root().name == "initlab"
