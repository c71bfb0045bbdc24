"""The AutoAugment policy "v0" that EfficientNet was trained with (§5.2 of Tan & Le 2019: "AutoAugment"; the reference
implementation's `--augment_name=autoaugment`, policy 'v0', `translate_const=250`), with torchvision.transforms.v2's ops.

`apply_op` is each op on a CHW tensor with torchvision's functional ops (the definition); the loader runs
`apply_op_array`, the same ops on the HWC uint8 crop with OpenCV lookup tables and `cv2.warpAffine` (several times
cheaper per 224² crop; docs/performance.md measures the pipeline) and gives the same pixels (tests/data/test_autoaugment_v0.py: equal for the value
ops; Color within 1 grey level; the geometric ops resample with torchvision's inverse affine matrix and
differ only where a source coordinate falls halfway between two pixels, a tie the two libraries break differently).

v0 is the TF-TPU reference's ImageNet policy, not the AutoAugment paper's "original" one that
`torchvision.transforms.v2.AutoAugment` implements: 25 sub-policies of two (op, probability, level) steps; one
sub-policy is drawn uniformly per image and each of its steps runs with its probability. Levels (0–10) map to
op arguments as in the TF reference, including its quirks, so that the recipe is the paper's:

- Posterize keeps int(level·0.4) bits (so level 2 keeps 0 bits: a black image, as in the reference);
- Translate moves by level/10 · 250 px — absolute pixels at ImageNet resolutions; below 224 px the distance
  is scaled by image_size/224 (a cnnbench choice for small-image datasets, where 250 px is the whole image);
- shear and translate act about the top-left corner, geometric ops fill with grey 128 and use nearest
  interpolation, and the signed ops (rotate, shear, translate) flip their sign with probability 1/2.
"""
from __future__ import annotations

import math
import random

import albumentations as A
import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

MAX_LEVEL = 10.0
TRANSLATE_CONST = 250.0      # px, `translate_const` of the reference
TRANSLATE_REFERENCE_SIZE = 224  # B0's resolution: below it, translations scale with the image
FILL = 128

# (op, probability, level) pairs, one row per sub-policy — the reference's `policy_v0()` table.
POLICY_V0: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)

SIGNED_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


def level_to_arg(op: str, level: float, image_size: int) -> float:
    """The op's argument for a level in [0, 10] (TF reference `level_to_arg`), before any sign flip."""
    frac = level / MAX_LEVEL
    if op == "Rotate":
        return frac * 30.0                              # degrees
    if op in ("ShearX", "ShearY"):
        return frac * 0.3                               # shear factor
    if op in ("TranslateX", "TranslateY"):
        return frac * TRANSLATE_CONST * min(1.0, image_size / TRANSLATE_REFERENCE_SIZE)  # pixels
    if op == "Color":
        return frac * 1.8 + 0.1                         # enhancement factor
    if op == "Posterize":
        return float(int(frac * 4))                     # bits kept
    if op == "Solarize":
        return float(int(frac * 256))                   # threshold
    if op == "SolarizeAdd":
        return float(int(frac * 110))                   # added below 128
    return 0.0                                          # Equalize, AutoContrast, Invert take no argument


def apply_op(img: torch.Tensor, op: str, arg: float) -> torch.Tensor:
    """One v0 op on a uint8 CHW tensor."""
    nearest, fill = InterpolationMode.NEAREST, [float(FILL)] * img.shape[0]
    if op == "Equalize":
        return F.equalize(img)
    if op == "AutoContrast":
        return F.autocontrast(img)
    if op == "Invert":
        return F.invert(img)
    if op == "Posterize":
        return F.posterize(img, int(arg))
    if op == "Solarize":   # level 10 gives threshold 256: nothing is inverted
        return img if arg > 255 else F.solarize(img, arg)
    if op == "SolarizeAdd":
        added = (img.to(torch.int16) + int(arg)).clamp(0, 255).to(torch.uint8)
        return torch.where(img < 128, added, img)
    if op == "Color":
        return F.adjust_saturation(img, arg)   # a blend with the grey image; identity on one channel
    if op == "Rotate":
        return F.rotate(img, arg, interpolation=nearest, fill=fill)
    if op in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(arg))
        shear = [degrees, 0.0] if op == "ShearX" else [0.0, degrees]
        return F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=nearest,
                        fill=fill, center=[0, 0])
    if op in ("TranslateX", "TranslateY"):
        shift = [int(arg), 0] if op == "TranslateX" else [0, int(arg)]
        return F.affine(img, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=nearest,
                        fill=fill)
    raise ValueError(f"unknown AutoAugment op {op!r}")


