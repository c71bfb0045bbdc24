"""The fast CPU path for file-backed (ImageFolder) data: one decoder, geometry before pixels.

What it changes against "decode the whole file with PIL, then run the albumentations pipeline on it"
(docs/performance.md, "ImageNet-scale input pipeline"):

- **One decoder**: JPEG files are decoded with OpenCV (`cv2.imdecode`, libjpeg-turbo; OpenCV is already
  a dependency through albumentations), EXIF orientation ignored as PIL does; other formats, and files OpenCV
  cannot read, go through PIL (`load_image_file`).
- **Geometry first**: the crop is drawn from the image's size (read from the file header) with the
  albumentations transform of the paper's pipeline itself (`RandomResizedCrop`, or `SmallestMaxSize` +
  `RandomCrop` for scale jittering), so the crop distribution is the library's; then only the crop region
  is resampled to the output size. For scale jittering that replaces "resize the whole image to short side S,
  then cut 224²" by one affine resampling of the 224² window (the same source coordinates).
- **Reduced-scale decode**: when the crop will be downscaled by at least k ∈ {2, 4, 8} anyway, the JPEG
  is decoded at 1/k in the DCT domain (`cv2.IMREAD_REDUCED_COLOR_k`), which skips most of the IDCT work
  (`data.reduced_decode`, on by default; tests/data/test_fastpath.py states the pixel tolerance).
- **Photometric ops on the crop** (they already were: flip, colour jitter, PCA lighting and AutoAugment run
  after the crop in the paper's order), uint8 throughout, decoded straight to RGB (no colour-order conversion).
"""
from __future__ import annotations

import math
import random

import albumentations as A
import cv2
import numpy as np

from cnnbench.data.image_io import REDUCTIONS, decode_rgb, header_size, is_jpeg, load_image_file, read_bytes

JITTER = ("scale_jitter", "resnet_imagenet", "vgg")
RRC = ("random_resized_crop", "googlenet", "inception", "efficientnet")


def reduction(crop_h: float, crop_w: float, out_h: int, out_w: int) -> int:
    """The largest k in REDUCTIONS with the crop still at least the output size after a 1/k decode."""
    for k in REDUCTIONS:
        if crop_h >= k * out_h and crop_w >= k * out_w:
            return k
    return 1


