"""One augmentation-parameter model (cnnbench.data.aug_params): every file-backed path draws a sample's AugParams
with `draw` from the sample's seeded generators, and the device path's pixels (gpu_decode's ops, run on the CPU
here) match the CPU fast path's within the tolerance stated below."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.aug_params import VECTOR_SIZE, AugDraw, AugParams, draw
from cnnbench.data.fastpath import fast_pipeline
from cnnbench.data.gpu_decode import GpuAugment, GpuDecodeImages, collate
from cnnbench.data.image_io import header_size, read_bytes
from cnnbench.data.loading import sample_seed
from cnnbench.data.sources import load_imagefolder
from tests.helpers import CONF

PIPELINES = ["random_resized_crop", "googlenet", "inception", "resnet_imagenet", "vgg", "scale_jitter"]
SEED = 3


def _aug(name):
    return OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")


def _gens(seed):
    return random.Random(seed), np.random.Generator(np.random.PCG64(seed))


@pytest.fixture(scope="module")
def split(photo_imagefolder):
    return load_imagefolder(str(photo_imagefolder)).train


def test_the_record_round_trips_through_its_vector_and_names_its_fields():
    p = AugParams(window=(1.5, 2.0, 101.25, 90.0), out_size=(64, 48), interpolation="cubic", box_cut=True, flip=True,
                  brightness_delta=-7.5, brightness=1.2, contrast=0.7, saturation=1.4, hue=-0.1,
                  jitter_order=("hue", "brightness", "saturation", "contrast"), pca_offset=(3.0, -1.0, 0.25))
    v = p.to_vector()
    assert v.shape == (VECTOR_SIZE,) and AugParams.from_vector(v) == p and AugParams.from_vector(torch.from_numpy(v)) == p
    identity = AugParams(window=(0, 0, 8, 8), out_size=(8, 8))
    assert not identity.photometric and p.photometric
    with pytest.raises(ValueError, match="valid choices: linear, area, nearest, cubic"):
        AugParams(window=(0, 0, 8, 8), out_size=(8, 8), interpolation="lanczos")
    with pytest.raises(ValueError, match="not an order"):
        AugParams(window=(0, 0, 8, 8), out_size=(8, 8), jitter_order=("hue", "hue", "contrast", "brightness"))


@pytest.mark.parametrize("name", PIPELINES + ["efficientnet", "none"])
def test_every_path_draws_the_same_parameters_for_the_same_seed(split, name):
    """For each sample: `draw` itself, the CPU fast path (its generators end where draw leaves them, so it draws
    nothing else), the fast path with data.photometric=device (the vector it sends) and data.decode=gpu (the vector
    its dataset sends) give the same AugParams, exactly."""
    aug = _aug(name)
    cpu = fast_pipeline(aug, 64, None, 0.875, train=True)
    device = fast_pipeline(aug, 64, None, 0.875, train=True, photometric="device")
    gpu = GpuDecodeImages(split, aug, 64, 0.875, seed=SEED, train=True)
    drawn = []
    for i in range(len(split)):
        s = sample_seed(SEED, 0, i)
        buf = read_bytes(split.files[i][0])
        want = draw(aug, header_size(buf), 64, *_gens(s))
        drawn.append(want)
        if name != "efficientnet":  # its AutoAugment v0 policy draws after the record (on the CPU path only)
            py, gen = _gens(s)
            cpu.apply(buf, py, gen)
            after_draw = _gens(s)
            draw(aug, header_size(buf), 64, *after_draw)
            assert (py.random(), gen.random()) == (after_draw[0].random(), after_draw[1].random())
        if device.device_split is not None:
            _, vector = device.apply(buf, *_gens(s))
            assert AugParams.from_vector(vector) == want
        assert AugParams.from_vector(gpu[i][1]) == want
    assert len(set(drawn)) == len(drawn) or name == "none"  # drawn per sample, not one value for all
    if name != "none":
        assert any(p.flip for p in drawn) and not all(p.flip for p in drawn)


def test_the_eval_view_draws_nothing(split):
    py, gen = _gens(0)
    state = (py.getstate(), gen.bit_generator.state)
    p = AugDraw(None, 64, 0.875)((375, 500), py, gen)
    assert (py.getstate(), gen.bit_generator.state) == state
    # short side to floor(64 / 0.875) = 73 (500 → 97), then the center 64²: 64 · 500/97 source pixels wide
    assert p == AugParams(window=p.window, out_size=(64, 64)) and p.window[2] - p.window[0] == pytest.approx(64 * 500 / 97)


# The tolerance of the device path against the CPU fast path, on the same AugParams (levels of 0–255, per image;
# the worst seen on these photos at 64², three draws per file, in brackets):
# - bilinear, bicubic and nearest crops and the fractional scale-jitter/eval windows: mean |difference| ≤ 1.5 and
#   99 % of values within 4 (1.00 and 3). The libraries resample alike (torchvision without antialias =
#   OpenCV's cv2.resize; grid_sample = warpAffine's pixel-centre bilinear) but round differently (OpenCV
#   quantises coordinates to 1/32 px and weights to fixed point); nearest can pick the neighbouring pixel where
#   dst·scale lands on an integer; the photometric ops differ by up to 3 (tests/data/test_photometric.py), and
#   the PCA offset alone by 1 at every pixel whose sum has a fraction ≥ 0.5 (the CPU's lookup table truncates,
#   the device rounds).
# - "area" crops: mean |difference| ≤ 4 (3.34). OpenCV's INTER_AREA averages a box per output pixel;
#   torchvision has no such filter for arbitrary ratios, and the device path uses antialiased bilinear (a
#   triangle filter).
NON_AREA_MEAN, NON_AREA_P99, AREA_MEAN = 1.5, 4, 4.0


@pytest.mark.parametrize("name", ["random_resized_crop", "inception", "googlenet", "resnet_imagenet", "none"])
def test_the_device_path_gives_the_cpu_fast_paths_pixels(split, name):
    train = name != "none"
    aug = _aug("random_resized_crop" if name == "none" else name)
    data = GpuDecodeImages(split, aug, 64, 0.875, seed=SEED, train=train)
    fast = fast_pipeline(aug, 64, None, 0.875, train=train, reduced=False)
    n = 3 * len(split)  # three epochs: three draws per file
    items = [data[k] for k in range(n)]
    out, _ = GpuAugment(aug, 64, train=train)(collate(items), "cpu")
    for k in range(n):
        index, epoch = k % len(split), k // len(split)
        s = sample_seed(SEED, epoch, index) if train else 0
        expected = fast.apply(read_bytes(split.files[index][0]), *_gens(s))
        diff = np.abs(out[k].permute(1, 2, 0).numpy().astype(int) - expected.astype(int))
        if AugParams.from_vector(items[k][1]).interpolation == "area":
            assert diff.mean() <= AREA_MEAN
        else:
            assert diff.mean() <= NON_AREA_MEAN and np.quantile(diff, 0.99) <= NON_AREA_P99
