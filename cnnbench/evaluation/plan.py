"""Which views a network sees of an image: `ViewPlan` (a single center view, a papers' multi-crop protocol, whole
images at several scales, the training geometry's shifted crops — or several averaged, VGG's dense + multi-crop),
built by `make_plan` from the `eval` config and the checkpoint's record, every size scaled by
image_size / reference (224, or 299 for Inception); `protocol_note` says when a protocol does not fit the
checkpoint's training."""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnbench.data.transforms import eval_transform
from cnnbench.errors import UserError
from cnnbench.evaluation.crops import default_scales, extract, protocol_views, shifted_crops, whole_views
from cnnbench.models import model_info


def reference_size(model_name: str) -> int:
    """The resolution the papers' crop and scale numbers refer to: 299 for the Inception models
    (native input 299), 224 for everything else."""
    return 299 if model_info(model_name).input_size == 299 else 224


@dataclass(frozen=True)
class ViewPlan:
    """The views of one input geometry. Parts are averaged with equal weight."""

    image_size: int
    crop_pct: float
    native_size: int | None  # fixed-size datasets: the single view is a plain resize
    reference: int
    crops: int = 1
    mode: str = "crops"
    scales: tuple[int, ...] | None = None  # short sides at the reference resolution
    flip: bool = True
    twelve: str = "one_square"
    gray: bool = False  # convert colour input to gray first (networks trained on gray images)
    shift_pad: int = 0  # > 0: eval.views=train on a pad-crop checkpoint — the shifted crops of the single view
    shift_flip: bool = False  # … and their mirrors (the training flipped)

    @property
    def factor(self) -> float:
        return self.image_size / self.reference

    def px(self, s: float) -> int:
        return max(1, int(round(s * self.factor)))

    def reference_scales(self) -> tuple[int, ...]:
        if self.scales:
            return tuple(int(s) for s in self.scales)
        defaults = default_scales(self.crops, self.mode, self.twelve)
        return tuple(int(round(s * self.reference / 224)) for s in defaults)

    def pixel_scales(self) -> tuple[int, ...]:
        return tuple(self.px(s) for s in self.reference_scales())

    def parts(self) -> list[str]:
        """'single' (center view), 'crops' (a protocol) and/or 'whole' (fully-convolutional); 'shifted' (the
        training geometry's shifted crops) alone."""
        if self.shift_pad:
            return ["shifted"]
        parts = []
        if self.mode in ("multiscale", "dense"):
            parts.append("whole")
            if self.crops > 1:
                parts.append("crops")
        else:
            parts.append("single" if self.crops == 1 else "crops")
        return parts

    def validate(self, min_input_size: int) -> None:
        scales = self.pixel_scales()
        if "crops" in self.parts() or "whole" in self.parts():
            smallest = min(scales)
            if "crops" in self.parts() and smallest < self.image_size:
                raise UserError(
                    f"eval.scales={list(self.reference_scales())}: short side {smallest} px is smaller than the "
                    f"{self.image_size} px crop (scales are at the {self.reference} px reference and multiplied by "
                    f"image_size/{self.reference}); use scales ≥ {self.reference}")
            if "whole" in self.parts() and smallest < min_input_size:
                raise UserError(f"eval.scales={list(self.reference_scales())}: short side {smallest} px is below "
                                f"the model's minimum input size {min_input_size}")

    def views_per_image(self) -> int:
        n = 0
        for part in self.parts():
            if part == "single":
                n += 1
            elif part == "shifted":
                n += 9 * (2 if self.shift_flip else 1)
            elif part == "crops":
                s = max(self.pixel_scales())
                n += len(protocol_views(self.crops, (s, s), self.image_size, self.pixel_scales(), self.flip,
                                        self.twelve))
            else:
                n += len(whole_views(self.pixel_scales(), self.flip))
        return n

    def cost_per_image(self) -> float:
        """Views per image, whole-image views weighted by their area in crops (memory sizing)."""
        n = 0.0
        for part in self.parts():
            if part == "whole":
                n += sum((s / self.image_size) ** 2 * 4 / 3 for s in self.pixel_scales()) * (2 if self.flip else 1)
            elif part == "single":
                n += 1
            elif part == "shifted":
                n += self.views_per_image()
            else:
                n += self.views_per_image() - (len(whole_views(self.pixel_scales(), self.flip))
                                               if "whole" in self.parts() else 0)
        return n

    def build(self, image: np.ndarray) -> list[tuple[int, torch.Tensor]]:
        """(part index, uint8 tensor (V, C, h, w)) groups of one HWC image."""
        if image.ndim == 2:
            image = image[..., None]
        if self.gray and image.shape[2] == 3:
            image = np.round(image.mean(axis=2, keepdims=True)).astype(np.uint8)
        groups: list[tuple[int, torch.Tensor]] = []
        for p, part in enumerate(self.parts()):
            if part in ("single", "shifted"):
                out = _single_view(self.image_size, self.native_size, self.crop_pct)(image=image)["image"]
                arrays = [out[..., None] if out.ndim == 2 else out]
                if part == "shifted":
                    arrays = shifted_crops(arrays[0], self.shift_pad, self.shift_flip)
            elif part == "crops":
                views = protocol_views(self.crops, image.shape[:2], self.image_size, self.pixel_scales(),
                                       self.flip, self.twelve)
                arrays = extract(image, views)
            else:
                arrays = extract(image, whole_views(self.pixel_scales(), self.flip))
            by_shape: dict[tuple[int, ...], list[np.ndarray]] = defaultdict(list)
            for a in arrays:
                by_shape[a.shape].append(a)
            for same in by_shape.values():
                groups.append((p, torch.from_numpy(np.stack(same).transpose(0, 3, 1, 2).copy())))
        return groups


