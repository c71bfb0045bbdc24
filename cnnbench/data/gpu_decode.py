"""`data.decode=gpu`: the loader workers read the JPEG bytes and draw each sample's AugParams (seeded per sample,
with the same `draw` as the CPU fast path, cnnbench.data.aug_params); the batch is decoded
on the GPU in one call (`torchvision.io.decode_jpeg(list, device="cuda")`, nvJPEG), cropped and flipped there with
torchvision.transforms.v2's functional ops, and colour-jittered as one batch (cnnbench.data.photometric).

Its speed is unmeasured (docs/performance.md): the project's machines had no GPU when it was written. The logic
runs on any device (`device="cpu"` in the tests)."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnbench.data.aug_params import AugDraw, AugParams
from cnnbench.errors import UserError

# OpenCV interpolations (AugParams.interpolation) → torchvision's; area → bilinear with antialias (`one`)
TORCHVISION_INTERPOLATION = {"linear": "bilinear", "area": "bilinear", "nearest": "nearest", "cubic": "bicubic"}


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
    """Item: (JPEG bytes as a uint8 tensor, the sample's AugParams as a float64 vector, label)."""

    def __init__(self, split, aug, image_size: int, crop_pct: float, seed: int | None, train: bool) -> None:
        self.split, self.aug, self.seed, self.train = split, aug, seed, train
        self.drawer = AugDraw(aug if train else None, image_size, crop_pct)
        self.n = len(split)

    def __len__(self) -> int:
        return self.n

    def params(self, shape: tuple[int, int], py: random.Random, gen: np.random.Generator) -> AugParams:
        return self.drawer(shape, py, gen)

    def __getitem__(self, k: int):
        from cnnbench.data.image_io import header_size, read_bytes
        from cnnbench.data.loading import sample_seed

        index, epoch = k % self.n, k // self.n
        path, label = self.split.files[index]
        buf = read_bytes(path)
        s = sample_seed(self.seed, epoch, index) if self.seed is not None else 0
        py, gen = random.Random(s), np.random.Generator(np.random.PCG64(s))
        return torch.from_numpy(buf), torch.from_numpy(self.params(header_size(buf), py, gen).to_vector()), int(label)


def sample_window(img: torch.Tensor, window, out_size: tuple[int, int]) -> torch.Tensor:
    """uint8 C×H×W → C×oh×ow: output pixel (x, y) sampled bilinearly at source (x + 0.5)·f − 0.5 from the window's
    corner (OpenCV's warpAffine convention, edges replicated), as the fast path resamples scale-jitter windows."""
    x0, y0, x1, y1 = window
    (oh, ow), (h, w) = out_size, img.shape[-2:]
    xs = (torch.arange(ow, device=img.device, dtype=torch.float32) + 0.5) * ((x1 - x0) / ow) + x0  # source, + 0.5
    ys = (torch.arange(oh, device=img.device, dtype=torch.float32) + 0.5) * ((y1 - y0) / oh) + y0
    grid = torch.stack(torch.meshgrid(2 * xs / w - 1, 2 * ys / h - 1, indexing="xy"), -1)  # align_corners=False
    out = torch.nn.functional.grid_sample(img[None].float(), grid[None], mode="bilinear", padding_mode="border",
                                          align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


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

    def one(self, img: torch.Tensor, p: AugParams) -> torch.Tensor:
        """The geometry of `p` on one decoded uint8 C×H×W image, resampled as the CPU fast path does
        (cnnbench.data.fastpath.resample): an integer box cut and resized with the same filter (antialiased only
        for "area", as OpenCV's INTER_AREA averages and its other filters do not), or a fractional window sampled
        bilinearly at OpenCV's pixel-centre source coordinates; then the flip."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        x0, y0, x1, y1 = p.window
        if p.box_cut:
            mode = InterpolationMode(TORCHVISION_INTERPOLATION[p.interpolation])
            top, left, height, width = int(y0), int(x0), int(y1) - int(y0), int(x1) - int(x0)
            out = F.resized_crop(img, top, left, height, width, list(p.out_size), interpolation=mode,
                                 antialias=p.interpolation == "area")
        else:
            out = sample_window(img, p.window, p.out_size)
        return F.horizontal_flip(out) if p.flip else out

    def __call__(self, batch, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.io import ImageReadMode, decode_jpeg

        from cnnbench.data.photometric import apply_photometric

        data, params, labels = batch
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        records = [AugParams.from_vector(row) for row in params.tolist()]
        out = torch.stack([self.one(img, p) for img, p in zip(images, records, strict=True)])
        if any(p.photometric for p in records):  # the photometric ops, batched (cnnbench.data.photometric)
            out = apply_photometric(out, params)
        if self.policy is not None:
            out = torch.stack([self.policy(img) for img in out])
        return out, labels.to(device)
