"""Where a paper train pipeline's time goes, per image, on one core: the pieces of the fast CPU path timed alone
on the same files (docs/performance.md, "ImageNet-scale input pipeline"). Complements `cnnbench benchmark
benchmark.mode=data`, which times whole loaders; these are in-process calls without a DataLoader.

    OMP_NUM_THREADS=1 python docs/measurements/profile_pipeline_steps.py DIR OUT.json [--images 300] [--rounds 3]

DIR is an ImageFolder (docs/measurements/make_photos.py). Per pipeline: `full` (FastPipeline.apply on the file's
bytes), `geometry_decode` (the same without the post-crop steps), and each post-crop step alone in its own
albumentations Compose on 224² crops; besides, the reference row's pieces (`load_rgb`, OpenCV decode to RGB;
the reference = that + RandomResizedCrop + flip) and the header parse. Milliseconds per image: the median over
the rounds of each round's mean, every piece timed once per round in turn; `vs_reference` is the median of the
per-round ratios.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ("random_resized_crop", "resnet_imagenet", "vgg", "efficientnet", "googlenet", "inception")


def per_image_ms(fn, n: int, rounds: int) -> float:
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        means.append((time.perf_counter() - start) / n * 1e3)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    from cnnbench.data.fastpath import decode_rgb, fast_pipeline, header_size, load_rgb, read_bytes
    from cnnbench.data.transforms import post_crop_steps
    from cnnbench.hardware import machine_record

    files = sorted(str(p) for p in (args.root / "train").rglob("*.jpg"))[: args.images]
    bufs = [read_bytes(f) for f in files]
    n, rounds = len(bufs), args.rounds
    crops = [cv2.resize(decode_rgb(b), (224, 224)) for b in bufs[:16]]
    reference = A.Compose([A.RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), ratio=(0.75, 4 / 3)),
                           A.HorizontalFlip(p=0.5)])
    reference.set_random_state(np.random.default_rng(0), random.Random(0))
    pieces = {  # (pipeline or None, piece) → a call on image i
        (None, "reference_ms"): lambda i: reference(image=load_rgb(files[i]))["image"],
        (None, "load_rgb_ms"): lambda i: load_rgb(files[i]),
        (None, "header_ms"): lambda i: header_size(bufs[i]),
    }
    for name in PIPELINES:
        aug = OmegaConf.load(ROOT / "conf" / "augmentation" / f"{name}.yaml")
        fast = fast_pipeline(aug, 224, None, 0.875, train=True)
        bare = fast_pipeline(aug, 224, None, 0.875, train=True)
        bare.steps = []
        py, gen = random.Random(0), np.random.default_rng(0)
        pieces[(name, "full_ms")] = lambda i, f=fast, py=py, gen=gen: f.apply(bufs[i], py, gen)
        pieces[(name, "geometry_decode_ms")] = lambda i, f=bare, py=py, gen=gen: f.apply(bufs[i], py, gen)
        for step in post_crop_steps(aug):
            alone = A.Compose([step])
            alone.set_random_state(gen, py)
            pieces[(name, type(step).__name__)] = lambda i, c=alone: c(image=crops[i % len(crops)])["image"]
    times: dict[tuple, list[float]] = {key: [] for key in pieces}
    for _ in range(rounds):  # every piece once per round, in turn: slow drifts of the machine hit all alike
        for key, fn in pieces.items():
            times[key].append(per_image_ms(fn, n, 1))
    result = {"images": n, "rounds": rounds, "pipelines": {}}
    result.update({piece: statistics.median(times[(None, piece)]) for piece in ("reference_ms", "load_rgb_ms",
                                                                                 "header_ms")})
    for name in PIPELINES:
        steps = {piece: statistics.median(t) for (pipe, piece), t in times.items()
                 if pipe == name and piece not in ("full_ms", "geometry_decode_ms")}
        result["pipelines"][name] = {
            "full_ms": statistics.median(times[(name, "full_ms")]),
            "geometry_decode_ms": statistics.median(times[(name, "geometry_decode_ms")]),
            "steps_ms": steps,
            "vs_reference": statistics.median(r / f for r, f in zip(times[(None, "reference_ms")],
                                                                     times[(name, "full_ms")], strict=True)),
        }
    result["machine"] = machine_record()
    result["command"] = ("OMP_NUM_THREADS=1 python docs/measurements/profile_pipeline_steps.py <photos> OUT.json "
                         f"--images {args.images} --rounds {rounds}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    json.dump({k: v for k, v in result.items() if k != "machine"}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
