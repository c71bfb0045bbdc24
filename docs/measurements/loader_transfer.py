"""What one DataLoader worker costs per 224² image, apart from the pipeline: a dataset that returns a fixed
uint8 3×224×224 crop after a fixed busy time per item (0, and ≈ the OpenCV reference's cost per image), batch 32,
through torch's DataLoader with 0 and 1 workers (docs/performance.md, "ImageNet-scale input pipeline").

    OMP_NUM_THREADS=1 python docs/measurements/loader_transfer.py OUT.json [--work-ms 0 1.2] [--rounds 3]

Per (work, workers): images/s, the median over the rounds of one pass over 576 items (the first batch is not
timed). `overhead_ms_per_image` = 1/rate(1 worker) − 1/rate(0 workers): what the worker path adds per image
when the worker does the work (the batch is collated into a new shared-memory tensor in the worker, then
handed to the main process).
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


def rate(work_s: float, workers: int) -> float:
    loader = DataLoader(BusyCrops(work_s), batch_size=BATCH, num_workers=workers, worker_init_fn=_one_thread)
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    from cnnbench.hardware import machine_record

    rows = []
    for work_ms in args.work_ms:
        rates = {w: statistics.median(rate(work_ms / 1e3, w) for _ in range(args.rounds)) for w in (0, 1)}
        rows.append({"work_ms": work_ms, "images_per_s_workers0": rates[0], "images_per_s_workers1": rates[1],
                     "workers1_vs_workers0": rates[1] / rates[0],
                     "overhead_ms_per_image": 1e3 * (1 / rates[1] - 1 / rates[0])})
    result = {"items": ITEMS, "batch_size": BATCH, "rounds": args.rounds, "rows": rows, "machine": machine_record(),
              "command": "OMP_NUM_THREADS=1 python docs/measurements/loader_transfer.py OUT.json"}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
