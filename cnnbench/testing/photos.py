"""An ImageFolder of realistic-size JPEGs from scikit-learn's two bundled sample photos (427×640), for the test
suite's file-backed fixtures and the ImageNet-scale input-pipeline measurements (docs/performance.md)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_photo_folder(root: Path, per_photo: int, is_val: Callable[[int], bool], name: str = "{:03d}.jpg") -> Path:
    """`per_photo` random crops of each sample photo (one class per photo; every other crop portrait), each
    resized to a short side of 375–500 px and saved as a quality-90 JPEG under `root`/train or `root`/val
    (`is_val(i)`), named `name.format(i)`. Seeded: the same arguments write the same bytes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    for c, photo in enumerate(load_sample_images().images):
        h, w = photo.shape[:2]
        for i in range(per_photo):
            ch, cw = int(rng.integers(300, h + 1)), int(rng.integers(300, w + 1))
            if i % 2:  # portrait crops too
                cw = min(cw, ch * 3 // 4)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = Image.fromarray(np.ascontiguousarray(photo[y:y + ch, x:x + cw]))
            short = int(rng.integers(375, 501))
            scale = short / min(ch, cw)
            crop = crop.resize((max(short, round(cw * scale)), max(short, round(ch * scale))), Image.BILINEAR)
            folder = root / ("val" if is_val(i) else "train") / f"photo{c}"
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / name.format(i), quality=90)
    return root
