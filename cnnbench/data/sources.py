"""Readers for the datasets cnnbench knows. Nothing here downloads: every source reads local files.

Each reader returns a `Source`: train and test splits as in-memory uint8 arrays (N, H, W, C) with
integer labels, or (for ImageFolder) lists of (path, label) pairs, plus the class names.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnbench.errors import ConfigError, UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset's files are missing; the message says how to get them."""


@dataclass
class Split:
    images: np.ndarray | None = None  # (N, H, W, C) uint8, for in-memory datasets
    labels: np.ndarray | None = None  # (N,) int64
    files: list[tuple[str, int]] = field(default_factory=list)  # for file-backed datasets

    def __len__(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.files)

    def subset(self, index: np.ndarray) -> Split:
        if self.images is not None:
            return Split(self.images[index], self.labels[index])
        return Split(files=[self.files[i] for i in index], labels=None)

    def targets(self) -> np.ndarray:
        if self.labels is not None:
            return self.labels
        return np.array([label for _, label in self.files], dtype=np.int64)


@dataclass
class Source:
    train: Split
    test: Split
    classes: list[str]
    native_size: int | None  # side of the stored images (None: files of varying size)
    channels: int  # 1 (gray) or 3


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]  # magic 0x0000 08 <ndim>; 0x08 = unsigned byte
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).exists():
            return root / name
    return None


def load_fashion_mnist(root: str | None) -> Source:
    base = Path(root or os.environ.get("CNNBENCH_FASHION_MNIST", FASHION_MNIST_DIR))
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find(base, s) for s in stems]
    if any(p is None for p in paths):
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found in {base} (need {', '.join(s + '[.gz]' for s in stems)}). "
            "Install it with `sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist` "
            "(files land in /usr/share/datasets/fashion-mnist), or without root: "
            "`apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DEST` "
            "and pass data.root=DEST/usr/share/datasets/fashion-mnist"
        )
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)  # type: ignore[arg-type]
    return Source(
        train=Split(xtr[..., None], ytr.astype(np.int64)),
        test=Split(xte[..., None], yte.astype(np.int64)),
        classes=list(FASHION_MNIST_CLASSES),
        native_size=28,
        channels=1,
    )


def load_digits_source(test_fraction: float = 0.2, seed: int = 0) -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Source(
        train=Split(images[train], labels[train]),
        test=Split(images[test], labels[test]),
        classes=[str(i) for i in range(10)],
        native_size=8,
        channels=1,
    )


def _cifar_batches(root: Path, folder: str, archive: str, names: list[str]) -> list[dict]:
    """Unpickled CIFAR python batches from `root/folder/` or from `root/archive` (a .tar.gz)."""
    directory = root / folder
    if directory.is_dir():
        out = []
        for name in names:
            with open(directory / name, "rb") as f:
                out.append(pickle.load(f, encoding="latin1"))  # the official archive format is pickle
        return out
    tar_path = root / archive
    if tar_path.is_file():
        out = []
        with tarfile.open(tar_path, "r:gz") as tar:
            for name in names:
                member = tar.extractfile(f"{folder}/{name}")
                if member is None:
                    raise DatasetNotFoundError(f"{tar_path} has no member {folder}/{name}")
                out.append(pickle.load(member, encoding="latin1"))
        return out
    raise DatasetNotFoundError(
        f"CIFAR data not found: expected {directory}/ or {tar_path}. cnnbench never downloads; get "
        f"{archive} from https://www.cs.toronto.edu/~kriz/cifar.html on a machine with internet, copy it "
        f"to {root} (extracted or not) and pass data.root={root}"
    )


def load_cifar(root: str | None, num_classes: int) -> Source:
    if not root:
        raise DatasetNotFoundError(
            f"data.root is not set: point it at the directory holding the CIFAR-{num_classes} python archive"
        )
    base = Path(root)
    if num_classes == 10:
        folder, archive = "cifar-10-batches-py", "cifar-10-python.tar.gz"
        train_names, test_names, meta_name = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"
        label_key, classes_key = "labels", "label_names"
    else:
        folder, archive = "cifar-100-python", "cifar-100-python.tar.gz"
        train_names, test_names, meta_name = ["train"], ["test"], "meta"
        label_key, classes_key = "fine_labels", "fine_label_names"
    batches = _cifar_batches(base, folder, archive, train_names + test_names + [meta_name])
    meta = batches.pop()

    def stack(parts: list[dict]) -> Split:
        x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        y = np.concatenate([np.asarray(p[label_key], dtype=np.int64) for p in parts])
        return Split(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y)

    return Source(
        train=stack(batches[: len(train_names)]),
        test=stack(batches[len(train_names) :]),
        classes=list(meta[classes_key]),
        native_size=32,
        channels=3,
    )


