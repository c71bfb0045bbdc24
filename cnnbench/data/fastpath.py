"""The fast CPU path for file-backed (ImageFolder) data: one decoder, geometry before pixels.

What it changes against "decode the whole file with PIL, then run the albumentations pipeline on it"
(docs/performance.md, "ImageNet-scale input pipeline"):

- **One decoder**: JPEG files are decoded with OpenCV (`cv2.imdecode`, libjpeg-turbo; OpenCV is already
  a dependency through albumentations), EXIF orientation ignored as PIL does; other formats, and files OpenCV
  cannot read, go through PIL (`load_image_file`).
- **Geometry first**: the sample's AugParams are drawn from the image's size (read from the file header) by
  `cnnbench.data.aug_params.draw`, with the albumentations transforms of the paper's pipeline itself
  (`RandomResizedCrop`, or `SmallestMaxSize` + `RandomCrop` for scale jittering), so the crop distribution is
  the library's; then only the crop region is resampled to the output size. For scale jittering that replaces "resize the whole image to short side S,
  then cut 224²" by one affine resampling of the 224² window (the same source coordinates).
- **Reduced-scale decode**: when the crop will be downscaled by at least k ∈ {2, 4, 8} anyway, the JPEG
  is decoded at 1/k in the DCT domain (`cv2.IMREAD_REDUCED_COLOR_k`), which skips most of the IDCT work
  (`data.reduced_decode`, on by default; tests/data/test_fastpath.py states the pixel tolerance).
- **Photometric ops on the crop** (they already were: flip, colour jitter, PCA lighting and AutoAugment run
  after the crop in the paper's order), uint8 throughout, decoded straight to RGB (no colour-order conversion);
  the flip and colour ops apply the drawn AugParams, AutoAugment draws its own after them.
"""
from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np

from cnnbench.data.aug_params import DRAWN_STEPS, JITTER_OPS, PHOTOMETRIC_STEPS, AugDraw, AugParams
from cnnbench.data.image_io import REDUCTIONS, decode_rgb, header_size, is_jpeg, load_image_file, read_bytes
from cnnbench.data.transforms import (
    SCALE_AUGMENTATIONS,
    ColorJitter,
    PCALighting,
    add_rgb_offset,
    post_crop_steps,
)


def reduction(crop_h: float, crop_w: float, out_h: int, out_w: int) -> int:
    """The largest k in REDUCTIONS with the crop still at least the output size after a 1/k decode."""
    for k in REDUCTIONS:
        if crop_h >= k * out_h and crop_w >= k * out_w:
            return k
    return 1