@functools.lru_cache(maxsize=16)
def _single_view(image_size: int, native_size: int | None, crop_pct: float):
    return eval_transform(image_size, native_size, crop_pct)


def make_plan(cfg_eval: Any, crops: int, record: dict[str, Any], image_size: int, native_size: int | None,
              gray: bool = False) -> ViewPlan:
    """A member's plan from the `eval` config node and its checkpoint record (the choices of eval.mode, crops
    and eval.twelve are checked once, by config_schema.RULES, before the command runs)."""
    mode = str(cfg_eval.get("mode", "crops"))
    twelve = str(cfg_eval.get("twelve", "one_square"))
    scales = cfg_eval.get("scales")
    if scales is not None:
        try:
            scales = tuple(int(s) for s in (scales if not isinstance(scales, (int, float)) else [scales]))
        except (TypeError, ValueError):
            raise UserError(f"eval.scales={scales!r}; give a list of short sides, e.g. eval.scales=[256,384,512]") from None
        if not scales or min(scales) <= 0:
            raise UserError(f"eval.scales={list(scales)}; give positive short sides, e.g. [256,384,512]")
    name = record["model"]["name"]
    shift_pad, shift_flip = 0, False
    if str(cfg_eval.get("views", "protocol")) == "train":
        crops, mode, shift_pad, shift_flip = train_views(record, crops, mode)
    plan = ViewPlan(image_size=int(image_size), crop_pct=float(record.get("crop_pct", 1.0)), native_size=native_size,
                    reference=reference_size(name), crops=int(crops), mode=mode, scales=scales,
                    flip=bool(cfg_eval.get("flip", True)), twelve=twelve, gray=gray, shift_pad=shift_pad,
                    shift_flip=shift_flip)
    plan.validate(model_info(name).min_input_size)
    return plan


def train_views(record: dict[str, Any], crops: int, mode: str) -> tuple[int, str, int, bool]:
    """`eval.views=train`: (crops, mode, shift pad, shift flip) from the checkpoint's training geometry —
    pad-crop: the shifted crops of the padded image (and mirrors); scale augmentation: the protocol asked for;
    no augmentation: the single view."""
    geometry = record.get("augmentation")
    if not geometry:
        raise UserError("eval.views=train needs the training augmentation recorded in the checkpoint, and this one "
                        "has none (trained before cnnbench recorded it); use eval.views=protocol")
    if geometry["kind"] == "pad_crop":
        return 1, "crops", max(1, int(geometry["pad"])), bool(geometry["hflip"])
    if geometry["kind"] == "none":
        return 1, "crops", 0, False
    return crops, mode, 0, False


def protocol_note(cfg_eval: Any, crops: int, record: dict[str, Any]) -> str | None:
    """One line when a multi-scale/multi-crop protocol meets a checkpoint trained without scale augmentation
    (the papers' protocols assume scale-augmented training), naming `eval.views=train`."""
    geometry = record.get("augmentation")
    multi = int(crops) > 1 or str(cfg_eval.get("mode", "crops")) != "crops"
    if not multi or not geometry or geometry["kind"] == "scale" or str(cfg_eval.get("views")) == "train":
        return None
    trained = (f"{geometry['name']} (pad {geometry['pad']} px)" if geometry["kind"] == "pad_crop"
               else "no augmentation")
    return (f"this checkpoint was trained at {geometry['input_size']} px with {trained}, without scale "
            f"augmentation; the papers' multi-crop and multi-scale views assume scale-augmented training and may "
            f"lower its accuracy — eval.views=train uses views from its training geometry instead")
