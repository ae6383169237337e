"""IDX reader/writer: round trips, and clear errors for damaged files."""

import gzip

import numpy as np
import pytest

from initlab.data.idx import encode_idx, parse_idx, read_bytes, read_idx, write_idx
from initlab.errors import InitlabError


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_uint8_round_trip_raw_and_gz(tmp_path, name):
    x = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    path = write_idx(tmp_path / name, x)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    y = read_idx(path)
    assert y.dtype == np.uint8 and y.shape == (7, 5, 3)
    np.testing.assert_array_equal(x, y)
    assert y.flags.writeable  # safe for torch.from_numpy


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_other_dtypes_round_trip_big_endian(tmp_path, dtype):
    x = (np.arange(24).reshape(2, 3, 4) - 10).astype(dtype)
    data = encode_idx(x)
    assert data[3] == 3 and data[4:8] == (2).to_bytes(4, "big")
    big = x.astype(np.dtype(dtype).newbyteorder(">")).reshape(-1)
    assert data[-x.itemsize :] == big[-1:].tobytes()
    y = read_idx(write_idx(tmp_path / "x.idx", x))
    assert y.dtype == np.dtype(dtype) and y.dtype.isnative
    np.testing.assert_array_equal(x, y)


def test_one_dimensional_labels_and_known_header(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    data = encode_idx(labels)
    assert data[:8] == bytes([0, 0, 0x08, 1, 0, 0, 0, 5])  # magic 2049, count 5
    np.testing.assert_array_equal(parse_idx(data), labels)


def test_gz_detected_by_content_not_name(tmp_path):
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = tmp_path / "plain.idx"
    path.write_bytes(gzip.compress(encode_idx(x)))
    np.testing.assert_array_equal(read_idx(path), x)
    fake_gz = tmp_path / "really-raw.gz"
    fake_gz.write_bytes(encode_idx(x))
    np.testing.assert_array_equal(read_idx(fake_gz), x)


def test_gzip_writer_is_reproducible(tmp_path):
    x = np.ones((3, 3), dtype=np.uint8)
    a = write_idx(tmp_path / "a.gz", x).read_bytes()
    b = write_idx(tmp_path / "b.gz", x).read_bytes()
    assert a == b


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(InitlabError, match=r"bad-idx1-ubyte is not an IDX file"):
        read_idx(path)


def test_unknown_type_code(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 9]))
    with pytest.raises(InitlabError, match="unknown IDX data type"):
        read_idx(path)


@pytest.mark.parametrize("cut", [3, 6, 20, -1])
def test_truncated_raw_file(tmp_path, cut):
    data = encode_idx(np.zeros((4, 4, 4), dtype=np.uint8))
    path = tmp_path / "cut-idx3-ubyte"
    path.write_bytes(data[:cut])
    with pytest.raises(InitlabError, match=r"cut-idx3-ubyte"):
        read_idx(path)


def test_truncated_data_message_gives_sizes(tmp_path):
    data = encode_idx(np.zeros((4, 4, 4), dtype=np.uint8))
    path = tmp_path / "short"
    path.write_bytes(data[:-5])
    with pytest.raises(InitlabError, match=r"truncated.*\(4, 4, 4\)"):
        read_idx(path)


def test_trailing_bytes_rejected(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(encode_idx(np.zeros(3, dtype=np.uint8)) + b"\x00")
    with pytest.raises(InitlabError, match="longer than its header"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InitlabError, match=r"cut.gz is a corrupt or truncated gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(InitlabError, match="cannot read"):
        read_bytes(tmp_path / "nope")


def test_unsupported_dtype():
    with pytest.raises(InitlabError, match="cannot store"):
        encode_idx(np.zeros(3, dtype=np.int64))
