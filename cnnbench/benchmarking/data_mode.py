"""`benchmark.mode=data`: the data loader alone, per source, augmentation pipeline and worker count.

In-memory data (`memory_result`): its own copy ("memory") and a temporary ImageFolder of JPEGs written from it
("jpeg"), through `benchmark.augmentations`. File-backed data (`files_result`): its own files through the paper
train pipelines, the eval protocols and the OpenCV reference rows (cnnbench.benchmarking.loaders).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cnnbench.benchmarking import peak_mem_mb
from cnnbench.benchmarking.loaders import Window, augmentation_config, file_rows
from cnnbench.errors import UserError
from cnnbench.runtime import absolute


def check_file_sources(cfg: DictConfig, dm) -> None:
    """File-backed data has no in-memory copy: `benchmark.sources` must include jpeg (its values themselves are
    checked by the config rules)."""
    sources = [str(x) for x in cfg.benchmark.sources]
    if dm.train_split.images is None and "jpeg" not in sources:
        raise UserError(f"benchmark.sources={sources} measures nothing on file-backed data "
                        f"(data={cfg.data.name} has no in-memory copy); valid choices here: [jpeg]")


def with_train_rate(data: dict[str, Any], train_images_per_s: float) -> None:
    """`× train` of every loader row and of the configured loader: its images/s ÷ the model's train rate."""
    data["train_images_per_s"] = train_images_per_s
    ips = data.get("images_per_s")
    data["ratio_vs_train"] = ips / train_images_per_s if ips else None
    for row in data["loaders"]:
        row["vs_train"] = row["images_per_s"] / train_images_per_s


def write_jpegs(dm, root: Path, n: int) -> None:
    """root/train/<class>/*.jpg (first n training images) and a small root/val, as JPEG quality 90."""
    from PIL import Image

    split = dm.train_split
    n = min(n, len(split))
    for sub, index in (("train", range(n)), ("val", range(min(n, 10 * len(dm.classes))))):
        for i in index:
            image, label = split.images[i], int(split.labels[i])
            folder = root / sub / f"{label:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{i:06d}.jpg",
                                                                                    quality=90)


def window_rate(loader, warmup: int, steps: int) -> float:
    """Images/s a loader delivers over `steps` batches after `warmup` batches (window throughput)."""
    images, start = 0, None
    for i, (x, _) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        elif i > warmup:
            images += len(x)
        if i >= warmup + steps:
            break
    if start is None or images == 0:
        raise UserError(f"the loader has fewer than {warmup + 2} batches; lower benchmark.warmup/steps "
                        "or raise data.limit_train")
    return images / (time.perf_counter() - start)


def _common(ips: float | None, window: Window, loaders: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-mode keys of the data mode: they describe the configured loader."""
    return {"images_per_s": ips, "step_ms": 1e3 * window.batch / ips if ips else None,
            "peak_mem_mb": round(peak_mem_mb(window.device), 1), "mfu": None, "plain_loop": None,
            "ratio_vs_plain_loop": None, "train_images_per_s": None, "ratio_vs_train": None, "loaders": loaders}


def memory_result(cfg: DictConfig, dm, window: Window) -> dict[str, Any]:
    """In-memory data: rows per source × `benchmark.augmentations` × `benchmark.workers`."""
    from cnnbench.data import ImageDataModule
    from cnnbench.training.module import model_kwargs

    b = cfg.benchmark
    kwargs = model_kwargs(OmegaConf.to_container(cfg.model, resolve=True))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnbench-jpeg-") as tmp:
        for source in b.sources:
            data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
            if source == "jpeg":
                write_jpegs(dm, Path(tmp), int(b.jpeg_images))
                data_cfg.update(name="imagefolder", root=tmp, mean_mode="channel", limit_train=None,
                                limit_val=None, limit_test=None, on_bad_image="error",
                                image_size=dm.image_size, val_split=0)
            for aug in b.augmentations:
                adm = ImageDataModule(data_cfg, augmentation_config(str(aug)), cfg.model.name, seed=int(cfg.seed),
                                      model_kwargs=kwargs).load()
                for workers in b.workers:
                    adm.cfg.num_workers = int(workers)
                    adm.cfg.persistent_workers = False
                    ips = window_rate(adm.loader(adm.train_split, train=True), window.warmup, window.steps)
                    rows.append({"source": source, "augmentation": str(aug), "workers": int(workers),
                                 "images_per_s": ips, "vs_train": None})
    configured = [r for r in rows if r["source"] == "memory" and r["augmentation"] == cfg.augmentation.name
                  and r["workers"] == int(cfg.data.num_workers)]
    ips = configured[0]["images_per_s"] if configured else max((r["images_per_s"] for r in rows), default=None)
    return {**_common(ips, window, rows), "batch_size": window.batch, "torch_threads": torch.get_num_threads()}


def files_result(cfg: DictConfig, dm, window: Window) -> dict[str, Any]:
    """File-backed data: the rows of cnnbench.benchmarking.loaders.file_rows."""
    b = cfg.benchmark
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg.update(root=absolute(data_cfg["root"]), image_size=dm.image_size, val_split=0)
    augmentations = [str(a) for a in b.get("file_augmentations", [])]
    protocols = [int(c) for c in b.get("protocols", [])]
    rows = file_rows(cfg, dm, data_cfg, augmentations, [int(w) for w in b.workers], protocols, window)
    configured = [r for r in rows if r["kind"] == "train" and r["augmentation"] == cfg.augmentation.name
                  and r["workers"] == int(cfg.data.num_workers)]
    ips = configured[0]["images_per_s"] if configured else None
    return {**_common(ips, window, rows), "decode": dm.decode,
            "reduced_decode": bool(cfg.data.get("reduced_decode", True)), "photometric": dm.photometric,
            "files": len(dm.train_split), "batch_size": window.batch, "torch_threads": 1,
            "image_size": dm.image_size}


__all__ = ["check_file_sources", "files_result", "memory_result", "window_rate", "with_train_rate", "write_jpegs"]
