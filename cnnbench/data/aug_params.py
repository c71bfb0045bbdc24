"""One sample's augmentation parameters (`AugParams`) and the one function that draws them (`draw`).

The fast CPU path (cnnbench.data.fastpath), the device photometric ops (cnnbench.data.photometric) and the GPU
decode path (cnnbench.data.gpu_decode) all take their parameters from `draw` and only apply them, so the same
seed gives the same crop, flip and colour on every path (tests/data/test_aug_params.py). The albumentations path
of in-memory data (cnnbench.data.transforms) keeps albumentations' own drawing: its random stream is the main job's.

`draw` makes albumentations' draws for the pipeline's transforms (the crop, `HorizontalFlip`, the colour steps of
`post_crop_steps`), in the order and on the generators the fast path has always used, so a seeded file-backed
run draws what it drew before. Where a tensor crosses the loader boundary (the device paths), the record travels
as a float vector (`to_vector` / `from_vector`); `VECTOR_LAYOUT` names its slices."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
from dataclasses import dataclass

import albumentations as A
import numpy as np

from cnnbench.data.transforms import (
    INTERPOLATIONS,
    RANDOM_RESIZED_CROP_AUGMENTATIONS,
    SCALE_JITTER_AUGMENTATIONS,
    ColorJitter,
    PCALighting,
    post_crop_steps,
    scale_jitter_sides,
)

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # the colour-jitter ops, as ColorJitter numbers them
INTERPOLATION_NAMES = tuple(INTERPOLATIONS)  # "linear", "area", "nearest", "cubic"


@dataclass(frozen=True)
class AugParams:
    """A sample's augmentation. Geometry: the source `window` (x0, y0, x1, y1 in full-resolution source pixels)
    resampled to `out_size` (h, w) with `interpolation` (a key of transforms.INTERPOLATIONS); `box_cut`: the
    window is an integer box cut out and resized (RandomResizedCrop), otherwise the region that "resize the whole
    image, then cut" covers; then `flip` (horizontal). Photometric, in this order: `brightness_delta` added (0–255
    scale), the colour-jitter factors applied in `jitter_order`, `pca_offset` added (RGB, 0–255 scale). The
    defaults are the identity."""

    window: tuple[float, float, float, float]
    out_size: tuple[int, int]
    interpolation: str = "linear"
    box_cut: bool = False
    flip: bool = False
    brightness_delta: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    jitter_order: tuple[str, str, str, str] = JITTER_OPS
    pca_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATION_NAMES:
            raise ValueError(f"interpolation {self.interpolation!r}; valid choices: {', '.join(INTERPOLATION_NAMES)}")
        if sorted(self.jitter_order) != sorted(JITTER_OPS):
            raise ValueError(f"jitter_order {self.jitter_order!r} is not an order of {', '.join(JITTER_OPS)}")

    @property
    def cv2_interpolation(self) -> int:
        return INTERPOLATIONS[self.interpolation]

    @property
    def photometric(self) -> bool:
        """Whether any photometric op changes pixels."""
        return (self.brightness_delta != 0 or (self.brightness, self.contrast, self.saturation, self.hue) != (1, 1, 1, 0)
                or any(self.pca_offset))

    def to_vector(self) -> np.ndarray:
        """float64 vector laid out as VECTOR_LAYOUT (names encoded as their index)."""
        out = np.empty(VECTOR_SIZE)
        for name, where in VECTOR_LAYOUT.items():
            out[where] = _encode(name, getattr(self, name))
        return out

    @classmethod
    def from_vector(cls, vector) -> AugParams:
        v = [float(x) for x in vector]
        return cls(**{name: _decode(name, v[where]) for name, where in VECTOR_LAYOUT.items()})


def _encode(name: str, value):
    if name == "interpolation":
        return INTERPOLATION_NAMES.index(value)
    if name == "jitter_order":
        return [JITTER_OPS.index(op) for op in value]
    return value


def _decode(name: str, values: list[float]):
    if name == "interpolation":
        return INTERPOLATION_NAMES[int(values[0])]
    if name == "jitter_order":
        return tuple(JITTER_OPS[int(i)] for i in values)
    if name == "out_size":
        return int(values[0]), int(values[1])
    if name in ("box_cut", "flip"):
        return bool(values[0])
    return tuple(values) if len(values) > 1 else values[0]


def _layout() -> dict[str, slice]:
    widths = {"window": 4, "out_size": 2, "jitter_order": 4, "pca_offset": 3}
    layout, start = {}, 0
    for field in dataclasses.fields(AugParams):
        width = widths.get(field.name, 1)
        layout[field.name] = slice(start, start + width)
        start += width
    return layout


VECTOR_LAYOUT: dict[str, slice] = _layout()  # field → its slice of the vector
VECTOR_SIZE = max(s.stop for s in VECTOR_LAYOUT.values())


def column(vectors, name: str):
    """Field `name` of a batch of vectors (N × VECTOR_SIZE, numpy or torch): N values, or N × width."""
    where = VECTOR_LAYOUT[name]
    return vectors[:, where.start] if where.stop - where.start == 1 else vectors[:, where]


def _albumentations_params(t: A.BasicTransform, shape: tuple[int, int], py: random.Random,
                           gen: np.random.Generator) -> dict | None:
    """The parameters albumentations draws for `t` on a uint8 image of `shape` (BasicTransform.__call__'s
    sequence on these generators; no pixels are read); None when its `p` draw says no."""
    t.py_random, t.random_generator = py, gen
    if not t.should_apply():
        return None
    data = {"image": np.broadcast_to(np.zeros((), np.uint8), (*shape, 3))}  # the shape and dtype, no memory
    params = t.update_transform_params(t.get_params(), data)
    params.update(t.get_params_dependent_on_data(params, data))
    return params


class AugDraw:
    """`draw` for one (augmentation config, output size, crop_pct), its albumentations transforms built once.
    `aug` None or named `none`: the single eval view (short side out_size/crop_pct, center crop; nothing drawn).
    Pipelines whose geometry is not a crop of the decoded image (pad_crop_flip, cifar) have no AugDraw."""

    def __init__(self, aug, out_size: int, crop_pct: float = 0.875) -> None:
        self.name = "none" if aug is None else str(aug.name)
        self.out = int(out_size)
        self.steps: list = []
        if self.name in RANDOM_RESIZED_CROP_AUGMENTATIONS:
            names = list(aug.get("interpolations") or [aug.get("interpolation", "linear")])
            self.crops = [(n, A.RandomResizedCrop(size=(self.out, self.out), scale=tuple(aug.scale),
                                                  ratio=tuple(aug.ratio), interpolation=INTERPOLATIONS[n]))
                          for n in names]
        elif self.name in SCALE_JITTER_AUGMENTATIONS:
            self.sides = scale_jitter_sides(aug, self.out)
            self.jitter, self.random_crop = A.SmallestMaxSize(max_size=self.sides), A.RandomCrop(self.out, self.out)
        elif self.name == "none":
            self.sides = [int(math.floor(self.out / crop_pct))]
        else:
            raise ValueError(f"augmentation {self.name!r} is not a crop of the decoded image: no AugDraw")
        if self.name != "none":
            self.steps = [s for s in post_crop_steps(aug) if isinstance(s, DRAWN_STEPS)]

    def __call__(self, shape: tuple[int, int], py: random.Random, gen: np.random.Generator) -> AugParams:
        """The sample's parameters for a source image of `shape` (h, w), drawn from its generators."""
        params = self._geometry(tuple(shape), py, gen)
        if self.name == "none":
            return AugParams(**params)
        py.random()  # the p draw of the Compose the fast path ran its post-crop steps in: the same stream as before
        for step in self.steps:
            drawn = _albumentations_params(step, shape, py, gen)
            if drawn is None:
                continue
            if isinstance(step, A.HorizontalFlip):
                params["flip"] = True
            elif isinstance(step, A.RandomBrightnessContrast):  # alpha is 1: the configs set no contrast there
                params["brightness_delta"] = float(drawn["beta"])
            elif isinstance(step, ColorJitter):
                params.update({op: float(drawn[op]) for op in JITTER_OPS})
                params["jitter_order"] = tuple(JITTER_OPS[i] for i in drawn["order"])
            else:
                params["pca_offset"] = tuple(float(x) for x in step.offset(drawn["alphas"]))
        return AugParams(**params)

    def _geometry(self, shape: tuple[int, int], py: random.Random, gen: np.random.Generator) -> dict:
        h, w = shape
        out = (self.out, self.out)
        if self.name in RANDOM_RESIZED_CROP_AUGMENTATIONS:
            name, crop = self.crops[py.randrange(len(self.crops))] if len(self.crops) > 1 else self.crops[0]
            window = tuple(float(c) for c in _albumentations_params(crop, shape, py, gen)["crop_coords"])
            return {"window": window, "out_size": out, "interpolation": name, "box_cut": True}
        if self.name == "none":  # short side sides[0], center crop (albumentations SmallestMaxSize + CenterCrop)
            scale = self.sides[0] / min(h, w)
            rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
            y0, x0 = (rh - self.out) // 2, (rw - self.out) // 2
        else:
            scale = _albumentations_params(self.jitter, shape, py, gen)["scale"]
            rh, rw = max(1, round(h * scale)), max(1, round(w * scale))  # as albumentations resizes
            x0, y0, _, _ = _albumentations_params(self.random_crop, (rh, rw), py, gen)["crop_coords"]
        sy, sx = h / rh, w / rw
        window = (x0 * sx, y0 * sy, (x0 + self.out) * sx, (y0 + self.out) * sy)
        return {"window": tuple(float(c) for c in window), "out_size": out, "interpolation": "linear"}


