"""Checksummed downloads, tested against a local HTTP server (never the real network)."""

import dataclasses
import functools
import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from initlab.data import availability, load, locate, mnist
from initlab.data.download import ChecksumMismatchError, RemoteFile, download_file, fetch
from initlab.data.idx import encode_idx
from initlab.errors import DataNotFoundError, InitlabError

FAST = {"timeout": 5.0, "retries": 2, "backoff": 0.0, "progress": False}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, www dir)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Cache and system data directories under tmp_path; no INITLAB_DATA."""
    monkeypatch.setenv(locate.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(locate.ENV_DATA, raising=False)
    monkeypatch.setattr(locate, "SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.setattr(mnist, "BACKOFF", 0.0)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def put(www, mirror, name, data):
    folder = www / mirror
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_success_verified_and_atomic(server, tmp_path):
    base, www = server
    data = gzip.compress(b"hello idx" * 100, mtime=0)
    sha = put(www, "m1", "f.gz", data)
    dest = tmp_path / "dest"
    path = download_file(RemoteFile("f.gz", sha, len(data)), [f"{base}/m1/"], dest, **FAST)
    assert path == dest / "f.gz" and path.read_bytes() == data
    assert [p.name for p in dest.iterdir()] == ["f.gz"]  # no temp files left


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    base, www = server
    put(www, "m1", "f.gz", b"tampered")
    dest = tmp_path / "cache" / "x"
    with pytest.raises(ChecksumMismatchError, match=r"expected 0+.*deleted") as info:
        download_file(RemoteFile("f.gz", "0" * 64), [f"{base}/m1"], dest, **FAST)
    assert isinstance(info.value, InitlabError)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_first_mirror_404_falls_back_to_second(server, tmp_path):
    base, www = server
    (www / "empty").mkdir()
    sha = put(www, "m2", "f.gz", b"from mirror two")
    mirrors = [f"{base}/empty/", f"{base}/m2/"]
    path = download_file(RemoteFile("f.gz", sha), mirrors, tmp_path / "d", **FAST)
    assert path.read_bytes() == b"from mirror two"


def test_bad_first_mirror_then_good_second(server, tmp_path):
    base, www = server
    put(www, "m1", "f.gz", b"corrupted copy")
    sha = put(www, "m2", "f.gz", b"good copy")
    path = download_file(RemoteFile("f.gz", sha), [f"{base}/m1", f"{base}/m2"], tmp_path, **FAST)
    assert path.read_bytes() == b"good copy"


def test_recompressed_file_accepted_by_content_checksum(server, tmp_path):
    base, www = server
    content = encode_idx(np.arange(100, dtype=np.uint8))
    official = gzip.compress(content, mtime=0)
    put(www, "m1", "f.gz", gzip.compress(content, compresslevel=1, mtime=12345))
    remote = RemoteFile(
        "f.gz", hashlib.sha256(official).hexdigest(), raw_sha256=hashlib.sha256(content).hexdigest()
    )
    path = download_file(remote, [f"{base}/m1"], tmp_path, **FAST)
    assert gzip.decompress(path.read_bytes()) == content


def test_unreachable_mirror_is_data_not_found_with_how_to(tmp_path):
    dest = tmp_path / "new"
    with pytest.raises(DataNotFoundError, match=r"could not download f.gz .*HOW TO"):
        download_file(
            RemoteFile("f.gz", "0" * 64), [closed_port_url()], dest, how_to="HOW TO", **FAST
        )
    assert not dest.exists()  # the directory it created is removed again


def test_timeout_is_a_failure_not_a_hang(tmp_path):
    with socket.socket() as sock:  # listens, never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        options = {**FAST, "timeout": 0.3, "retries": 1}
        with pytest.raises(DataNotFoundError, match="timed out"):
            download_file(RemoteFile("f.gz", "0" * 64), [url], tmp_path, **options)


def test_fetch_keeps_valid_existing_files(tmp_path):
    (tmp_path / "f.gz").write_bytes(b"already here")
    sha = hashlib.sha256(b"already here").hexdigest()
    assert fetch([RemoteFile("f.gz", sha)], [closed_port_url()], tmp_path, **FAST) == [
        tmp_path / "f.gz"
    ]


def test_progress_goes_to_stderr(server, tmp_path, capsys):
    base, www = server
    sha = put(www, "m1", "f.gz", b"x" * 5000)
    download_file(RemoteFile("f.gz", sha), [f"{base}/m1"], tmp_path, **{**FAST, "progress": True})
    captured = capsys.readouterr()
    assert captured.out == "" and "f.gz" in captured.err and "done" in captured.err


def small_mnist(www, mirror, n_train=30, n_test=10):
    """Write a tiny MNIST-like dataset to www/mirror; return its RemoteFile entries."""
    rng = np.random.default_rng(1)
    folder = www / mirror
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    paths = mnist.write_files(folder, arrays[:2], arrays[2:])
    files = tuple(
        RemoteFile(p.name, hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)
        for p in paths
    )
    return files, arrays


def test_load_downloads_into_cache_then_reads_locally(server, tmp_path, monkeypatch):
    base, www = server
    files, arrays = small_mnist(www, "m2")
    (www / "m1").mkdir()
    fake = dataclasses.replace(mnist.MNIST, files=files, mirrors=(f"{base}/m1/", f"{base}/m2/"))
    monkeypatch.setitem(mnist.SOURCES, "mnist", fake)
    assert availability("mnist").startswith("will download")
    ds = load("mnist", val_size=5)
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f.name for f in files)
    assert ds.source == str(cache) and (ds.num_train, ds.num_val, ds.num_test) == (25, 5, 10)
    np.testing.assert_allclose(ds.x_val[:, 0].numpy() * 255, arrays[0][:5], atol=1e-4)
    assert availability("mnist") == f"local: {cache}"
    monkeypatch.setitem(mnist.SOURCES, "mnist", dataclasses.replace(fake, mirrors=()))
    assert load("mnist", val_size=5).num_train == 25  # no network needed any more


def test_load_with_bad_checksum_leaves_cache_empty(server, tmp_path, monkeypatch):
    base, www = server
    files, _ = small_mnist(www, "m1")
    bad = (dataclasses.replace(files[0], sha256="f" * 64), *files[1:])
    fake = dataclasses.replace(mnist.MNIST, files=bad, mirrors=(f"{base}/m1/",))
    monkeypatch.setitem(mnist.SOURCES, "mnist", fake)
    with pytest.raises(ChecksumMismatchError):
        load("mnist", val_size=5)
    cache = tmp_path / "cache" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_load_offline_message_says_how_to_get_the_data(monkeypatch, tmp_path):
    fake = dataclasses.replace(mnist.MNIST, mirrors=(closed_port_url(),))
    monkeypatch.setitem(mnist.SOURCES, "mnist", fake)
    with pytest.raises(DataNotFoundError) as info:
        load("mnist")
    message = str(info.value)
    for needle in (
        "could not download",
        "data_dir=DIR",
        "INITLAB_DATA",
        "t10k-labels-idx1-ubyte.gz",
        str(tmp_path / "cache" / "mnist"),
    ):
        assert needle in message
    assert not (tmp_path / "cache" / "mnist").exists()


def test_download_false_never_downloads(monkeypatch, tmp_path):
    with pytest.raises(DataNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load("fashion-mnist", download=False)
    with pytest.raises(DataNotFoundError, match="download=False"):
        load("mnist", download=False)
    assert not (tmp_path / "cache").exists()
