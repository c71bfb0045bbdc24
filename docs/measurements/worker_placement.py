"""How much of one loader worker's shortfall against the 0-worker rate is where the scheduler puts it: the train
loader of a paper pipeline with 0 workers, with 1 worker as the DataLoader starts it, and with 1 worker pinned to
its own core (the main process on another), in turn, several rounds (docs/performance.md, "ImageNet-scale input
pipeline").

    OMP_NUM_THREADS=1 python docs/measurements/worker_placement.py DIR OUT.json [--rounds 6]

DIR is an ImageFolder (docs/measurements/make_photos.py); 224², batch 32, each window 10 batches after 8 untimed
ones, the datamodule's own loader (`persistent_workers=False`, one OpenCV and one torch thread per process).
Needs two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import cv2
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
WARMUP, WINDOW = 8, 10


def rate(root: Path, aug: str, workers: int, pinned: bool) -> float:
    from cnnbench.benchmarking.loaders import loader_rate
    from cnnbench.data import ImageDataModule
    from cnnbench.data.loading import init_loader_worker as _init_loader_worker

    data = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "data" / "imagefolder.yaml"))
    data.update(root=str(root), num_workers=workers, persistent_workers=False, batch_size=32, val_split=0,
                image_size=224)
    augmentation = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "augmentation" / f"{aug}.yaml"))
    dm = ImageDataModule(data, augmentation, "resnet50", seed=0).load()
    loader = dm.loader(dm.train_split, train=True)
    everywhere = os.sched_getaffinity(0)
    if pinned:
        def init(worker_id: int) -> None:
            os.sched_setaffinity(0, {1})
            _init_loader_worker(worker_id)

        loader.worker_init_fn = init
        os.sched_setaffinity(0, {0})
    try:  # the clock starts when batch WARMUP arrives (index WARMUP − 1), then WINDOW batches are timed
        return loader_rate(lambda: loader, WARMUP - 1, WINDOW, name=f"{aug} ({workers} workers)")[0]
    finally:
        os.sched_setaffinity(0, everywhere)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--augmentations", nargs="+", default=["random_resized_crop", "googlenet"])
    args = parser.parse_args()
    from cnnbench.hardware import machine_record

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows = []
    for aug in args.augmentations:
        per_round = {"workers0": [], "workers1": [], "workers1_pinned": []}
        for _ in range(args.rounds):
            per_round["workers0"].append(rate(args.root, aug, 0, False))
            per_round["workers1"].append(rate(args.root, aug, 1, False))
            per_round["workers1_pinned"].append(rate(args.root, aug, 1, True))
        row = {"augmentation": aug, "images_per_s_rounds": per_round}
        for key in ("workers1", "workers1_pinned"):
            ratios = [a / b for a, b in zip(per_round[key], per_round["workers0"], strict=True)]
            row[f"{key}_vs_workers0"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        rows.append(row)
        print(aug, {k: v for k, v in row.items() if k.endswith("vs_workers0")}, flush=True)
    result = {"batch_size": 32, "image_size": 224, "warmup_batches": WARMUP, "window_batches": WINDOW,
              "rounds": args.rounds, "rows": rows, "machine": machine_record(),
              "command": f"OMP_NUM_THREADS=1 python docs/measurements/worker_placement.py <photos> OUT.json "
                         f"--rounds {args.rounds}"}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
