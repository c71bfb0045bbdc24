"""`data.decode=gpu`: the loader workers read the JPEG bytes and draw each sample's augmentation parameters
(seeded per sample, with the same geometry as the CPU fast path, cnnbench.data.fastpath); the batch is decoded
on the GPU in one call (`torchvision.io.decode_jpeg(list, device="cuda")`, nvJPEG), cropped and flipped there with
torchvision.transforms.v2's functional ops, and colour-jittered as one batch (cnnbench.data.photometric).

Its speed is unmeasured (docs/performance.md): the project's machines had no GPU when it was written. The logic
runs on any device (`device="cpu"` in the tests)."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnbench.errors import UserError

# parameter vector per sample: x0, y0, x1, y1, interpolation code, flip, brightness delta, brightness, contrast,
# saturation, hue, pca offset r, g, b, then the order of the four jitter ops (4 values)
N_PARAMS = 18
_INTERP = {0: "nearest", 1: "bilinear", 2: "bicubic", 3: "bilinear"}  # OpenCV codes → torchvision (area → bilinear + antialias)


def require_gpu() -> None:
    if not torch.cuda.is_available():
        raise UserError("data.decode=gpu needs a CUDA GPU and none is visible; valid choices here: opencv, pil")


def unsupported(aug) -> str | None:
    """Why `aug` cannot run on the GPU path (None when it can)."""
    if aug.name == "efficientnet" and (aug.get("auto_augment") or "none") == "v0":
        return ("data.decode=gpu runs augmentation.auto_augment=imagenet, randaugment or none on the GPU, not v0 "
                "(the TF-TPU policy is CPU-only); valid choices: imagenet, randaugment, none")
    if aug.name in ("pad_crop_flip", "cifar"):
        return f"data.decode=gpu has no GPU form of augmentation={aug.name}; valid choices: data.decode=opencv, pil"
    return None


class GpuDecodeImages(Dataset):
    """Item: (JPEG bytes as a uint8 tensor, float64 parameter vector, label)."""

    def __init__(self, split, aug, image_size: int, crop_pct: float, seed: int | None, train: bool) -> None:
        from cnnbench.data.fastpath import fast_pipeline

        self.split, self.aug, self.seed, self.train = split, aug, seed, train
        self.geometry = fast_pipeline(aug, image_size, None, crop_pct, train, reduced=False)
        self.n = len(split)

    def __len__(self) -> int:
        return self.n

    def params(self, shape: tuple[int, int], py: random.Random, gen: np.random.Generator) -> np.ndarray:
        from cnnbench.data.photometric import IDENTITY
        from cnnbench.data.transforms import IMAGENET_RGB_EIGVAL, IMAGENET_RGB_EIGVEC

        (x0, y0, x1, y1), _, interpolation = self.geometry.box(shape, py, gen)
        p = np.zeros(N_PARAMS)
        p[:5] = x0, y0, x1, y1, interpolation
        p[6:18] = IDENTITY  # the photometric part: cnnbench.data.photometric's vector
        aug = self.aug if self.train else None
        if aug is None:
            return p
        p[5] = float(aug.get("hflip", False) and py.random() < 0.5)
        if aug.get("brightness_delta"):
            p[6] = py.uniform(-float(aug.brightness_delta), float(aug.brightness_delta))
        jitter = aug.get("color_jitter") or {}
        for i, key in enumerate(("brightness", "contrast", "saturation")):
            x = float(jitter.get(key, 0) or 0)
            p[7 + i] = py.uniform(max(0.0, 1 - x), 1 + x) if x else 1.0
        hue = float(jitter.get("hue", 0) or 0)
        p[10] = py.uniform(-hue, hue) if hue else 0.0
        order = list(range(4))
        py.shuffle(order)
        p[14:18] = order
        if aug.get("pca_alpha"):
            alphas = np.array([py.gauss(0.0, float(aug.pca_alpha)) for _ in range(3)])
            p[11:14] = 255.0 * (np.asarray(IMAGENET_RGB_EIGVEC) @ (alphas * np.asarray(IMAGENET_RGB_EIGVAL)))
        return p

    def __getitem__(self, k: int):
        from cnnbench.data.image_io import header_size, read_bytes
        from cnnbench.data.loading import sample_seed

        index, epoch = k % self.n, k // self.n
        path, label = self.split.files[index]
        buf = read_bytes(path)
        s = sample_seed(self.seed, epoch, index) if self.seed is not None else 0
        py, gen = random.Random(s), np.random.Generator(np.random.PCG64(s))
        return torch.from_numpy(buf), torch.from_numpy(self.params(header_size(buf), py, gen)), int(label)


def collate(items):
    data, params, labels = zip(*items, strict=True)
    return list(data), torch.stack(params), torch.tensor(labels, dtype=torch.long)


class GpuAugment:
    """Decode a collated batch on `device` and apply each sample's parameters: crop and flip per image, the
    photometric ops on the batch, then the policy per image; returns (uint8 NCHW, labels)."""

    def __init__(self, aug, image_size: int, train: bool) -> None:
        self.aug, self.size, self.train = aug, int(image_size), train
        self.policy = None
        name = (aug.get("auto_augment") or "none") if train and aug.name == "efficientnet" else "none"
        if name != "none":
            from torchvision.transforms import v2

            self.policy = (v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET) if name == "imagenet" else v2.RandAugment())

    def one(self, img: torch.Tensor, p: list[float]) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        x0, y0, x1, y1 = p[:4]
        mode = InterpolationMode(_INTERP[int(p[4])])
        top, left = int(round(y0)), int(round(x0))
        height, width = max(1, int(round(y1 - y0))), max(1, int(round(x1 - x0)))
        out = F.resized_crop(img, top, left, height, width, [self.size, self.size], interpolation=mode,
                             antialias=True)
        if p[5]:
            out = F.horizontal_flip(out)
        return out

    def __call__(self, batch, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.io import ImageReadMode, decode_jpeg

        from cnnbench.data.photometric import apply_photometric

        data, params, labels = batch
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        out = torch.stack([self.one(img, p) for img, p in zip(images, params.tolist(), strict=True)])
        if self.train:  # the photometric ops, batched (cnnbench.data.photometric: its vector is params[6:18])
            out = apply_photometric(out, params[:, 6:18])
        if self.policy is not None:
            out = torch.stack([self.policy(img) for img in out])
        return out, labels.to(device)
