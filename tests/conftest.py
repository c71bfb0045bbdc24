"""Shared fixtures: composed configs, tiny real datasets (digits, Fashion-MNIST subsets, a JPEG
ImageFolder, a fake CIFAR archive in the real format) and tiny trained checkpoints."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

import torch  # noqa: E402

from cnnbench.runtime import register_resolvers  # noqa: E402
from tests.helpers import (  # noqa: E402
    FASHION_DIR,
    fashion_available,
    fashion_or_digits_images,
    train_tiny,
    write_cifar,
)

# One intra-op thread: on 2 cores shared with loader workers, DDP ranks or anything else, two OpenMP threads
# spin-wait and run tests up to 20x slower (measured: a 2-epoch digits run took 84 s with 2 threads under load,
# 3.8 s with 1).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# cnnbench's OmegaConf resolvers, for every test that composes a config with Hydra's API (the console script
# registers them itself: cnnbench.cli)
register_resolvers()


def pytest_collection_modifyitems(config, items):
    """The modules that hold slow tests run first, each module whole and in its own order: pytest-xdist
    (`--dist worksteal`) splits the list between its workers and an idle worker takes tests from the end of a
    busy one's share, so the long tests start early and the many short ones even out the end."""
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)


@pytest.fixture(autouse=True)
def _logging_left_as_found():
    """A Hydra job run in-process with `hydra/job_logging=disabled` disables every existing logger and sets the
    root level to ERROR; put both back after each test, so that no test depends on which tests ran before it in
    the same process (pytest-xdist distributes them)."""
    import logging

    root_level = logging.root.level
    yield
    logging.root.setLevel(root_level)
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.disabled:
            logger.disabled = False


@pytest.fixture(scope="session")
def fashion_mnist():
    """The Fashion-MNIST directory; a missing dataset fails under CI=true and skips elsewhere."""
    if not fashion_available():
        message = f"Fashion-MNIST not found at {FASHION_DIR} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return FASHION_DIR


@pytest.fixture(scope="session")
def jpeg_imagefolder(tmp_path_factory) -> Path:
    """root/train/<class>/*.jpg and root/val/<class>/*.jpg, written from real images (RGB JPEGs)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    images, labels, classes = fashion_or_digits_images(12)
    names = [c.replace("/", "-").replace(" ", "_") for c in classes][:4]
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        if label >= len(names):
            continue
        split = "val" if i % 4 == 0 else "train"
        folder = root / split / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        rgb = np.stack([img, img // 2 + 60, 255 - img], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).resize((40, 36)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> dict[str, Path]:
    """Small CIFAR-10/100 python archives in the official format: extracted dirs and .tar.gz files."""
    base = tmp_path_factory.mktemp("cifar")
    out = {}
    for n in (10, 100):
        extracted = base / f"extracted{n}"
        write_cifar(extracted, n)
        archived = base / f"archived{n}"
        archived.mkdir()
        folder = "cifar-10-batches-py" if n == 10 else "cifar-100-python"
        with tarfile.open(archived / f"{'cifar-10' if n == 10 else 'cifar-100'}-python.tar.gz", "w:gz") as tar:
            tar.add(extracted / folder, arcname=folder)
        out[f"cifar{n}"] = extracted
        out[f"cifar{n}_tar"] = archived
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A ResNet-20 trained briefly on digits (best checkpoint path)."""
    results = train_tiny(tmp_path_factory.mktemp("tiny_a"), ["seed=1"])
    return Path(results["checkpoint"])


@pytest.fixture(scope="session")
def tiny_checkpoint_b(tmp_path_factory) -> Path:
    """A second, different checkpoint (another seed and depth), for ensembles."""
    results = train_tiny(tmp_path_factory.mktemp("tiny_b"), ["seed=2", "model=plain20"])
    return Path(results["checkpoint"])


@pytest.fixture(scope="session")
def photo_imagefolder(tmp_path_factory) -> Path:
    """A small ImageFolder of realistic-size photos: crops of scikit-learn's two bundled sample photos
    (427×640), resized to a short side of 375–500 px, saved as quality-90 JPEGs; 2 classes, 6 train and
    2 val images each (landscape and portrait)."""
    from cnnbench.testing.photos import write_photo_folder

    return write_photo_folder(tmp_path_factory.mktemp("photos"), 8, is_val=lambda i: i >= 6, name="{:02d}.jpg")
