"""`cnnbench benchmark benchmark.mode=data` on file-backed (ImageFolder) data: the dataset's own files through
each paper train pipeline, the eval protocols (1, 10 and 144 crops), and the reference rows, per worker count
(docs/performance.md, "ImageNet-scale input pipeline").

Reference rows, on the same files and batches: `opencv_reference` = OpenCV decode of the whole JPEG +
albumentations RandomResizedCrop 224 (area 8–100 %, aspect 3/4–4/3) + horizontal flip, the decode-bound rate a
pipeline is compared with (`vs_reference`: per-core rate over the reference's per-core rate at the same worker
count); `opencv_decode` = the decode alone. A row with N workers drops `benchmark.warmup` + 2·N batches before its
window (each worker's first batches come from a process just forked), so it times the workers' steady state.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# a row with N workers drops this many more batches per worker before its window: the batches each worker is asked
# for when it starts (DataLoader's default prefetch_factor), made while the freshly forked worker warms up
WORKER_STARTUP_BATCHES = 2
PAPER_TRAIN_PIPELINES = ("resnet_imagenet", "random_resized_crop", "inception", "efficientnet", "googlenet", "vgg")
EVAL_PROTOCOLS = (1, 10, 144)


class ReferenceImages(Dataset):
    """OpenCV decode + RandomResizedCrop + flip (or the decode alone) over a list of files."""

    def __init__(self, files: list[tuple[str, int]], size: int, crop: bool = True) -> None:
        import albumentations as A

        self.files, self.crop = files, crop
        self.transform = A.Compose([A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0), ratio=(0.75, 4 / 3)),
                                    A.HorizontalFlip(p=0.5)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import cv2

        from cnnbench.data.image_io import load_rgb

        path, label = self.files[i]
        img = load_rgb(path)
        if not self.crop:
            return torch.from_numpy(cv2.resize(img, (8, 8))).permute(2, 0, 1), label  # decode only (tiny batch)
        self.transform.set_random_state(np.random.Generator(np.random.PCG64(i)), random.Random(i))
        return torch.from_numpy(self.transform(image=img)["image"]).permute(2, 0, 1), label


class ProtocolViews(Dataset):
    """The views of one eval protocol (cnnbench.evaluation's ViewPlan) of each file, decoded by the fast path."""

    def __init__(self, files: list[tuple[str, int]], plan) -> None:
        self.files, self.plan = files, plan

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from cnnbench.data.image_io import load_rgb

        path, label = self.files[i]
        groups = self.plan.build(load_rgb(path))
        return groups, label


def _collate_views(items):
    return [g for g, _ in items], torch.tensor([label for _, label in items])


def loader_rate(make_loader, warmup: int, steps: int, name: str = "a loader") -> tuple[float, int]:
    """(images/s, images) a loader delivers over `steps` batches after `warmup` batches; the loader is restarted
    (a new epoch) when a small dataset runs out, with a warning when that happens inside the timed window (its
    workers start again there)."""
    images, start, seen, epochs, timed_from = 0, None, 0, 0, 0
    while seen <= warmup + steps:
        count = 0
        epochs += 1
        if start is not None and epochs > timed_from:
            import logging

            logging.getLogger("cnnbench").warning(
                "benchmark: %s ran out of batches inside its timed window and restarted (its workers start again "
                "there); use more files or a larger data.batch_size, or lower benchmark.warmup/steps", name)
        for batch in make_loader():  # (images, labels), or (images, photometric parameters, labels)
            x = batch[0]
            count += 1
            if seen == warmup:
                start, timed_from = time.perf_counter(), epochs
            elif seen > warmup:
                images += len(x)
            seen += 1
            if seen > warmup + steps:
                break
        if count == 0:
            break
    if start is None or images == 0:
        from cnnbench.errors import UserError

        raise UserError("the data loader gave no batches to time; lower benchmark.warmup/steps or add images")
    return images / (time.perf_counter() - start), images


def device_ms_per_image(loader, device, repeats: int = 3) -> float | None:
    """data.photometric=device: the batched photometric ops' time per image on `device`, on one train batch (the
    best of `repeats`); None when the loader's batches carry no parameters."""
    from cnnbench.benchmarking import sync
    from cnnbench.data.photometric import apply_photometric

    batch = next(iter(loader))
    if len(batch) != 3:
        return None
    images, params = batch[0].to(device), batch[1]
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        sync(device)
        start = time.perf_counter()
        apply_photometric(images, params)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / len(images)


def _loader(dataset, batch: int, workers: int, collate=None) -> DataLoader:
    """The reference rows' loader: the datamodule's collate unless `collate` is given, so every row pays the same
    per-batch cost."""
    from cnnbench.data.loading import collate_images, init_loader_worker

    return DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate or collate_images,
                      worker_init_fn=init_loader_worker, persistent_workers=False)


@dataclass(frozen=True)
class Window:
    """What every measured row shares: the batch size, batches dropped before the window and timed in it, the
    rounds each row is measured in, and the device the data.photometric=device ops run on."""
    batch: int
    warmup: int
    steps: int
    rounds: int
    device: torch.device


