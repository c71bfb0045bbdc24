"""Test-time views of an image: the multi-crop protocols of the papers, as plain geometry.

Every protocol is a list of `View`s: resize the image so that its short side is `scale`, cut the
`box` (left, top, width, height, in the resized image), mirror it when `flip`, and resize the cut to
`out`×`out` when `out` is set and differs from the box (GoogLeNet's "whole square resized").
Boxes are computed from the resized image's shape, so the functions here are pure arithmetic and
tested against the protocols' definitions (tests/evaluation/test_crops.py).

Flipped views follow the usual ten-crop convention: mirror the (resized) image, then cut the same
boxes. For the symmetric box sets used here that is the set of mirrored crops.

Protocols (`crops=`), sizes at the papers' reference resolution (224, or 299 for Inception models);
`scales` are short sides at that reference resolution, multiplied by image_size/reference:
- 1:   short side image_size/crop_pct, center crop (cnnbench.data.transforms.eval_transform);
- 10:  4 corners + center, × mirror, at one scale (AlexNet/ResNet, 256 → 224);
- 12:  Inception-v4 (spec reading): one scale, the center square: 4 corners + center + the whole
       square resized, × mirror; `twelve=four_scales` gives the alternative reading (4 scales ×
       3 squares, whole square resized only, no mirror);
- 50:  VGG multi-crop: a 5×5 regular grid × mirror per scale (150 over VGG's three scales);
- 144: GoogLeNet: 4 scales × 3 squares (left/center/right or top/center/bottom) × (4 corners +
       center + the square resized) × mirror.

`eval.views=train` on a network trained with pad-crop-flip (He et al. 2015 §4.2) uses none of these: its
views are the training geometry's own, the image padded by the training pad and cut at the 3×3 grid of
shifts {0, pad, 2·pad}² (the center crop is the unshifted image), each mirrored when training flipped
(`shifted_crops`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cnnbench.errors import ConfigError
from cnnbench.evaluation.choices import CROP_CHOICES

# Default scales (short side, in reference pixels at a 224 reference resolution).
TEN_CROP_SCALE = 256                      # AlexNet/Caffe convention, used by ResNet's 10-crop
GOOGLENET_SCALES = (256, 288, 320, 352)   # Szegedy et al. 2015, §7
VGG_SCALES = (256, 384, 512)              # Simonyan & Zisserman 2015, §4.2 (Q for S ∈ [256, 512])
RESNET_SCALES = (224, 256, 384, 480, 640)  # He et al. 2015, §3.4 / Table 4 (fully-convolutional)

Box = tuple[int, int, int, int]  # left, top, width, height


@dataclass(frozen=True)
class View:
    scale: int | None       # short side to resize to first (None: keep the image as it is)
    box: Box | None          # region of the resized image (None: all of it)
    flip: bool = False       # mirror horizontally
    out: int | None = None   # resize the cut to out×out (None: keep its size)


# -- geometry --------------------------------------------------------------------------------------
def centered(length: int, size: int) -> int:
    """Offset of a centered window; rounds like torchvision's center_crop (round half to even)."""
    return int(round((length - size) / 2.0))


def five_boxes(h: int, w: int, c: int) -> list[Box]:
    """Top-left, top-right, bottom-left, bottom-right and center c×c boxes of an h×w image."""
    _check_fits(h, w, c)
    return [(0, 0, c, c), (w - c, 0, c, c), (0, h - c, c, c), (w - c, h - c, c, c),
            (centered(w, c), centered(h, c), c, c)]


def grid_boxes(h: int, w: int, c: int, n: int = 5) -> list[Box]:
    """An n×n regular grid of c×c boxes spanning the image (corners included), row by row."""
    _check_fits(h, w, c)
    xs = [int(round(i * (w - c) / (n - 1))) for i in range(n)]
    ys = [int(round(j * (h - c) / (n - 1))) for j in range(n)]
    return [(x, y, c, c) for y in ys for x in xs]


def square_boxes(h: int, w: int) -> list[Box]:
    """GoogLeNet's three s×s squares (s = short side): left/center/right of a landscape image,
    top/center/bottom of a portrait one; a square image gives the same square three times."""
    s = min(h, w)
    if w >= h:
        return [(0, 0, s, s), (centered(w, s), 0, s, s), (w - s, 0, s, s)]
    return [(0, 0, s, s), (0, centered(h, s), s, s), (0, h - s, s, s)]


def six_boxes(square: Box, c: int) -> list[tuple[Box, int | None]]:
    """Within a square: its 4 corner and center c×c boxes (kept at c), then the square itself
    (to be resized to c)."""
    left, top, s, _ = square
    inner = [(left + x, top + y, bw, bh) for x, y, bw, bh in five_boxes(s, s, c)]
    return [(b, None) for b in inner] + [(square, c)]


def resized_shape(h: int, w: int, short: int) -> tuple[int, int]:
    """(height, width) after scaling the short side to `short`, the other side rounded."""
    if h <= w:
        return short, max(1, int(round(w * short / h)))
    return max(1, int(round(h * short / w))), short


def _check_fits(h: int, w: int, c: int) -> None:
    if c > h or c > w:
        raise ValueError(f"a {c}×{c} crop does not fit in a {h}×{w} image")


