"""MNIST and Fashion-MNIST: the four IDX files, found on disk or downloaded with checksums.

Official split: 60,000 training and 10,000 test images. initlab's default validation set is
the FIRST 5,000 training images (as in the Keras reference lab), leaving 55,000 for training;
``val_size`` changes the count, ``seed`` has no effect. Pixels are scaled to [0, 1] (x / 255).

SHA-256 values: the compressed files' digests are those the mirrors serve, as recorded by
TensorFlow Datasets (``url_checksums/mnist.txt``, ``fashion_mnist.txt``) and matching the
publishers' MD5 lists used by torchvision. The digests of the *decompressed* IDX content
(``raw_sha256``) were computed from Debian's ``dataset-fashion-mnist`` files (whose gzip
headers differ from the mirrors') and, for MNIST, taken from several public pin lists.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from initlab.data import locate
from initlab.data.dataset import Dataset, assemble, check_val_size
from initlab.data.download import RemoteFile, fetch
from initlab.data.idx import read_bytes, read_idx, write_idx
from initlab.errors import DataNotFoundError, InitlabError, option

#: Download settings (module attributes so tests can shorten them).
TIMEOUT = 30.0
RETRIES = 2
BACKOFF = 1.0


@dataclass(frozen=True)
class IdxSource:
    """An MNIST-like dataset in four IDX files: train images/labels, test images/labels."""

    name: str
    title: str
    description: str
    files: tuple[RemoteFile, RemoteFile, RemoteFile, RemoteFile]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    homepage: str
    citation: str
    subdirs: tuple[str, ...] = ()
    debian_package: str | None = None
    default_val: int = 5000

    @property
    def stems(self) -> tuple[str, ...]:
        """File names without ``.gz`` (how they are looked for on disk)."""
        return tuple(f.name.removesuffix(".gz") for f in self.files)

    @property
    def download_bytes(self) -> int:
        """Total size of the compressed files."""
        return sum(f.size or 0 for f in self.files)


MNIST = IdxSource(
    name="mnist",
    title="MNIST",
    description="Handwritten digits 0-9, 28x28 grey-scale images.",
    files=(
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    classes=tuple(str(d) for d in range(10)),
    homepage="http://yann.lecun.com/exdb/mnist/",
    citation=(
        "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to "
        "document recognition. Proc. IEEE 86(11), 1998."
    ),
    subdirs=("MNIST/raw", "MNIST"),
)

FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    title="Fashion-MNIST",
    description="Zalando article images (10 clothing classes), 28x28 grey-scale images.",
    files=(
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            26_421_880,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            29_515,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            4_422_102,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            5_148,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    citation=(
        "H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking "
        "Machine Learning Algorithms. arXiv:1708.07747, 2017."
    ),
    subdirs=("fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    debian_package="dataset-fashion-mnist",
)

#: The IDX sources by canonical name (tests may replace entries).
SOURCES: dict[str, IdxSource] = {s.name: s for s in (FASHION_MNIST, MNIST)}


def _identify(labels_path: Path, src: IdxSource) -> str | None:
    """The title of *another* known dataset whose training labels are in ``labels_path``."""
    try:
        digest = hashlib.sha256(read_bytes(labels_path)).hexdigest()
    except InitlabError:
        return None  # reported properly when the file is decoded
    for other in SOURCES.values():
        if other.name != src.name and other.files[1].raw_sha256 == digest:
            return other.title
    return None


def find_local(
    src: IdxSource, data_dir: str | Path | None = None
) -> tuple[Path | None, dict[str, Path], list[str]]:
    """The first directory holding all of ``src``'s files, their paths, and notes on skips.

    A directory whose training labels are recognisably another dataset's (MNIST files in a
    flat ``data_dir`` when Fashion-MNIST is asked for, say) is skipped with a note.
    """
    notes: list[str] = []
    for cand in locate.candidates(src.name, data_dir, src.subdirs):
        paths = locate.find_all(cand.path, src.stems)
        if paths is None:
            continue
        other = _identify(paths[src.stems[1]], src)
        if other is not None:
            notes.append(f"{cand.path} holds {other}, not {src.title}")
            continue
        return cand.path, paths, notes
    return None, {}, notes


def how_to_get(src: IdxSource, data_dir: str | Path | None = None) -> str:
    """One paragraph: where initlab looked and every way to get ``src``'s files."""
    looked = ", ".join(str(c.path) for c in locate.candidates(src.name, data_dir, src.subdirs))
    names = ", ".join(f.name for f in src.files)
    ways = []
    if src.debian_package:
        system = locate.SYSTEM_DIRS[0] / src.name if locate.SYSTEM_DIRS else src.name
        ways.append(
            f"install the Debian/Ubuntu package (`apt-get install {src.debian_package}`,"
            f" files in {system}, found automatically)"
        )
    ways.append(
        f"download {names} from {' or '.join(src.mirrors)} (let initlab do it with "
        f"download=True when online) into {locate.cache_dir(src.name)} (found automatically)"
        f" or into any directory DIR given as {option('--data-dir DIR', 'data_dir=DIR')} or in the "
        f"{locate.ENV_DATA} environment variable (files directly in DIR or in DIR/{src.name}/);"
        f" .gz or uncompressed both work"
    )
    return (
        f"{src.title} files not found (looked in: {looked}). To get them: "
        + "; or ".join(ways)
        + "."
    )


