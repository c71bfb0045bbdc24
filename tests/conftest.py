"""Shared fixtures: composed configs, tiny real datasets (digits, Fashion-MNIST subsets, a JPEG
ImageFolder, a fake CIFAR archive in the real format) and tiny trained checkpoints."""
from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

import torch  # noqa: E402

# One intra-op thread: on 2 cores shared with loader workers, DDP ranks or anything else, two OpenMP threads
# spin-wait and run tests up to 20x slower (measured: a 2-epoch digits run took 84 s with 2 threads under load,
# 3.8 s with 1).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
FASHION_DIR = Path(os.environ.get("CNNBENCH_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

# Small, fast, CPU-only defaults for in-process runs.
FAST = ["hardware=cpu", "logger=none", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.persistent_workers=false"]


def compose_cfg(name: str = "train", overrides: list[str] | tuple = ()):
    from hydra import compose, initialize_config_dir

    import cnnbench.runtime  # noqa: F401  (registers the run-dir resolver)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        return compose(config_name=name, overrides=list(overrides))


def fashion_available() -> bool:
    return (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists() or (FASHION_DIR / "t10k-labels-idx1-ubyte").exists()


@pytest.fixture(scope="session")
def fashion_mnist():
    """The Fashion-MNIST directory; a missing dataset fails under CI=true and skips elsewhere."""
    if not fashion_available():
        message = f"Fashion-MNIST not found at {FASHION_DIR} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return FASHION_DIR


def _fashion_or_digits_images(n_per_class: int):
    """Real images for fixtures: Fashion-MNIST when installed, else scikit-learn digits (upscaled)."""
    if fashion_available():
        from cnnbench.data.sources import load_fashion_mnist

        src = load_fashion_mnist(str(FASHION_DIR))
        images, labels = src.test.images[..., 0], src.test.labels
        classes = src.classes
    else:
        from cnnbench.data.sources import load_digits_source

        src = load_digits_source()
        images = np.kron(src.train.images[..., 0], np.ones((4, 4), dtype=np.uint8))
        labels, classes = src.train.labels, src.classes
    picks = np.concatenate([np.flatnonzero(labels == c)[:n_per_class] for c in range(len(classes))])
    return images[picks], labels[picks], classes


@pytest.fixture(scope="session")
def jpeg_imagefolder(tmp_path_factory) -> Path:
    """root/train/<class>/*.jpg and root/val/<class>/*.jpg, written from real images (RGB JPEGs)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    images, labels, classes = _fashion_or_digits_images(12)
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


def _write_cifar(root: Path, num_classes: int, n_train: int = 60, n_test: int = 20) -> None:
    rng = np.random.default_rng(0)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        per = n_train // 5
        for b in range(1, 6):
            data = {"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8),
                    "labels": rng.integers(0, 10, per).tolist(), "batch_label": f"training batch {b} of 5"}
            (folder / f"data_batch_{b}").write_bytes(pickle.dumps(data))
        test = {"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n_test).tolist()}
        (folder / "test_batch").write_bytes(pickle.dumps(test))
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, n in (("train", n_train), ("test", n_test)):
            data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                    "fine_labels": rng.integers(0, 100, n).tolist(), "coarse_labels": rng.integers(0, 20, n).tolist()}
            (folder / name).write_bytes(pickle.dumps(data))
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)]}))


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory) -> dict[str, Path]:
    """Small CIFAR-10/100 python archives in the official format: extracted dirs and .tar.gz files."""
    base = tmp_path_factory.mktemp("cifar")
    out = {}
    for n in (10, 100):
        extracted = base / f"extracted{n}"
        _write_cifar(extracted, n)
        archived = base / f"archived{n}"
        archived.mkdir()
        folder = "cifar-10-batches-py" if n == 10 else "cifar-100-python"
        with tarfile.open(archived / f"{'cifar-10' if n == 10 else 'cifar-100'}-python.tar.gz", "w:gz") as tar:
            tar.add(extracted / folder, arcname=folder)
        out[f"cifar{n}"] = extracted
        out[f"cifar{n}_tar"] = archived
    return out


def train_tiny(run_dir: Path, extra: list[str] = ()) -> dict:
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", FAST + ["data=digits", "augmentation=none", "trainer.max_epochs=2", "data.val_split=0.15", *extra])
    return train(cfg, run_dir=run_dir)


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


def meta(name: str, **kw):
    """A registered model built on the meta device (no memory, no init cost)."""
    from cnnbench.models import create_model

    with torch.device("meta"):
        return create_model(name, **kw)


def stage_shapes(model, size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every child of `model.features` for one meta-device image."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
             for n, m in model.features.named_children()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return shapes
