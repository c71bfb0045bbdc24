"""Helpers shared by the tests: composed configs, the fast CPU overrides, tiny datasets and runs, meta-device
models. Import them as `from tests.helpers import …` (pytest puts the repository root on sys.path:
`pythonpath` in pyproject.toml); fixtures stay in tests/conftest.py."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository
CONF = ROOT / "conf"
FASHION_DIR = Path(os.environ.get("CNNBENCH_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

# Small, fast, CPU-only defaults for in-process runs.
FAST = ["hardware=cpu", "trainer.precision=32-true", "logger=none", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.persistent_workers=false"]


def compose_cfg(name: str = "train", overrides: list[str] | tuple = ()):
    from hydra import compose, initialize_config_dir

    from cnnbench.runtime import register_resolvers

    register_resolvers()

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        return compose(config_name=name, overrides=list(overrides))


def write_readme_configs(project: Path, data: str | None = None) -> tuple[Path, Path]:
    """README's "Your own configs" example in `project`: its `conf/` files (the heredocs, the dataset swapped for
    `data` when given) and a `home/team-configs` holding `experiment/their_recipe.yaml`. Returns both dirs."""
    import re

    readme = (ROOT / "README.md").read_text()
    for path, text in re.findall(r"cat > (conf/\S+\.yaml) <<'YAML'\n(.*?)\nYAML\n", readme, re.S):
        if data:
            text = text.replace("- imagefolder", f"- {data}").replace("name: imagefolder", f"name: {data}")
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    assert (project / "conf" / "experiment" / "my_recipe.yaml").is_file(), "README's example changed"
    team = project / "home" / "team-configs"
    (team / "experiment").mkdir(parents=True, exist_ok=True)
    (team / "experiment" / "their_recipe.yaml").write_text("# @package _global_\n")
    return project / "conf", team


def fashion_available() -> bool:
    return (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists() or (FASHION_DIR / "t10k-labels-idx1-ubyte").exists()


def fashion_or_digits_images(n_per_class: int):
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


def write_cifar(root: Path, num_classes: int, n_train: int = 60, n_test: int = 20) -> None:
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


def train_tiny(run_dir: Path, extra: list[str] = ()) -> dict:
    from cnnbench.commands.train import train

    cfg = compose_cfg("train", FAST + ["data=digits", "augmentation=none", "trainer.max_epochs=2", "data.val_split=0.15", *extra])
    return train(cfg, run_dir=run_dir)


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


def write_metrics_csv(path: Path, *, epochs: int = 3, steps_per_epoch: int = 20, lr: float = 0.1,
                      lr_groups: tuple[str, ...] = (), new_columns: bool = True, val: bool = True,
                      noise_seed: int = 0) -> None:
    """A metrics.csv in the CSV logger's layout (one row per logging call, the other cells empty): per step
    `train/loss` and, with `new_columns`, the learning rate (`lr`, or `lr/<group>` for each of `lr_groups`), its
    `-momentum` column and `speed/step_images_per_s`; per epoch `train/loss_epoch`, `val/acc1` and `val/loss`
    (`val`) and, with `new_columns`, the epoch's speed, time and memory. The learning rate drops ÷10 after each
    third of the run; the loss falls with noise, the validation accuracy rises."""
    import csv

    rng = np.random.default_rng(noise_seed)
    lr_keys = [f"lr/{g}" for g in lr_groups] or ["lr"]
    per_step = ["train/loss"] + (lr_keys + [f"{k}-momentum" for k in lr_keys] + ["speed/step_images_per_s"]
                                 if new_columns else [])
    per_epoch = ["train/loss_epoch"] + (["val/acc1", "val/loss"] if val else []) + (
        ["speed/train_images_per_s", "speed/loader_images_per_s", "speed/data_wait_share", "time/epoch_s",
         "memory/peak_mb"] if new_columns else [])
    total = epochs * steps_per_epoch
    rows = []
    for epoch in range(epochs):
        losses = []
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            loss = 2.3 * (1 - 0.6 * step / total) + 0.1 * rng.standard_normal()
            losses.append(loss)
            lr_now = lr * 0.1 ** (3 * step // total)
            values = {"train/loss": loss, "speed/step_images_per_s": 900 + 50 * rng.random(),
                      **{k: lr_now * (0.5 if k.endswith("no_decay") else 1) for k in lr_keys},
                      **{f"{k}-momentum": 0.9 for k in lr_keys}}
            rows.append({"epoch": epoch, "step": step, **{k: values[k] for k in per_step}})
        values = {"train/loss_epoch": float(np.mean(losses)), "val/acc1": 0.3 + 0.6 * (epoch + 1) / epochs,
                  "val/loss": 2.0 - epoch / epochs, "speed/train_images_per_s": 850.0,
                  "speed/loader_images_per_s": 4000.0, "speed/data_wait_share": 0.05, "time/epoch_s": 12.5,
                  "memory/peak_mb": 512.0}
        rows.append({"epoch": epoch, "step": (epoch + 1) * steps_per_epoch - 1, **{k: values[k] for k in per_epoch}})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", *sorted(set(per_step) | set(per_epoch))])
        writer.writeheader()
        writer.writerows(rows)


def write_run(run: Path, *, overrides: list[str] | None = None, config: dict | None = None,
              results: dict | None = None, **metrics) -> Path:
    """A training run dir as `cnnbench train` leaves it: `.hydra/overrides.yaml` and `.hydra/config.yaml` when
    given (Hydra's records of the job), `results.json` when given, and a metrics.csv (`write_metrics_csv`'s
    keywords; `metrics_csv=False` for none)."""
    import json

    from omegaconf import OmegaConf

    run.mkdir(parents=True, exist_ok=True)
    if overrides is not None:
        (run / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    if config is not None:
        (run / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    if results is not None:
        (run / "results.json").write_text(json.dumps(results))
    if metrics.pop("metrics_csv", True):
        write_metrics_csv(run / "metrics.csv", **metrics)
    return run
