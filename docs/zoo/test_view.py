"""Test top-1 of a Fashion-MNIST checkpoint under single test views of several scales (docs/zoo.md, "The test view
of scale-jittered recipes"): the image's short side resized to image_size × zoom, then the centre image_size crop
(zoom 1: the whole image, the view fixed-size data had before scale-jittered recipes got their own).

    python docs/zoo/test_view.py CKPT OUT.json [--images 2000] [--zooms 1 1.143 1.29 1.43] [--command "…"]

One thread, the checkpoint's own normalisation, bf16 autocast as the zoo runs evaluate; the first `--images` test
images and the last `--images` training images (the held-out slice is drawn from the whole training set, so
these are mostly training images), to tell a view that suits the network from one it overfits."""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cnnbench.analysis.zoo import trim  # noqa: E402
from cnnbench.checkpoint import module_from_checkpoint  # noqa: E402
from cnnbench.data.sources import load_fashion_mnist  # noqa: E402


def view(size: int, zoom: float) -> A.Compose:
    return A.Compose([A.SmallestMaxSize(max_size=int(round(size * zoom)), interpolation=cv2.INTER_LINEAR),
                      A.CenterCrop(size, size)])


def top1(module, images: np.ndarray, labels: np.ndarray, transform, size: int) -> float:
    correct = 0
    for i in range(0, len(images), 250):
        x = np.stack([transform(image=im)["image"].reshape(size, size, -1) for im in images[i:i + 250]])
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        correct += int((out.float().argmax(1).numpy() == labels[i:i + 250]).sum())
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--zooms", type=float, nargs="+", default=[1.0, 1.143, 1.29, 1.43])
    parser.add_argument("--command", default=None, help="the exact command line, recorded in OUT")
    args = parser.parse_args()
    torch.set_num_threads(1)
    module, record = module_from_checkpoint(args.ckpt)
    size, n = int(record["image_size"]), args.images
    source = load_fashion_mnist(None)
    rows = [{"zoom": z, "short_side": int(round(size * z)),
             "test_top1": top1(module, source.test.images[:n], source.test.labels[:n], view(size, z), size),
             "train_top1": top1(module, source.train.images[-n:], source.train.labels[-n:], view(size, z), size)}
            for z in args.zooms]
    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|avx2|amx[a-z_]*)\b", Path("/proc/cpuinfo").read_text())))
    model_name = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    out = {"command": args.command or "python docs/zoo/test_view.py " + " ".join(sys.argv[1:]),
           "checkpoint": args.ckpt, "model": record["model"]["name"], "image_size": size,
           "recorded_crop_pct": record.get("crop_pct", 1.0), "images": n, "views": rows,
           "machine": {"cpu_model": model_name.group(1) if model_name else platform.processor(), "cpu_flags": flags,
                       "torch": torch.__version__, "threads": 1}}
    prefix = re.compile("|".join(re.escape(p) for p in sorted({str(ROOT), "/tmp"}, key=len, reverse=True)))
    args.out.write_text(json.dumps(trim(out, prefix), indent=1) + "\n")
    for r in rows:
        print(f"zoom {r['zoom']:.3f} (short side {r['short_side']}): test {r['test_top1']:.4f}, "
              f"train {r['train_top1']:.4f}")


if __name__ == "__main__":
    main()