_VALUES = np.arange(256, dtype=np.int32)


def _lut(img: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """Per-channel lookup: `tables` is (256,) for all channels or (256, C), uint8."""
    c = img.shape[2]
    if c == 3:
        return cv2.LUT(img, tables if tables.ndim == 1 else np.ascontiguousarray(tables).reshape(256, 1, 3))
    return tables[img] if tables.ndim == 1 else tables[img, np.arange(c)]


def _equalize_tables(img: np.ndarray) -> np.ndarray:
    """torchvision's (PIL's) equalization table of each channel: lut[k] = (cum_hist[k−1] + step // 2) // step with
    step = (pixels not at the channel's maximum value) // 255; a channel with step 0 is left as it is."""
    n = img.shape[0] * img.shape[1]
    tables = np.empty((256, img.shape[2]), dtype=np.uint8)
    for ch in range(img.shape[2]):
        hist = cv2.calcHist([img], [ch], None, [256], [0, 256]).ravel().astype(np.int64)
        step = (n - hist[np.flatnonzero(hist)[-1]]) // 255
        if step == 0:
            tables[:, ch] = _VALUES
            continue
        cum = np.cumsum(hist)[:-1]
        tables[0, ch] = 0
        tables[1:, ch] = np.clip((cum + step // 2) // step, 0, 255)
    return tables


def _autocontrast_tables(img: np.ndarray) -> np.ndarray:
    """torchvision's autocontrast in float32 on the 256 values: (v − min) / ((max − min) · (1/255)), clamped,
    truncated; a constant channel stays as it is."""
    extremes = [cv2.minMaxLoc(np.ascontiguousarray(img[..., ch]))[:2] for ch in range(img.shape[2])]
    lo = np.array([e[0] for e in extremes], dtype=np.float32)
    hi = np.array([e[1] for e in extremes], dtype=np.float32)
    inv_scale = (hi - lo) * np.float32(1.0 / 255)
    flat = hi == lo
    lo, inv_scale = np.where(flat, np.float32(0), lo), np.where(flat, np.float32(1), inv_scale)
    v = _VALUES.astype(np.float32)[:, None]
    return np.clip((v - lo[None]) / inv_scale[None], 0, 255).astype(np.uint8)


def _saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """torchvision's adjust_saturation on uint8 RGB: blend with floor(0.2989 R + 0.587 G + 0.114 B) in float32."""
    if img.shape[2] != 3:
        return img
    f = img.astype(np.float32)
    grey = np.floor(cv2.transform(f, np.array([[0.2989, 0.587, 0.114]], dtype=np.float32)))
    out = cv2.addWeighted(f, float(factor), cv2.merge([grey, grey, grey]), 1.0 - float(factor), 0.0)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def inverse_affine(center: tuple[float, float], angle: float, translate: tuple[float, float],
                   shear: tuple[float, float]) -> list[float]:
    """The inverse (output → source) of torchvision's affine map at scale 1, row-major 2×3, in the same
    floating-point operations as torchvision.transforms.v2.functional.affine computes it (so warps are identical):
    the map is M = T·C·RSS·C⁻¹ with T the translation, C the shift to `center`, and RSS = R(angle)·SHy(sy)·SHx(sx),
    SHx(s) = [[1, −tan s], [0, 1]], SHy(s) = [[1, 0], [−tan s, 1]] (degrees); det RSS = 1, so its inverse is its
    adjugate, and M⁻¹ = C·RSS⁻¹·C⁻¹·T⁻¹."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    cos_sy, tan_sx = math.cos(sy), math.tan(sx)
    a = math.cos(rot - sy) / cos_sy  # RSS = [[a, b], [c, d]]
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot - sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    m = [d, -b, 0.0, -c, a, 0.0]  # the adjugate
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty)
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty)
    return m


def _warp(img: np.ndarray, inverse: list[float]) -> np.ndarray:
    """Nearest-neighbour resampling with the inverse affine matrix (in coordinates relative to the image centre,
    as torchvision's affine grid), grey fill outside the source."""
    h, w = img.shape[:2]
    a = np.array(inverse, dtype=np.float64).reshape(2, 3)
    c0 = np.array([(w - 1) * 0.5, (h - 1) * 0.5])
    matrix = np.hstack([a[:, :2], (a[:, 2] + c0 - a[:, :2] @ c0)[:, None]])
    out = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(FILL,) * 4)
    return out if out.ndim == 3 else out[..., None]


def apply_op_array(img: np.ndarray, op: str, arg: float) -> np.ndarray:
    """`apply_op` on a uint8 HWC array (lookup tables and one warpAffine: the loader's path)."""
    img = np.ascontiguousarray(img)
    if op == "Equalize":
        return _lut(img, _equalize_tables(img))
    if op == "AutoContrast":
        return _lut(img, _autocontrast_tables(img))
    if op == "Invert":
        return _lut(img, (255 - _VALUES).astype(np.uint8))
    if op == "Posterize":
        bits = int(arg)
        return img if bits >= 8 else img & np.uint8(((1 << bits) - 1) << (8 - bits))
    if op == "Solarize":
        if arg > 255:
            return img
        return _lut(img, np.where(_VALUES >= arg, 255 - _VALUES, _VALUES).astype(np.uint8))
    if op == "SolarizeAdd":
        return _lut(img, np.where(_VALUES < 128, np.minimum(_VALUES + int(arg), 255), _VALUES).astype(np.uint8))
    if op == "Color":
        return _saturation(img, arg)
    h, w = img.shape[:2]
    if op == "Rotate":
        return _warp(img, inverse_affine((0.0, 0.0), -arg, (0.0, 0.0), (0.0, 0.0)))
    if op in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(arg))
        shear = (degrees, 0.0) if op == "ShearX" else (0.0, degrees)
        center_f = (-w * 0.5, -h * 0.5)  # about the top-left corner, as apply_op's center=[0, 0]
        return _warp(img, inverse_affine(center_f, 0.0, (0.0, 0.0), shear))
    if op in ("TranslateX", "TranslateY"):
        shift = (float(int(arg)), 0.0) if op == "TranslateX" else (0.0, float(int(arg)))
        return _warp(img, inverse_affine((0.0, 0.0), 0.0, shift, (0.0, 0.0)))
    raise ValueError(f"unknown AutoAugment op {op!r}")


def apply_v0(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """Draw a v0 sub-policy with `rng` and apply it to a uint8 HWC image."""
    for op, prob, level in POLICY_V0[rng.randrange(len(POLICY_V0))]:
        if rng.random() >= prob:
            continue
        arg = level_to_arg(op, level, min(img.shape[:2]))
        if op in SIGNED_OPS and rng.random() < 0.5:
            arg = -arg
        img = apply_op_array(img, op, arg)
    return img


class AutoAugmentV0(A.ImageOnlyTransform):
    """The v0 policy as an albumentations step, drawing from the pipeline's seeded random state."""

    def get_params(self) -> dict:
        return {"policy_seed": self.py_random.randint(0, 2**31 - 1)}

    def apply(self, img: np.ndarray, policy_seed: int = 0, **params) -> np.ndarray:
        return apply_v0(img, random.Random(policy_seed))

    def get_transform_init_args_names(self):
        return ()