def augmentation_config(name: str) -> dict[str, Any]:
    """The option `conf/augmentation/<name>.yaml` as a dict (its name is checked by the config rules
    `benchmark.augmentations` / `benchmark.file_augmentations`, cnnbench.config_schema)."""
    from omegaconf import OmegaConf

    from cnnbench.config_paths import find_config

    path = find_config("augmentation", name)
    if path is None:
        raise LookupError(f"no augmentation config {name!r}")  # the config rules let no such name through
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def file_rows(cfg, dm, data_cfg: dict[str, Any], augmentations: list[str], workers_list: list[int],
              protocols: list[int], window: Window) -> list[dict[str, Any]]:
    """Every row of the file-backed data benchmark (`dm`: the run's data module, `data_cfg`: its data config
    with absolute root); the main process is held to one OpenCV/torch thread like a loader worker, so that
    `workers=0` is one core too."""
    import cv2

    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows = _FileRows(cfg, dm, data_cfg, window)
    try:
        for _ in range(max(1, window.rounds)):  # every row once per round: slow drifts of the machine hit all alike
            for workers in workers_list:
                rows.round(workers, augmentations, protocols, first_workers=workers == workers_list[0])
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    return summarize_rounds(list(rows.measured.values()))  # `× train` is filled in by the caller


class _FileRows:
    """The rows of `file_rows`, measured round by round into `measured` (one entry per kind, name, workers)."""

    def __init__(self, cfg, dm, data_cfg: dict[str, Any], window: Window) -> None:
        from omegaconf import OmegaConf

        from cnnbench.training.module import model_kwargs

        self.cfg, self.dm, self.data_cfg, self.window = cfg, dm, data_cfg, window
        self.files = list(dm.train_split.files)
        self.kwargs = model_kwargs(OmegaConf.to_container(cfg.model, resolve=True))
        self.measured: dict[tuple[str, str, int], dict[str, Any]] = {}

    def module(self, aug: str, workers: int):
        from cnnbench.data import ImageDataModule

        return ImageDataModule({**self.data_cfg, "num_workers": int(workers), "persistent_workers": False},
                               augmentation_config(aug), self.cfg.model.name, seed=int(self.cfg.seed),
                               model_kwargs=self.kwargs).load()

    def add(self, kind: str, name: str, workers: int, make, views: int = 1) -> None:
        w = self.window
        ips, _ = loader_rate(make, w.warmup + WORKER_STARTUP_BATCHES * workers, w.steps,
                             name=f"{name} ({workers} workers)")
        row = self.measured.setdefault((kind, name, workers), {"source": "files", "kind": kind, "augmentation": name,
                                                                "workers": workers, "views_per_image": views,
                                                                "images_per_s_rounds": []})
        row["images_per_s_rounds"].append(ips)

    def round(self, workers: int, augmentations: list[str], protocols: list[int], first_workers: bool) -> None:
        """One round of every row at `workers` worker processes: the references, the train pipelines, the
        eval protocols."""
        from cnnbench.evaluation.plan import ViewPlan, reference_size

        files, size, batch = self.files, self.dm.image_size, self.window.batch
        self.add("reference", "opencv_reference", workers, lambda: _loader(ReferenceImages(files, size), batch, workers))
        self.add("reference", "opencv_decode", workers,
                 lambda: _loader(ReferenceImages(files, size, crop=False), batch, workers))
        for aug in augmentations:
            adm = self.module(str(aug), workers)
            self.add("train", str(aug), workers, lambda adm=adm: adm.loader(adm.train_split, train=True))
            if adm.photometric == "device" and first_workers:
                row = self.measured[("train", str(aug), workers)]
                ms = device_ms_per_image(adm.loader(adm.train_split, train=True), self.window.device)
                row.setdefault("device_ms_per_image_rounds", []).append(ms)
        for crops in protocols:
            if crops == 1:
                edm = self.module("none", workers)
                self.add("eval", "1 crop", workers, lambda edm=edm: edm.loader(edm.train_split, train=False))
                continue
            plan = ViewPlan(image_size=size, crop_pct=self.dm.crop_pct, native_size=None,
                            reference=reference_size(self.cfg.model.name), crops=int(crops))
            self.add("eval", f"{crops} crops", workers,
                     lambda plan=plan: _loader(ProtocolViews(files, plan), batch, workers, _collate_views),
                     views=plan.views_per_image())


def summarize_rounds(rows: list[dict[str, Any]], train_images_per_s: float | None = None) -> list[dict[str, Any]]:
    """Per row: the median images/s over the rounds; `vs_reference` = the median over rounds of the row's per-core
    rate ÷ the OpenCV reference's per-core rate at the same worker count *in the same round*, with its min–max
    (`vs_reference_range`); `vs_workers0` = images/s ÷ (workers × the same pipeline's images/s at workers=0), the
    scaling of the loader with worker processes (median of rounds); `device_ms_per_image` (data.photometric=device)
    = the median over rounds of the batched photometric ops' time per image on the run's device."""
    import statistics

    ref = {r["workers"]: r["images_per_s_rounds"] for r in rows if r["augmentation"] == "opencv_reference"}
    zero = {(r["kind"], r["augmentation"]): r["images_per_s_rounds"] for r in rows if r["workers"] == 0}
    for r in rows:
        w, per_round = r["workers"], r["images_per_s_rounds"]
        ips = statistics.median(per_round)
        ratios = [v / ref_v for v, ref_v in zip(per_round, ref[w], strict=True)]
        r.update(images_per_s=ips, images_per_s_per_core=ips / max(1, w), rounds=len(per_round),
                 vs_train=ips / train_images_per_s if train_images_per_s else None,
                 vs_reference=statistics.median(ratios), vs_reference_range=[min(ratios), max(ratios)])
        device_ms = [v for v in r.get("device_ms_per_image_rounds", []) if v is not None]
        if device_ms:  # data.photometric=device: what the batch's photometric ops cost on the device
            r["device_ms_per_image"] = statistics.median(device_ms)
        base = zero.get((r["kind"], r["augmentation"]))
        r["vs_workers0"] = (statistics.median([v / (w * b) for v, b in zip(per_round, base, strict=True)])
                            if base and w > 0 else None)
    return rows
