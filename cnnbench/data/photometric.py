"""Photometric ops on the device, one batch at a time (`data.photometric=device`; also the colour step of
`data.decode=gpu`). For users whose loader cores, not their GPUs, bound the step (docs/performance.md, "ImageNet-scale
input pipeline"): the workers decode, crop and flip as before; each sample's parameters come from the same `draw`
as the CPU pipeline's (cnnbench.data.aug_params), so a seeded run has the same parameters on either side, and
travel with the batch as AugParams vectors; the batch gets the ops after its transfer.

The ops, in the CPU pipeline's order: the additive brightness of the inception recipe (TF's random_brightness), the
four colour-jitter ops in each sample's drawn order (torchvision's definitions on float values, each clamped to
[0, 255]), AlexNet's PCA lighting offset (Krizhevsky et al. 2012 §4.1); rounded to uint8 once. The CPU ops give the
same pixels within 3 levels (tests/data/test_photometric.py)."""
from __future__ import annotations

import numpy as np
import torch

from cnnbench.data.aug_params import JITTER_OPS, PHOTOMETRIC_STEPS, AugParams, column
from cnnbench.data.transforms import GRAY_WEIGHTS
from cnnbench.errors import UserError


def is_photometric(step) -> bool:
    return isinstance(step, PHOTOMETRIC_STEPS)


class DeviceSplit:
    """The photometric steps of a crop pipeline moved to the device: the constructor checks that they are the last
    post-crop steps (the device runs them after everything the worker does); a call packs the worker's crop with
    its sample's parameters, (crop, AugParams vector), for the batch."""

    def __init__(self, steps: list) -> None:
        first = next((i for i, s in enumerate(steps) if is_photometric(s)), len(steps))
        if not all(is_photometric(s) for s in steps[first:]):
            names = ", ".join(type(s).__name__ for s in steps[first:] if not is_photometric(s))
            raise UserError(f"data.photometric=device moves the photometric ops after the crop's other steps, and this "
                            f"pipeline runs {names} after them; valid choices here: data.photometric=cpu")
        self.steps = steps

    def __call__(self, crop: np.ndarray, params: AugParams) -> tuple[np.ndarray, np.ndarray]:
        return crop, params.to_vector()


def apply_photometric(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W (C = 1 or 3) on any device, `params` N × AugParams vectors → uint8, each sample with its own
    photometric parameters (the geometry in the vectors is already applied)."""
    # private, no public equivalent: the public adjust_hue takes one hue factor per call, not one per sample
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    params = params.to(images.device, torch.float32)
    x = images.float()
    n, c = x.shape[:2]
    weights = torch.tensor(GRAY_WEIGHTS.tolist() if c == 3 else [1.0], device=x.device).view(1, c, 1, 1)
    delta = column(params, "brightness_delta")
    if bool((delta != 0).any()):
        x = (x + delta.view(n, 1, 1, 1)).clamp_(0, 255)
    order = column(params, "jitter_order").long()
    for position in range(4):
        for op, name in enumerate(JITTER_OPS):
            factor = column(params, name)
            chosen = (order[:, position] == op) & (factor != (0.0 if name == "hue" else 1.0))
            if name in ("saturation", "hue") and c == 1:  # they leave grey images as they are
                continue
            if not bool(chosen.any()):
                continue
            idx = chosen.nonzero().squeeze(1)
            xs, f = x[idx], factor[idx].view(-1, 1, 1, 1)
            if name == "brightness":
                y = xs * f
            elif name == "contrast":
                mean = (xs * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
                y = (xs - mean) * f + mean
            elif name == "saturation":
                gray = (xs * weights).sum(1, keepdim=True)
                y = (xs - gray) * f + gray
            else:
                hsv = _rgb_to_hsv(xs / 255.0)
                hue = (hsv[:, :1] + f) % 1.0
                y = _hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], 1)) * 255.0
            x[idx] = y.clamp_(0, 255)
    offset = column(params, "pca_offset")
    if bool((offset != 0).any()):
        x = (x + (offset if c == 3 else offset.mean(1, keepdim=True)).view(n, c, 1, 1)).clamp_(0, 255)
    return x.round_().to(torch.uint8)
