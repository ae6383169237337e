"""Reading and writing IDX files (the MNIST file format), plain or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 <dtype> <ndim>``, then ``ndim`` big-endian uint32
dimension sizes, then the array in C order, big-endian. Whether a file is gzip-compressed is
decided by its first two bytes, not its name, so a decompressed file named ``*.gz`` still reads.
Every problem with a file (bad magic, truncation, corrupt gzip) raises :class:`InitlabError`
naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from initlab.atomic_files import write_file
from initlab.errors import InitlabError

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """The contents of ``path``, decompressed if it is gzip data; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InitlabError(f"cannot read {path}: {err.strerror or err}") from err
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise InitlabError(
            f"{path} is a corrupt or truncated gzip file ({err}); delete it and get it again"
        ) from err


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a native-endian array; ``source`` names the file in errors."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        magic = data[:4].hex() or "empty"
        raise InitlabError(f"{source} is not an IDX file (magic number 0x{magic})")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise InitlabError(f"{source}: unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InitlabError(f"{source} is truncated (header of {ndim} dimensions incomplete)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise InitlabError(
            f"{source} is {what}: header says shape {shape} ({expected} bytes), "
            f"file has {len(data)} bytes; delete it and get it again"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a numpy array with native byte order."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (dtype one of uint8, int8, int16, int32, float32, float64)."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise InitlabError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim > 255:
        raise InitlabError(f"IDX cannot store {array.ndim} dimensions")
    header = bytes([0, 0, codes[native], array.ndim])
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[codes[native]]).tobytes()
    return header + dims + body


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` (default: name ends in .gz).

    The gzip header carries no timestamp, so equal arrays give byte-identical files.
    """
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    return write_file(path, lambda p: p.write_bytes(data))