PHOTOMETRIC_STEPS = (A.RandomBrightnessContrast, ColorJitter, PCALighting)  # the record's photometric steps
DRAWN_STEPS = (A.HorizontalFlip, *PHOTOMETRIC_STEPS)  # every post-crop step whose parameters the record holds


@functools.lru_cache(maxsize=32)
def _cached(aug_json: str, out_size: int, crop_pct: float) -> AugDraw:
    from omegaconf import OmegaConf

    aug = json.loads(aug_json)
    return AugDraw(None if aug is None else OmegaConf.create(aug), out_size, crop_pct)


def draw(aug_config, image_shape: tuple[int, int], out_size: int, py_rng: random.Random,
         np_rng: np.random.Generator, crop_pct: float = 0.875) -> AugParams:
    """One sample's AugParams for the augmentation config (None: the eval view), a source image of `image_shape`
    (h, w) and an out_size² output, from the sample's generators (cnnbench.data.loading.sample_seed). The paths
    hold the AugDraw itself (`AugDraw(aug_config, out_size, crop_pct)`), which this calls."""
    from omegaconf import DictConfig, OmegaConf

    aug = OmegaConf.to_container(aug_config, resolve=True) if isinstance(aug_config, DictConfig) else aug_config
    drawer = _cached(json.dumps(aug, sort_keys=True), int(out_size), float(crop_pct))
    return drawer(image_shape, py_rng, np_rng)