def _scan_folder(directory: Path, classes: list[str]) -> list[tuple[str, int]]:
    files = []
    for index, name in enumerate(classes):
        for path in sorted((directory / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((str(path), index))
    return files


def load_imagefolder(root: str | None) -> Source:
    if not root:
        raise DatasetNotFoundError("data.root is not set: point it at a folder with train/<class>/ and val/<class>/")
    base = Path(root)
    train_dir, val_dir = base / "train", base / "val"
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise DatasetNotFoundError(
            f"ImageFolder layout not found at {base}: expected {train_dir}/<class>/*.jpg and {val_dir}/<class>/*.jpg"
        )
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"no class folders in {train_dir}")
    extra = sorted({p.name for p in val_dir.iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise DatasetNotFoundError(f"{val_dir} has classes missing from train: {', '.join(extra)}")
    train, test = _scan_folder(train_dir, classes), _scan_folder(val_dir, classes)
    if not train:
        raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {train_dir}")
    return Source(Split(files=train), Split(files=test), classes, native_size=None, channels=3)


def load_synthetic(num_classes: int, num_train: int, num_test: int, size: int, channels: int, seed: int) -> Source:
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        return Split(
            rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8),
            rng.integers(0, num_classes, size=n).astype(np.int64),
        )

    return Source(split(num_train), split(num_test), [f"class_{i}" for i in range(num_classes)], size, channels)


DATASETS = ("fashion_mnist", "digits", "cifar10", "cifar100", "imagefolder", "synthetic")


def load_source(cfg, seed: int) -> Source:
    name = cfg.name
    if name == "fashion_mnist":
        return load_fashion_mnist(cfg.root)
    if name == "digits":
        return load_digits_source(cfg.get("test_fraction", 0.2), seed=0)
    if name == "cifar10":
        return load_cifar(cfg.root, 10)
    if name == "cifar100":
        return load_cifar(cfg.root, 100)
    if name == "imagefolder":
        return load_imagefolder(cfg.root)
    if name == "synthetic":
        return load_synthetic(cfg.num_classes, cfg.num_train, cfg.num_test, cfg.native_size, cfg.in_chans, seed)
    raise ConfigError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")


# -- bad image files (data.on_bad_image) ---------------------------------------------------------------
class BadImageError(UserError, ValueError):
    """An image file that cannot be used; the message names the file."""


_TRAILERS = {"JPEG": (b"\xff\xd9",), "PNG": (b"IEND\xaeB`\x82",), "GIF": (b";",)}


def check_image(path: str) -> str | None:
    """Why `path` is not a usable image (None when it is).

    Cheap for good files: the header is parsed and the file's last bytes are compared with the
    format's end marker; only files whose end marker is missing are fully decoded to decide
    (a truncated file fails to decode, a file with harmless trailing bytes decodes)."""
    import os

    from PIL import Image, UnidentifiedImageError

    try:
        size = os.path.getsize(path)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as im:
            fmt, (w, h), mode = im.format, im.size, im.mode
            if w < 1 or h < 1:
                return f"image of size {w}x{h}"
            trailers = _TRAILERS.get(fmt or "")
            if trailers:
                with open(path, "rb") as f:
                    f.seek(max(0, size - 16))
                    tail = f.read().rstrip(b"\0\r\n ")
                if not any(tail.endswith(t) for t in trailers):
                    im.load()
            try:
                Image.new(mode, (1, 1))
            except ValueError:
                return f"unsupported pixel mode {mode}"
    except UnidentifiedImageError:
        return "not an image file PIL can identify"
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt or truncated ({' '.join(str(err).split())})"
    return None


def scan_images(paths: list[str], stop_at_first: bool = False, threads: int = 8) -> list[tuple[str, str]]:
    """(path, reason) for every bad file of `paths` (in order); threads overlap the file reads."""
    from concurrent.futures import ThreadPoolExecutor

    bad: list[tuple[str, str]] = []
    chunk = 256
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), chunk):
            part = paths[start: start + chunk]
            for path, reason in zip(part, pool.map(check_image, part), strict=True):
                if reason is not None:
                    bad.append((path, reason))
                    if stop_at_first:
                        return bad
    return bad
