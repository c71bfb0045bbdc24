"""Albumentations pipelines for the augmentation group (`conf/augmentation/`) and evaluation views.

Pipelines take and return uint8 HWC arrays; normalisation happens on the device in the
LightningModule (uint8 batches are 4× cheaper to move than float ones).
"""
from __future__ import annotations

import math

import albumentations as A
import cv2

AUGMENTATIONS = ("none", "pad_crop_flip", "random_resized_crop", "scale_jitter")


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


def train_transform(aug, image_size: int, native_size: int | None, crop_pct: float) -> A.Compose:
    name = aug.name
    flip = [A.HorizontalFlip(p=0.5)] if aug.get("hflip", False) else []
    if name == "none":
        return eval_transform(image_size, native_size, crop_pct)
    if name == "pad_crop_flip":
        base = list(eval_transform(image_size, native_size, crop_pct).transforms)
        pad = int(aug.pad)
        return A.Compose(
            base
            + [
                A.PadIfNeeded(image_size + 2 * pad, image_size + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
                A.RandomCrop(image_size, image_size),
            ]
            + flip
        )
    if name == "random_resized_crop":
        return A.Compose(
            [A.RandomResizedCrop(size=(image_size, image_size), scale=tuple(aug.scale), ratio=tuple(aug.ratio))] + flip
        )
    if name == "scale_jitter":
        factor = image_size / float(aug.reference_size)
        lo, hi = max(image_size, round(aug.min_side * factor)), max(image_size, round(aug.max_side * factor))
        return A.Compose(
            [A.SmallestMaxSize(max_size=list(range(lo, hi + 1))), A.RandomCrop(image_size, image_size)] + flip
        )
    raise ValueError(f"unknown augmentation {name!r}; valid choices: {', '.join(AUGMENTATIONS)}")
