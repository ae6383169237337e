"""The real Fashion-MNIST files from Debian's dataset-fashion-mnist package, when installed."""

import hashlib
from pathlib import Path

import pytest
import torch

from initlab.data import availability, info, load, locate, mnist
from initlab.data.idx import read_bytes, read_idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(locate.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(locate.ENV_DATA, raising=False)


@pytest.fixture(scope="module")
def fashion():
    return load("fashion-mnist", download=False)


def test_found_in_debian_dir():
    assert availability("fashion-mnist") == f"local: {DEBIAN_DIR}"


def test_shapes_types_and_range(fashion):
    assert (fashion.num_train, fashion.num_val, fashion.num_test) == (55_000, 5_000, 10_000)
    assert fashion.input_shape == (1, 28, 28) and fashion.input_size == 784
    assert fashion.x_train.shape == (55_000, 1, 28, 28)
    assert fashion.x_train.dtype == torch.float32 and fashion.y_train.dtype == torch.int64
    for x, y in (fashion.split(s) for s in ("train", "val", "test")):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert int(y.min()) == 0 and int(y.max()) == 9
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    assert fashion.source == str(DEBIAN_DIR)


def test_balanced_classes(fashion):
    assert torch.bincount(fashion.y_test).tolist() == [1000] * 10
    train_and_val = torch.cat([fashion.y_val, fashion.y_train])
    assert torch.bincount(train_and_val).tolist() == [6000] * 10


def test_validation_is_the_first_5000_training_images(fashion):
    raw_x = read_idx(DEBIAN_DIR / "train-images-idx3-ubyte.gz")
    raw_y = read_idx(DEBIAN_DIR / "train-labels-idx1-ubyte.gz")
    assert torch.equal(fashion.x_val[:, 0], torch.from_numpy(raw_x[:5000]).float() / 255)
    assert torch.equal(fashion.y_val, torch.from_numpy(raw_y[:5000]).long())
    assert torch.equal(fashion.x_train[0, 0], torch.from_numpy(raw_x[5000]).float() / 255)
    assert torch.equal(fashion.y_train, torch.from_numpy(raw_y[5000:]).long())


def test_content_matches_published_checksums():
    for remote in mnist.FASHION_MNIST.files:
        digest = hashlib.sha256(read_bytes(DEBIAN_DIR / remote.name)).hexdigest()
        assert digest == remote.raw_sha256, remote.name


def test_repeated_loads_share_the_decoded_tensors(fashion):
    again = load("FashionMNIST", val_size=1000, limit_train=100)
    assert again.num_val == 1000 and again.num_train == 100
    assert again.x_test.data_ptr() == fashion.x_test.data_ptr()  # in-process cache, no copy
    assert torch.equal(again.x_val, fashion.x_val[:1000])


def test_info_matches_default_load(fashion):
    meta = info("fashion-mnist")
    assert (meta["num_train"], meta["num_val"], meta["num_test"]) == (55_000, 5_000, 10_000)
    assert meta["input_shape"] == fashion.input_shape and meta["num_classes"] == 10
    assert "FIRST 5000" in meta["split"]
