"""Albumentations pipelines for the augmentation group (`conf/augmentation/`) and evaluation views.

Pipelines take and return uint8 HWC arrays; normalisation happens on the device in the
LightningModule (uint8 batches are 4× cheaper to move than float ones).
"""
from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np

from cnnbench.choices import AUGMENTATIONS
from cnnbench.data.autoaugment_v0 import AutoAugmentV0
from cnnbench.errors import ConfigError

INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST,
                  "cubic": cv2.INTER_CUBIC}


class TorchvisionPolicy(A.ImageOnlyTransform):
    """torchvision.transforms.v2 AutoAugment / RandAugment inside an albumentations pipeline, seeded from the
    pipeline's random state (so per-sample seeding covers it too). Hand-written glue only: the policy is
    torchvision's."""

    def __init__(self, policy: str = "imagenet", p: float = 1.0) -> None:
        super().__init__(p=p)
        from torchvision.transforms import v2

        if policy == "imagenet":
            self.op = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
        elif policy == "randaugment":
            self.op = v2.RandAugment()
        else:
            raise ConfigError(f"augmentation.auto_augment={policy!r}; valid choices: v0, imagenet, randaugment, none")
        self.policy = policy

    def get_params(self) -> dict:
        return {"torch_seed": self.py_random.randint(0, 2**31 - 1)}

    def apply(self, img: np.ndarray, torch_seed: int = 0, **params) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            y = self.op(x)
        return y.permute(1, 2, 0).contiguous().numpy()

    def get_transform_init_args_names(self):
        return ("policy",)


# AlexNet §4.1 "altering the intensities of the RGB channels": the principal components of the RGB pixel values of
# the ImageNet training set (pixel values in [0, 1]) — the eigenvalues and eigenvectors (columns) that the
# reference re-implementations publish for it.
IMAGENET_RGB_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_RGB_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))


class PCALighting(A.ImageOnlyTransform):
    """AlexNet PCA colour noise with the dataset's principal components (not each image's, as albumentations'
    FancyPCA): every pixel gets [p1, p2, p3]·[α1·λ1, α2·λ2, α3·λ3]ᵀ added, α_i ~ N(0, alpha) drawn once per
    image. One-channel images get the mean of the three channel offsets."""

    def __init__(self, alpha: float = 0.1, eigval=IMAGENET_RGB_EIGVAL, eigvec=IMAGENET_RGB_EIGVEC,
                 p: float = 1.0) -> None:
        super().__init__(p=p)
        self.alpha = float(alpha)
        self.eigval = np.asarray(eigval, dtype=np.float64)
        self.eigvec = np.asarray(eigvec, dtype=np.float64)

    def get_params(self) -> dict:
        return {"alphas": np.array([self.py_random.gauss(0.0, self.alpha) for _ in range(3)])}

    def offset(self, alphas: np.ndarray) -> np.ndarray:
        """The RGB offset on the 0-255 scale for the drawn α."""
        return 255.0 * (self.eigvec @ (np.asarray(alphas) * self.eigval))

    def apply(self, img: np.ndarray, alphas=np.zeros(3), **params) -> np.ndarray:
        return add_rgb_offset(img, self.offset(alphas))

    def get_transform_init_args_names(self):
        return ("alpha",)


def add_rgb_offset(img: np.ndarray, offset) -> np.ndarray:
    """uint8 HWC image + a per-channel RGB offset (0–255 scale; one-channel images get its mean), clipped and
    truncated to uint8: PCALighting's pixels."""
    offset = np.asarray(offset, dtype=np.float64)
    if img.shape[-1] == 1:
        offset = offset.mean(keepdims=True)
    # clip(v + offset) truncated to uint8, as a per-channel lookup table on the uint8 image (the same
    # float32 arithmetic on the 256 possible values instead of on every pixel)
    values = np.arange(256, dtype=np.float32)[:, None]
    table = np.clip(values + offset.astype(np.float32)[None, :], 0, 255).astype(np.uint8)
    if img.shape[-1] == 3:
        return cv2.LUT(np.ascontiguousarray(img), table.reshape(256, 1, 3))
    return table[img, np.arange(img.shape[-1])]