def resample(img: np.ndarray, params: AugParams, k: int = 1) -> np.ndarray:
    """The params' window of `img` (decoded at 1/k scale) resampled to its output size."""
    x0, y0, x1, y1 = params.window
    oh, ow = params.out_size
    interpolation = params.cv2_interpolation
    if params.box_cut and k == 1:  # exactly albumentations' RandomResizedCrop: cut the box, resize it
        crop = img[int(y0):int(y1), int(x0):int(x1)]
        if crop.shape[:2] == (oh, ow):
            return np.ascontiguousarray(crop)
        return cv2.resize(crop, (ow, oh), interpolation=interpolation)
    # otherwise output pixel (x, y) samples the source where "cut the window (or resize the whole image,
    # then cut), then resize" would (OpenCV's pixel-centre convention: src = (dst + 0.5)·f − 0.5), mapped
    # onto the 1/k grid of a reduced decode (full-resolution coordinate u is (u + 0.5)/k − 0.5 there)
    fx, fy = (x1 - x0) / ow, (y1 - y0) / oh
    matrix = np.array([[fx / k, 0.0, (x0 + 0.5 * fx) / k - 0.5], [0.0, fy / k, (y0 + 0.5 * fy) / k - 0.5]])
    if interpolation == cv2.INTER_AREA:
        interpolation = cv2.INTER_LINEAR
    return cv2.warpAffine(img, matrix, (ow, oh), flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def apply_step(step, img: np.ndarray, params: AugParams) -> np.ndarray:
    """One post-crop step of the pipeline with the sample's drawn parameters (the CPU pixels of that step)."""
    if isinstance(step, A.HorizontalFlip):
        return np.ascontiguousarray(img[:, ::-1]) if params.flip else img
    if isinstance(step, A.RandomBrightnessContrast):
        return step.apply(img, alpha=1.0, beta=params.brightness_delta) if params.brightness_delta else img
    if isinstance(step, ColorJitter):
        order = [JITTER_OPS.index(op) for op in params.jitter_order]
        return step.apply(img, brightness=params.brightness, contrast=params.contrast,
                          saturation=params.saturation, hue=params.hue, order=order)
    if isinstance(step, PCALighting):
        return add_rgb_offset(img, params.pca_offset)
    raise TypeError(f"{type(step).__name__} is not a step of AugParams")


class FastPipeline:
    """uint8 HWC RGB crop of a file's bytes, for the pipelines whose geometry is a crop of the decoded image:
    the random-resized-crop family (Szegedy et al. 2014 §6), the scale-jittering family (He et al. 2015 §3.4,
    Simonyan & Zisserman 2015 §3.1) and the single eval view (short side image_size/crop_pct, center crop).
    `drawer` draws the sample's AugParams; the geometry, then `steps` (the post-crop steps: flip, photometric ops,
    then an AutoAugment policy, which draws its own parameters) apply them. With `device_split`
    (data.photometric=device, cnnbench.data.photometric) the photometric ops are left to the device, and a call
    returns (crop, AugParams vector).

    Seeding: `__call__` takes the sample's generators (`random.Random`, `np.random.Generator`); `drawer` draws
    from them, then the policy continues from the same generators."""

    def __init__(self, drawer: AugDraw, steps: list | None = None, reduced: bool = True, *, device_split=None) -> None:
        self.drawer, self.steps, self.reduced, self.device_split = drawer, list(steps or []), reduced, device_split

    @property
    def sides(self) -> list[int]:
        return self.drawer.sides

    def box(self, shape: tuple[int, int], py: random.Random, gen: np.random.Generator
            ) -> tuple[tuple[float, float, float, float], tuple[int, int], int]:
        """The drawn window (x0, y0, x1, y1) in source pixels, output (h, w) and OpenCV interpolation."""
        params = self.drawer(shape, py, gen)
        return params.window, params.out_size, params.cv2_interpolation

    def __call__(self, path: str, py: random.Random, gen: np.random.Generator) -> np.ndarray:
        buf = read_bytes(path)
        decoded = None
        if not is_jpeg(buf):  # other formats: PIL, full scale
            decoded = load_image_file(path)
        try:
            return self.apply(buf, py, gen, decoded, path)
        except (OSError, SyntaxError, ValueError, cv2.error):  # a broken header: PIL decides and names the file
            return self.apply(buf, py, gen, load_image_file(path), path)

    def apply(self, buf: np.ndarray, py: random.Random, gen: np.random.Generator,
              decoded: np.ndarray | None = None, path: str = "<bytes>") -> np.ndarray:
        """`buf`: the file's bytes; `decoded`: an already decoded RGB image (files OpenCV cannot read)."""
        shape = decoded.shape[:2] if decoded is not None else header_size(buf)
        params = self.drawer(shape, py, gen)
        (x0, y0, x1, y1), (oh, ow) = params.window, params.out_size
        k = 1
        if decoded is None and self.reduced:
            k = reduction(y1 - y0, x1 - x0, oh, ow)
        img = decoded if decoded is not None else decode_rgb(buf, k)
        if img is None:  # OpenCV refused it: the PIL path (which names the file if it is bad)
            return self.apply(buf, py, gen, load_image_file(path), path)
        out = resample(img, params, k)
        if out.ndim == 2:
            out = out[..., None]
        for step in self.steps:
            if self.device_split is not None and isinstance(step, PHOTOMETRIC_STEPS):
                return self.device_split(out, params)
            if isinstance(step, DRAWN_STEPS):
                out = apply_step(step, out, params)
            else:  # the AutoAugment policy: drawn by itself, on the generators the draw left
                step.set_random_state(gen, py)
                out = step(image=out)["image"]
        return out


def fast_pipeline(aug, image_size: int, native_size: int | None, crop_pct: float, train: bool,
                  reduced: bool = True, photometric: str = "cpu") -> FastPipeline | None:
    """The fast path of a train pipeline (`train=True`) or of the single eval view; None when the pipeline's
    geometry is not a crop of the decoded image (pad_crop_flip/cifar, fixed-size data): those keep the
    albumentations pipeline on the fully decoded image. `photometric="device"`: the train pipeline's photometric
    ops run on the device (cnnbench.data.photometric)."""
    from cnnbench.data.photometric import DeviceSplit

    if native_size is not None:
        return None
    name = aug.name if train else "none"
    if name != "none" and name not in SCALE_AUGMENTATIONS:
        return None
    drawer = AugDraw(aug if train else None, image_size, crop_pct)
    if name == "none":
        return FastPipeline(drawer, None, reduced)
    steps = post_crop_steps(aug)
    split = None
    if photometric == "device" and any(isinstance(step, PHOTOMETRIC_STEPS) for step in steps):
        split = DeviceSplit(steps)
    return FastPipeline(drawer, steps, reduced, device_split=split)
