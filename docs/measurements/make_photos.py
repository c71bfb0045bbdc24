"""Write the ImageFolder of realistic-size JPEGs that the ImageNet-scale input-pipeline measurements use
(docs/performance.md): crops of scikit-learn's two bundled sample photos (427×640), each resized to a short side
of 375–500 px and saved at JPEG quality 90; one class per photo, every ninth image in val/.

    python docs/measurements/make_photos.py DIR [--per-photo 330]     # 660 files: 588 train, 72 val
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--per-photo", type=int, default=330)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for c, photo in enumerate(load_sample_images().images):
        h, w = photo.shape[:2]
        for i in range(args.per_photo):
            ch, cw = int(rng.integers(300, h + 1)), int(rng.integers(300, w + 1))
            if i % 2:  # portrait crops too
                cw = min(cw, ch * 3 // 4)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = Image.fromarray(np.ascontiguousarray(photo[y:y + ch, x:x + cw]))
            short = int(rng.integers(375, 501))
            scale = short / min(ch, cw)
            crop = crop.resize((max(short, round(cw * scale)), max(short, round(ch * scale))), Image.BILINEAR)
            folder = args.root / ("val" if i % 9 == 8 else "train") / f"photo{c}"
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / f"{i:03d}.jpg", quality=90)


if __name__ == "__main__":
    main()