def _mirror(box: Box, w: int) -> Box:
    left, top, bw, bh = box
    return (w - left - bw, top, bw, bh)


def _with_flips(boxes: Sequence[tuple[Box, int | None]], scale: int, h: int, w: int, flip: bool) -> list[View]:
    views = [View(scale, b, False, out) for b, out in boxes]
    if flip:
        # mirror the image, cut the same boxes: in original coordinates the box is mirrored too
        views += [View(scale, _mirror(b, w), True, out) for b, out in boxes]
    return views


# -- protocols ---------------------------------------------------------------------------------------
def protocol_views(crops: int, image_hw: tuple[int, int], crop_size: int, scales: Sequence[int],
                   flip: bool = True, twelve: str = "one_square") -> list[View]:
    """Views of one image of shape `image_hw` for `crops` ∈ {10, 12, 50, 144}; `scales` are short
    sides in pixels (already scaled to this image size), `crop_size` the network's input side."""
    h0, w0 = image_hw
    c = crop_size
    views: list[View] = []
    if crops == 10:
        for s in scales:
            h, w = resized_shape(h0, w0, s)
            views += _with_flips([(b, None) for b in five_boxes(h, w, c)], s, h, w, flip)
    elif crops == 12 and twelve == "one_square":
        for s in scales:
            h, w = resized_shape(h0, w0, s)
            center = square_boxes(h, w)[1]
            views += _with_flips(six_boxes(center, c), s, h, w, flip)
    elif crops == 12 and twelve == "four_scales":
        for s in scales:
            h, w = resized_shape(h0, w0, s)
            views += [View(s, sq, False, c) for sq in square_boxes(h, w)]
    elif crops == 50:
        for s in scales:
            h, w = resized_shape(h0, w0, s)
            views += _with_flips([(b, None) for b in grid_boxes(h, w, c)], s, h, w, flip)
    elif crops == 144:
        for s in scales:
            h, w = resized_shape(h0, w0, s)
            boxes = [bo for sq in square_boxes(h, w) for bo in six_boxes(sq, c)]
            views += _with_flips(boxes, s, h, w, flip)
    else:
        raise ConfigError(f"crops={crops}; valid choices: {', '.join(map(str, CROP_CHOICES))}")
    return views


def whole_views(scales: Sequence[int], flip: bool = True) -> list[View]:
    """The whole image at each short side (fully-convolutional evaluation), and its mirror."""
    views = []
    for s in scales:
        views.append(View(s, None, False, None))
        if flip:
            views.append(View(s, None, True, None))
    return views


def default_scales(crops: int, mode: str, twelve: str = "one_square") -> tuple[int, ...]:
    """The papers' scales at a 224 reference (multiply by reference/224 for 299-input models)."""
    if mode == "multiscale":
        return RESNET_SCALES
    if mode == "dense":
        return VGG_SCALES
    if crops == 144 or (crops == 12 and twelve == "four_scales"):
        return GOOGLENET_SCALES
    return (TEN_CROP_SCALE,)


def shift_offsets(pad: int) -> list[tuple[int, int]]:
    """(left, top) of the 3×3 grid of crops of an image padded by `pad` on each side, row by row."""
    steps = (0, pad, 2 * pad)
    return [(x, y) for y in steps for x in steps]


# -- pixels --------------------------------------------------------------------------------------------
def resize_short(image: np.ndarray, short: int) -> np.ndarray:
    """Bilinear resize (OpenCV, like the training pipelines) so that the short side is `short`."""
    h, w = image.shape[:2]
    nh, nw = resized_shape(h, w, short)
    if (nh, nw) == (h, w):
        return image
    return _keep_channels(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR), image)


def _keep_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    return out[..., None] if like.ndim == 3 and out.ndim == 2 else out


def extract(image: np.ndarray, views: Sequence[View]) -> list[np.ndarray]:
    """Cut `views` out of an HWC uint8 image (each scale resized once)."""
    by_scale: dict[int | None, np.ndarray] = {}
    out = []
    for v in views:
        if v.scale not in by_scale:
            by_scale[v.scale] = image if v.scale is None else resize_short(image, v.scale)
        img = by_scale[v.scale]
        if v.box is not None:
            left, top, bw, bh = v.box
            img = img[top:top + bh, left:left + bw]
        if v.flip:
            img = img[:, ::-1]
        if v.out is not None and img.shape[:2] != (v.out, v.out):
            img = _keep_channels(cv2.resize(np.ascontiguousarray(img), (v.out, v.out),
                                            interpolation=cv2.INTER_AREA), img)
        out.append(np.ascontiguousarray(img))
    return out


def shifted_crops(image: np.ndarray, pad: int, flip: bool) -> list[np.ndarray]:
    """The pad-crop-flip training geometry as test-time views of an HWC uint8 image: zero-padded by `pad`
    (the training pipeline's constant 0 border), the nine crops of `shift_offsets`, then their mirrors."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    crops = [padded[top:top + h, left:left + w] for left, top in shift_offsets(pad)]
    if flip:
        crops += [c[:, ::-1] for c in crops]
    return [np.ascontiguousarray(c) for c in crops]