# ITU-R BT.601 luma weights (R, G, B): OpenCV's RGB→gray, the grey that contrast and saturation blend towards
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])


class ColorJitter(A.ColorJitter):
    """Brightness, contrast, saturation and hue jitter in random order (Howard 2013, as torchvision's ColorJitter
    defines each op). The factors and the order are drawn by albumentations' ColorJitter (inherited `get_params`:
    the same calls on the same generators); the ops are applied on one pass per run of affine steps instead of
    one uint8 round trip per op:

    - brightness b, contrast c and saturation s are affine maps of each pixel's RGB vector (x·b; c·x + (1 − c)·m
      with m the mean grey of the current image; s·x + (1 − s)·grey(x)), so consecutive ones compose into one
      3×4 matrix applied by `cv2.transform`, with the contrast mean carried through the matrix exactly;
    - the clamp to [0, 255] that follows every op can only bind after a factor above 1 (below 1 the op is a
      convex combination of values in range), so the composed matrix is applied — rounded and clamped — there,
      before a hue step and at the end; elsewhere nothing is rounded between ops;
    - hue is shifted in float HSV (torchvision's definition) rather than on OpenCV's 180-level uint8 hue.

    Against torchvision's ops on the float image with the same parameters, the result is within 3 levels and
    almost every pixel within 1 at the configured ranges (tests/data/test_transforms.py); albumentations' own
    uint8 ops, which round at every op and quantise hue to 180 levels, are further from it. 1-channel images get
    brightness and contrast only, as there; float images use albumentations' implementation."""

    def apply(self, img: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float,
              order: list[int], **params) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] not in (1, 3):
            return super().apply(img, brightness, contrast, saturation, hue, order, **params)
        rgb = img.shape[-1] == 3
        gray = GRAY_WEIGHTS.tolist() if rgb else [1.0]
        # the pending run of affine ops as x ↦ a·x + (v·x)·1 + tau·1 (every composition of the three ops has this
        # form, because the grey weights sum to 1), in Python floats
        a, v, tau = 1.0, [0.0] * len(gray), 0.0
        for op in order:
            factor = (brightness, contrast, saturation, hue)[op]
            if op == 3:  # hue: a nonlinear step on the image as it stands
                if hue != 0 and rgb:
                    img, (a, v, tau) = _shift_hue(_affine(img, a, v, tau), hue), (1.0, [0.0] * 3, 0.0)
                continue
            if factor == 1 or (op == 2 and not rgb):
                continue
            if op == 0:
                a, v, tau = factor * a, [factor * e for e in v], factor * tau
            elif op == 1:  # the current image's mean grey, through the pending run
                means = cv2.mean(img)[: len(gray)]
                mean = sum((a * g + e) * m for g, e, m in zip(gray, v, means, strict=True)) + tau
                a, v, tau = factor * a, [factor * e for e in v], factor * tau + (1 - factor) * mean
            else:
                v = [e + (1 - factor) * a * g for e, g in zip(v, gray, strict=True)]
                a *= factor
            if factor > 1:  # the clamp after this op can bind: apply the run here
                img, (a, v, tau) = _affine(img, a, v, tau), (1.0, [0.0] * len(gray), 0.0)
        return _affine(img, a, v, tau)


def _affine(img: np.ndarray, a: float, v: list[float], tau: float) -> np.ndarray:
    """uint8 image mapped by x ↦ a·x + (v·x)·1 + tau·1 per pixel, rounded and clamped to [0, 255]."""
    if a == 1.0 and tau == 0.0 and not any(v):
        return img
    if len(v) == 1:
        table = np.clip(np.rint((a + v[0]) * np.arange(256) + tau), 0, 255).astype(np.uint8)
        return cv2.LUT(img, table).reshape(img.shape)
    matrix = np.array([[a * (i == j) + v[j] for j in range(3)] + [tau] for i in range(3)], dtype=np.float32)
    return cv2.transform(img, matrix)