class FastPipeline:
    """uint8 HWC RGB crop of a file's bytes, for the pipelines whose geometry is a crop of the decoded image:
    the random-resized-crop family (Szegedy et al. 2014 §6), the scale-jittering family (He et al. 2015 §3.4,
    Simonyan & Zisserman 2015 §3.1) and the single eval view (short side image_size/crop_pct, center crop).
    `post` runs after the geometry (flip, photometric ops) as an albumentations Compose; with `device_split`
    (data.photometric=device, cnnbench.data.photometric) the photometric ops are drawn instead, and a call returns
    (crop, parameter vector).

    Seeding: `__call__` takes the sample's generators (`random.Random`, `np.random.Generator`); the geometry
    draws from them, then `post` continues from the same generators."""

    def __init__(self, kind: str, out: int, post: A.Compose | None, reduced: bool = True, *,
                 crops: list[A.RandomResizedCrop] | None = None, sides: list[int] | None = None,
                 interpolations: list[int] | None = None, device_split=None) -> None:
        self.kind, self.out, self.post, self.reduced = kind, int(out), post, reduced
        self.device_split = device_split
        self.crops = crops or []
        self.sides = sides or []
        self.interpolations = interpolations or [cv2.INTER_LINEAR]
        if kind == "jitter":
            self.jitter = A.SmallestMaxSize(max_size=list(self.sides))
            self.random_crop = A.RandomCrop(self.out, self.out)

    # -- geometry -------------------------------------------------------------------------------------
    def box(self, shape: tuple[int, int], py: random.Random, gen: np.random.Generator
            ) -> tuple[tuple[float, float, float, float], tuple[int, int], int]:
        """(x0, y0, x1, y1) source window in full-resolution pixels, the output (h, w) and the interpolation.
        For the crop family the window is an integer box (cut, then resized); for scale jittering it is the
        region of the original image that the 224² window of the resized image covers."""
        h, w = shape
        if self.kind == "rrc":
            i = py.randrange(len(self.crops)) if len(self.crops) > 1 else 0
            t = self.crops[i]
            t.py_random, t.random_generator = py, gen
            x0, y0, x1, y1 = t.get_params_dependent_on_data({"shape": (h, w)}, {})["crop_coords"]
            return (x0, y0, x1, y1), (self.out, self.out), t.interpolation
        if self.kind == "jitter":
            self.jitter.py_random, self.random_crop.py_random = py, py
            scale = self.jitter.get_params_dependent_on_data({"shape": (h, w)}, {})["scale"]
            interpolation = self.jitter.interpolation
            rh, rw = max(1, round(h * scale)), max(1, round(w * scale))  # as albumentations resizes
            x0, y0, _, _ = self.random_crop.get_params_dependent_on_data({"shape": (rh, rw)}, {})["crop_coords"]
        else:  # "eval": short side self.sides[0], center crop (albumentations CenterCrop)
            scale = self.sides[0] / min(h, w)
            interpolation = cv2.INTER_LINEAR
            rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
            y0, x0 = (rh - self.out) // 2, (rw - self.out) // 2
        sy, sx = h / rh, w / rw
        return (x0 * sx, y0 * sy, (x0 + self.out) * sx, (y0 + self.out) * sy), (self.out, self.out), interpolation

    # -- pixels -----------------------------------------------------------------------------------------
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
        (x0, y0, x1, y1), (oh, ow), interpolation = self.box(shape, py, gen)
        k = 1
        if decoded is None and self.reduced:
            k = reduction(y1 - y0, x1 - x0, oh, ow)
        img = decoded if decoded is not None else decode_rgb(buf, k)
        if img is None:  # OpenCV refused it: the PIL path (which names the file if it is bad)
            return self.apply(buf, py, gen, load_image_file(path), path)
        out = self._resample(img, (x0, y0, x1, y1), (oh, ow), interpolation, k)
        if out.ndim == 2:
            out = out[..., None]
        if self.device_split is not None:
            return self.device_split(out, py, gen)
        if self.post is None:
            return out
        self.post.set_random_state(gen, py)
        return self.post(image=out)["image"]

    def _resample(self, img, window, out_hw, interpolation, k: int) -> np.ndarray:
        x0, y0, x1, y1 = window
        oh, ow = out_hw
        if self.kind == "rrc" and k == 1:  # exactly albumentations' RandomResizedCrop: cut the box, resize it
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


def fast_pipeline(aug, image_size: int, native_size: int | None, crop_pct: float, train: bool,
                  reduced: bool = True, photometric: str = "cpu") -> FastPipeline | None:
    """The fast path of a train pipeline (`train=True`) or of the single eval view; None when the pipeline's
    geometry is not a crop of the decoded image (pad_crop_flip/cifar, fixed-size data): those keep the
    albumentations pipeline on the fully decoded image. `photometric="device"`: the train pipeline's photometric
    ops are drawn in the worker and run on the device (cnnbench.data.photometric)."""
    from cnnbench.data.photometric import DeviceSplit, is_photometric
    from cnnbench.data.transforms import INTERPOLATIONS, post_crop_steps

    if native_size is not None:
        return None
    name = aug.name if train else "none"
    if name == "none":
        return FastPipeline("eval", image_size, None, reduced, sides=[int(math.floor(image_size / crop_pct))])
    post = A.Compose(post_crop_steps(aug))
    split = None
    if photometric == "device" and any(is_photometric(step) for step in post.transforms):
        split = DeviceSplit(list(post.transforms))
    if name in RRC:
        names = list(aug.get("interpolations") or [aug.get("interpolation", "linear")])
        crops = [A.RandomResizedCrop(size=(image_size, image_size), scale=tuple(aug.scale), ratio=tuple(aug.ratio),
                                     interpolation=INTERPOLATIONS[n]) for n in names]
        return FastPipeline("rrc", image_size, post, reduced, crops=crops, device_split=split)
    if name in JITTER:
        factor = image_size / float(aug.reference_size)
        lo, hi = max(image_size, round(aug.min_side * factor)), max(image_size, round(aug.max_side * factor))
        return FastPipeline("jitter", image_size, post, reduced, sides=list(range(lo, hi + 1)), device_split=split)
    return None
