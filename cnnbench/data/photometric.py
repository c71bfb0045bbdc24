"""Photometric ops on the device, one batch at a time (`data.photometric=device`; also the colour step of
`data.decode=gpu`). For users whose loader cores, not their GPUs, bound the step (docs/performance.md, "ImageNet-scale
input pipeline"): the workers decode, crop and flip as before and only *draw* each sample's photometric
parameters — with the same transforms' draws on the same generators as the CPU pipeline, so a seeded run has the
same parameters on either side — and the batch gets the ops after its transfer.

The ops, in the CPU pipeline's order: the additive brightness of the inception recipe (TF's random_brightness), the
four colour-jitter ops in each sample's drawn order (torchvision's definitions on float values, each clamped to
[0, 255]), AlexNet's PCA lighting offset (Krizhevsky et al. 2012 §4.1); rounded to uint8 once. The CPU ops give the
same pixels within 3 levels (tests/data/test_photometric.py).

Parameter vector per sample (`PARAMS` values): additive brightness on the 0–255 scale, brightness, contrast,
saturation and hue factors, the PCA offset per RGB channel, then the order of the four jitter ops."""
from __future__ import annotations

import random

import albumentations as A
import numpy as np
import torch

from cnnbench.data.transforms import GRAY_WEIGHTS, ColorJitter, PCALighting
from cnnbench.errors import UserError

PARAMS = 12
IDENTITY = (0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0)


def is_photometric(step) -> bool:
    return isinstance(step, (ColorJitter, PCALighting, A.RandomBrightnessContrast))


class DeviceSplit:
    """A crop pipeline's post-crop steps with the photometric ones drawn, not run: `__call__` runs what precedes them
    (the flip) on the crop and returns it with the sample's parameter vector. The draws are albumentations
    Compose's, in its order (its own `p` draw, then per step `should_apply`, `get_params`, the data-dependent ones),
    so the generators end where the CPU pipeline leaves them."""

    def __init__(self, steps: list) -> None:
        first = next((i for i, s in enumerate(steps) if is_photometric(s)), len(steps))
        if not all(is_photometric(s) for s in steps[first:]):
            names = ", ".join(type(s).__name__ for s in steps[first:] if not is_photometric(s))
            raise UserError(f"data.photometric=device moves the photometric ops after the crop's other steps, and this "
                            f"pipeline runs {names} after them; valid choices here: data.photometric=cpu")
        self.steps = steps

    def __call__(self, img: np.ndarray, py: random.Random, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        vec = np.array(IDENTITY)
        py.random()  # Compose's own p draw
        for step in self.steps:
            step.py_random, step.random_generator = py, gen
            if not step.should_apply():
                continue
            data = {"image": img}
            params = step.update_transform_params(step.get_params(), data)
            params.update(step.get_params_dependent_on_data(params, data))
            if isinstance(step, A.RandomBrightnessContrast):
                vec[0] = params["beta"]  # alpha is 1: the configs set no contrast there
            elif isinstance(step, ColorJitter):
                vec[1:5] = params["brightness"], params["contrast"], params["saturation"], params["hue"]
                vec[8:12] = params["order"]
            elif isinstance(step, PCALighting):
                vec[5:8] = step.offset(params["alphas"])
            else:
                img = step.apply(img, **params)
        return img, vec


def apply_photometric(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W (C = 1 or 3) on any device, `params` N×PARAMS → uint8, each sample with its own parameters."""
    # private, no public equivalent: the public adjust_hue takes one hue factor per call, not one per sample
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    params = params.to(images.device, torch.float32)
    x = images.float()
    n, c = x.shape[:2]
    weights = torch.tensor(GRAY_WEIGHTS.tolist() if c == 3 else [1.0], device=x.device).view(1, c, 1, 1)
    if bool((params[:, 0] != 0).any()):
        x = (x + params[:, 0].view(n, 1, 1, 1)).clamp_(0, 255)
    order = params[:, 8:12].long()
    for position in range(4):
        for op in range(4):
            factor = params[:, 1 + op]
            chosen = (order[:, position] == op) & (factor != (0.0 if op == 3 else 1.0))
            if op >= 2 and c == 1:  # saturation and hue leave grey images as they are
                continue
            if not bool(chosen.any()):
                continue
            idx = chosen.nonzero().squeeze(1)
            xs, f = x[idx], factor[idx].view(-1, 1, 1, 1)
            if op == 0:
                y = xs * f
            elif op == 1:
                mean = (xs * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
                y = (xs - mean) * f + mean
            elif op == 2:
                gray = (xs * weights).sum(1, keepdim=True)
                y = (xs - gray) * f + gray
            else:
                hsv = _rgb_to_hsv(xs / 255.0)
                hue = (hsv[:, :1] + f) % 1.0
                y = _hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], 1)) * 255.0
            x[idx] = y.clamp_(0, 255)
    offset = params[:, 5:8]
    if bool((offset != 0).any()):
        x = (x + (offset if c == 3 else offset.mean(1, keepdim=True)).view(n, c, 1, 1)).clamp_(0, 255)
    return x.round_().to(torch.uint8)