def _shift_hue(img: np.ndarray, hue: float) -> np.ndarray:
    """uint8 RGB with its HSV hue rotated by `hue` turns (torchvision's adjust_hue), in float32 HSV."""
    hsv = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees [0, 360)
    cv2.add(hsv, (360.0 * (hue % 1.0), 0.0, 0.0, 0.0), dst=hsv)  # OpenCV's HSV→RGB wraps hues in [360, 720)
    return cv2.convertScaleAbs(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def _random_resized_crop(aug, image_size: int) -> A.BasicTransform:
    """Inception-style crop; `interpolations` (several) picks one per sample with equal probability."""
    names = list(aug.get("interpolations") or [aug.get("interpolation", "linear")])
    for n in names:
        if n not in INTERPOLATIONS:
            raise ConfigError(f"augmentation interpolation {n!r}; valid choices: {', '.join(INTERPOLATIONS)}")
    crops = [A.RandomResizedCrop(size=(image_size, image_size), scale=tuple(aug.scale), ratio=tuple(aug.ratio),
                                 interpolation=INTERPOLATIONS[n]) for n in names]
    return crops[0] if len(crops) == 1 else A.OneOf(crops, p=1.0)


def scale_jitter_sides(aug, image_size: int) -> list[int]:
    """The shorter sides a scale-jittered crop of `image_size` is cut from: `min_side`…`max_side` scaled by
    image_size / reference_size (Simonyan & Zisserman 2015 §3.1, He et al. 2015 §3.4), none below image_size."""
    factor = image_size / float(aug.reference_size)
    lo, hi = max(image_size, round(aug.min_side * factor)), max(image_size, round(aug.max_side * factor))
    return list(range(lo, hi + 1))


def _scale_jitter(aug, image_size: int) -> list:
    return [A.SmallestMaxSize(max_size=scale_jitter_sides(aug, image_size)), A.RandomCrop(image_size, image_size)]


def _colour(aug) -> list:
    """Photometric steps named in the augmentation config (each optional)."""
    out = []
    if aug.get("brightness_delta"):  # additive, as TF's random_brightness (fraction of 255)
        d = float(aug.brightness_delta)
        out.append(A.RandomBrightnessContrast(brightness_limit=(-d, d), contrast_limit=(0, 0), brightness_by_max=True,
                                              p=1.0))
    jitter = aug.get("color_jitter")
    if jitter:  # multiplicative factors in [1 − x, 1 + x], applied in random order
        out.append(ColorJitter(brightness=float(jitter.get("brightness", 0)), contrast=float(jitter.get("contrast", 0)),
                                 saturation=float(jitter.get("saturation", 0)), hue=float(jitter.get("hue", 0)), p=1.0))
    if aug.get("pca_alpha"):  # AlexNet PCA lighting noise with ImageNet's RGB principal components
        out.append(PCALighting(alpha=float(aug.pca_alpha)))
    return out


def eval_transform(image_size: int, native_size: int | None, crop_pct: float) -> A.Compose:
    """Single view: short side to image_size/crop_pct, center crop (or a plain resize for
    fixed-size datasets whose crop_pct is 1)."""
    if native_size is not None and crop_pct >= 1.0:
        if native_size == image_size:
            return A.Compose([])
        return A.Compose([A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR)])
    resize_to = int(math.floor(image_size / crop_pct))
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=resize_to, interpolation=cv2.INTER_LINEAR),
            A.CenterCrop(image_size, image_size),
        ]
    )


def _policy(aug) -> list:
    policy = aug.get("auto_augment") or "none"
    if policy == "none":
        return []
    if policy == "v0":
        return [AutoAugmentV0()]
    return [TorchvisionPolicy(policy)]


