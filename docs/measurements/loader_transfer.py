"""What one DataLoader worker costs per 224² image, apart from the pipeline: a dataset that returns a fixed
uint8 3×224×224 crop (a CHW view of an HWC array, as the fast path's crops are) after a fixed busy time per item
(0, and ≈ the OpenCV reference's cost per image), batch 32, through torch's DataLoader with 0 and 1 workers and
two collate functions: torch's `default_collate` (a transposing copy into a contiguous NCHW batch) and
cnnbench's `collate_images` (a plain copy into an NHWC batch, returned as its NCHW view; docs/performance.md,
"ImageNet-scale input pipeline").

    OMP_NUM_THREADS=1 python docs/measurements/loader_transfer.py OUT.json [--work-ms 0 1.2] [--rounds 3]

Per (work, collate, workers): images/s, the median over the rounds of one pass over 576 items (the first batch
is not timed); every configuration is measured once per round, in turn. `overhead_ms_per_image` =
1/rate(1 worker) − 1/rate(0 workers): what the worker path adds per image when the worker does the work (the
batch is collated into a new shared-memory tensor in the worker, then handed to the main process).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

ITEMS, BATCH = 576, 32


class BusyCrops(Dataset):
    def __init__(self, work_s: float) -> None:
        self.work_s = work_s
        self.image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, i: int):
        start = time.perf_counter()
        while time.perf_counter() - start < self.work_s:
            pass
        return torch.from_numpy(self.image.copy()).permute(2, 0, 1), 0


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def rate(work_s: float, workers: int, collate_name: str) -> float:
    from torch.utils.data import default_collate

    from cnnbench.data.datamodule import collate_images

    collate = {"default": default_collate, "images": collate_images}[collate_name]
    loader = DataLoader(BusyCrops(work_s), batch_size=BATCH, num_workers=workers, worker_init_fn=_one_thread,
                        collate_fn=collate)
    batches = iter(loader)
    next(batches)
    n, start = 0, time.perf_counter()
    for _, labels in batches:
        n += len(labels)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--work-ms", type=float, nargs="+", default=[0.0, 1.2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--collate", nargs="+", default=["default", "images"], choices=["default", "images"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    from cnnbench.hardware import machine_record

    configs = [(work_ms, name) for work_ms in args.work_ms for name in args.collate]
    rates: dict[tuple[float, str, int], list[float]] = {}
    for _ in range(args.rounds):
        for work_ms, name in configs:
            for workers in (0, 1):
                rates.setdefault((work_ms, name, workers), []).append(rate(work_ms / 1e3, workers, name))
    rows = []
    for work_ms, name in configs:
        r0, r1 = (statistics.median(rates[(work_ms, name, w)]) for w in (0, 1))
        rows.append({"work_ms": work_ms, "collate": name, "images_per_s_workers0": r0, "images_per_s_workers1": r1,
                     "workers1_vs_workers0": r1 / r0, "overhead_ms_per_image": 1e3 * (1 / r1 - 1 / r0)})
    result = {"items": ITEMS, "batch_size": BATCH, "rounds": args.rounds, "rows": rows, "machine": machine_record(),
              "command": "OMP_NUM_THREADS=1 python docs/measurements/loader_transfer.py OUT.json"}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