def resolve(
    src: IdxSource, data_dir: str | Path | None, download: bool
) -> tuple[Path, dict[str, Path]]:
    """The directory and file paths to read ``src`` from, downloading into the cache if needed."""
    directory, paths, notes = find_local(src, data_dir)
    if directory is not None:
        return directory, paths
    message = how_to_get(src, data_dir)
    if notes:
        message += " Skipped: " + "; ".join(notes) + "."
    if not download:
        raise DataNotFoundError(message + " (download=False, so nothing was downloaded.)")
    target = locate.cache_dir(src.name)
    fetch(
        src.files,
        src.mirrors,
        target,
        timeout=TIMEOUT,
        retries=RETRIES,
        backoff=BACKOFF,
        how_to=message,
    )
    found = locate.find_all(target, src.stems)
    if found is None:  # pragma: no cover - fetch either provides every file or raises
        raise DataNotFoundError(message)
    return target, found


def _stamp(path: Path) -> tuple[str, int, int]:
    """Identity of a file's current version, for the decode cache key."""
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _decode(images: tuple, labels: tuple, num_classes: int) -> tuple[Tensor, Tensor]:
    """Images as float32 [N, 1, H, W] in [0, 1] and labels as int64 (cached by file stamp)."""
    x, y = read_idx(images[0]), read_idx(labels[0])
    if x.ndim != 3 or x.dtype != np.uint8:
        raise InitlabError(f"{images[0]}: expected uint8 images [N, H, W], got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.dtype != np.uint8:
        raise InitlabError(f"{labels[0]}: expected uint8 labels [N], got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise InitlabError(f"{images[0]} has {len(x)} images but {labels[0]} {len(y)} labels")
    if len(y) and int(y.max()) >= num_classes:
        raise InitlabError(f"{labels[0]}: label {int(y.max())} outside 0..{num_classes - 1}")
    images_t = torch.from_numpy(x).to(torch.float32).div_(255.0).unsqueeze(1)
    return images_t, torch.from_numpy(y.astype(np.int64))


def decode(images: Path, labels: Path, num_classes: int) -> tuple[Tensor, Tensor]:
    """Decode an images/labels IDX pair (in-process cache; a changed file is re-read)."""
    return _decode(_stamp(images), _stamp(labels), num_classes)


def load(
    src: IdxSource,
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    limit_train: int | None = None,
) -> Dataset:
    """Load ``src``: validation = the first ``val_size`` training images (``seed`` unused)."""
    del seed  # the official order defines the split
    directory, paths = resolve(src, data_dir, download)
    stems, k = src.stems, len(src.classes)
    x_pool, y_pool = decode(paths[stems[0]], paths[stems[1]], k)
    x_test, y_test = decode(paths[stems[2]], paths[stems[3]], k)
    if x_pool.shape[1:] != x_test.shape[1:]:
        raise InitlabError(
            f"{directory}: train images {tuple(x_pool.shape[1:])} but test "
            f"images {tuple(x_test.shape[1:])}"
        )
    n_val = check_val_size(src.default_val if val_size is None else val_size, len(y_pool), src.name)
    return assemble(
        src.name,
        (x_pool[n_val:], y_pool[n_val:]),
        (x_pool[:n_val], y_pool[:n_val]),
        (x_test, y_test),
        classes=src.classes,
        source=str(directory),
        limit_train=limit_train,
    )


def availability(src: IdxSource, data_dir: str | Path | None = None) -> str:
    """``"local: DIR"`` or ``"will download (N MB) into DIR"``; never touches the network."""
    directory, _, _ = find_local(src, data_dir)
    if directory is not None:
        return f"local: {directory}"
    size = src.download_bytes / 2**20
    return f"will download ({size:.0f} MB) into {locate.cache_dir(src.name)}"


def info(src: IdxSource) -> dict:
    """Static facts about ``src`` (no file access)."""
    return {
        "name": src.name,
        "title": src.title,
        "description": src.description,
        "num_train": 60_000 - src.default_val,
        "num_val": src.default_val,
        "num_test": 10_000,
        "input_shape": (1, 28, 28),
        "num_classes": len(src.classes),
        "classes": src.classes,
        "split": (
            f"official 60,000/10,000 train/test files; validation = the FIRST "
            f"{src.default_val} training images (val_size changes the count); seed is unused"
        ),
        "scaling": "pixels / 255 -> float32 in [0, 1]",
        "files": tuple(f.name for f in src.files),
        "sha256": {f.name: f.sha256 for f in src.files},
        "mirrors": src.mirrors,
        "download_bytes": src.download_bytes,
        "debian_package": src.debian_package,
        "url": src.homepage,
        "citation": src.citation,
    }


def write_files(
    directory: str | Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    compress: bool = True,
) -> list[Path]:
    """Write uint8 images [N, H, W] and labels [N] as the four MNIST-named IDX files.

    Useful to bring your own MNIST-like data, and for tests.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    arrays = (*train, *test)
    stems = FASHION_MNIST.stems
    return [
        write_idx(directory / (stem + suffix), np.asarray(a, dtype=np.uint8))
        for stem, a in zip(stems, arrays, strict=True)
    ]