def post_crop_steps(aug) -> list:
    """What a crop-based train pipeline runs after its crop, in order: flip, photometric ops, AutoAugment."""
    flip = [A.HorizontalFlip(p=0.5)] if aug.get("hflip", False) else []
    return flip + _colour(aug) + (_policy(aug) if aug.name == "efficientnet" else [])


PAD_CROP_AUGMENTATIONS = ("pad_crop_flip", "cifar")
RANDOM_RESIZED_CROP_AUGMENTATIONS = ("random_resized_crop", "googlenet", "inception", "efficientnet")
SCALE_JITTER_AUGMENTATIONS = ("scale_jitter", "resnet_imagenet", "vgg")
SCALE_AUGMENTATIONS = RANDOM_RESIZED_CROP_AUGMENTATIONS + SCALE_JITTER_AUGMENTATIONS


def eval_crop_pct(aug, native_size: int | None, model_crop_pct: float) -> float:
    """The single test view's crop fraction (short side image_size/crop_pct, centre crop). Photos of any size: the
    model's (0.875: 224 of 256). Fixed-size images (28², 32²) are shown whole (1.0), except under scale
    jittering, whose training crops never show the whole image: there the test view is the papers' own — the
    shorter side at the smallest training scale, centre crop (Krizhevsky et al. 2012 §4.1 and He et al. 2015
    §3.4: 224 of 256; Simonyan & Zisserman 2015 §3.2: Q = S_min), so that a garment is as large at test time as
    in the least-zoomed training crop (docs/zoo.md, "The test view of scale-jittered recipes")."""
    if native_size is None:
        return float(model_crop_pct)
    if aug is not None and aug.get("name") in SCALE_JITTER_AUGMENTATIONS:
        return min(1.0, float(aug.reference_size) / float(aug.min_side))
    return 1.0


def pad_pixels(aug, image_size: int) -> int:
    """The pad of a pad-crop augmentation at this input size (He et al. 2015 §4.2: 4 px at 32, kept in
    proportion when the augmentation names its `reference_size`)."""
    pad = int(aug["pad"])
    if aug.get("reference_size"):
        pad = max(1, round(pad * image_size / float(aug["reference_size"])))
    return pad


def training_geometry(aug, image_size: int) -> dict:
    """What a checkpoint records of its training augmentation, for choosing test-time views: the kind
    (`scale`: random-resized crops or scale jittering; `pad_crop`: shifted crops of a padded image; `none`),
    the pad in pixels, the flips, the input size and the augmentation's own settings."""
    name = str(aug["name"])
    kind = "pad_crop" if name in PAD_CROP_AUGMENTATIONS else "scale" if name in SCALE_AUGMENTATIONS else "none"
    return {"name": name, "kind": kind, "input_size": int(image_size), "hflip": bool(aug.get("hflip", False)),
            "pad": pad_pixels(aug, image_size) if kind == "pad_crop" else 0,
            "settings": {k: v for k, v in dict(aug).items() if k != "name"}}


def train_transform(aug, image_size: int, native_size: int | None, crop_pct: float) -> A.Compose:
    name = aug.name
    flip = [A.HorizontalFlip(p=0.5)] if aug.get("hflip", False) else []
    if name == "none":
        return eval_transform(image_size, native_size, crop_pct)
    if name in PAD_CROP_AUGMENTATIONS:
        base = list(eval_transform(image_size, native_size, crop_pct).transforms)
        pad = pad_pixels(aug, image_size)
        return A.Compose(
            base
            + [
                A.PadIfNeeded(image_size + 2 * pad, image_size + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
                A.RandomCrop(image_size, image_size),
            ]
            + flip
        )
    if name in RANDOM_RESIZED_CROP_AUGMENTATIONS:
        return A.Compose([_random_resized_crop(aug, image_size)] + post_crop_steps(aug))
    if name in SCALE_JITTER_AUGMENTATIONS:
        return A.Compose(_scale_jitter(aug, image_size) + post_crop_steps(aug))
    raise ConfigError(f"unknown augmentation {name!r}; valid choices: {', '.join(AUGMENTATIONS)}")
