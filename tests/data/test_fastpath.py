"""The fast CPU path (cnnbench.data.fastpath): same crop distribution as the albumentations pipelines, pixels
within stated tolerances of decode-everything-then-transform, and the datamodule using it for ImageFolder data."""
from __future__ import annotations

import functools
import random

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import ks_2samp
from torch.utils.data import Dataset

from cnnbench.data.aug_params import AugParams
from cnnbench.data.fastpath import fast_pipeline, resample
from cnnbench.data.image_io import decode_rgb, header_size, jpeg_frame_size, load_rgb, read_bytes
from cnnbench.data.transforms import train_transform
from tests.helpers import CONF

SHAPE = (375, 500)
N = 1500


def _aug(name):
    return OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")


def _gens(seed):
    return random.Random(seed), np.random.Generator(np.random.PCG64(seed))


@functools.cache
def _old_pipeline(name: str) -> A.Compose:
    return A.Compose(list(train_transform(_aug(name), 224, None, 0.875).transforms), save_applied_params=True)


def _old_params(name: str, seed: int) -> dict:
    """The applied parameters of the existing albumentations pipeline on a SHAPE image."""
    t = _old_pipeline(name)
    t.set_random_state(np.random.Generator(np.random.PCG64(seed)), random.Random(seed))
    return dict(t(image=np.zeros((*SHAPE, 3), np.uint8))["applied_transforms"])


def _old_window(name: str, seed: int) -> tuple[float, float, float, float]:
    p = _old_params(name, seed)
    if "RandomResizedCrop" in p or "OneOf" in p:
        x0, y0, x1, y1 = next(v for k, v in p.items() if k == "RandomResizedCrop")["crop_coords"]
        return x0, y0, x1, y1
    scale = p["SmallestMaxSize"]["scale"]
    rh, rw = p["RandomCrop"]["shape"][:2]
    x0, y0, x1, y1 = p["RandomCrop"]["crop_coords"]
    sy, sx = SHAPE[0] / rh, SHAPE[1] / rw
    del scale
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


@pytest.mark.parametrize("name", ["random_resized_crop", "inception", "resnet_imagenet", "vgg"])
def test_crop_windows_keep_the_distribution_of_the_albumentations_pipeline(name):
    """Seeded draws of the fast path's source window against the existing pipeline's: area, aspect ratio and
    centre position have the same distribution (two-sample Kolmogorov–Smirnov, 1500 draws each)."""
    fast = fast_pipeline(_aug(name), 224, None, 0.875, train=True)
    new = np.array([fast.box(SHAPE, *_gens(s))[0] for s in range(N)], dtype=float)
    old = np.array([_old_window(name, 10_000 + s) for s in range(N)], dtype=float)
    for f in (lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]),   # area
              lambda b: (b[:, 2] - b[:, 0]) / (b[:, 3] - b[:, 1]),   # aspect ratio
              lambda b: (b[:, 0] + b[:, 2]) / 2, lambda b: (b[:, 1] + b[:, 3]) / 2):  # centre
        assert ks_2samp(f(new), f(old)).pvalue > 1e-3
    assert np.all(new[:, :2] >= 0) and np.all(new[:, 2] <= SHAPE[1] + 1e-6) and np.all(new[:, 3] <= SHAPE[0] + 1e-6)


def test_googlenet_draws_its_four_interpolations_evenly():
    fast = fast_pipeline(_aug("googlenet"), 224, None, 0.875, train=True)
    counts = np.bincount([fast.box(SHAPE, *_gens(s))[2] for s in range(800)], minlength=4)
    assert counts.min() > 150  # 200 expected each


@pytest.fixture(scope="module")
def photo(photo_imagefolder):
    path = sorted((photo_imagefolder / "train").rglob("*.jpg"))[0]
    return str(path)


def test_decoders_agree_and_header_size_is_the_decoded_size(photo):
    from cnnbench.data.datamodule import load_image_file

    buf = read_bytes(photo)
    rgb = load_rgb(photo)
    assert header_size(buf) == rgb.shape[:2] and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - load_image_file(photo).astype(int)).mean() < 1.0  # OpenCV vs PIL libjpeg


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"mode": "L"}, {"exif": True},
                                     {"restart_marker_rows": 1}, {"subsampling": 0, "optimize": True}])
def test_jpeg_frame_size_reads_what_pil_reads(photo, options, tmp_path):
    """The hand-written frame-header walk against PIL's parser: baseline, progressive, greyscale, an EXIF block
    with a rotation tag (the stored size, as the decoders ignore orientation), restart markers, 4:4:4."""
    from PIL import Image

    options = dict(options)
    with Image.open(photo) as im:
        im = im.convert(options.pop("mode", "RGB")).crop((3, 5, 301, 250))
        if options.pop("exif", False):
            exif = Image.Exif()
            exif[0x0112] = 6  # orientation: rotate 90°
            options["exif"] = exif.tobytes()
        path = tmp_path / "x.jpg"
        im.save(path, quality=85, **options)
    buf = read_bytes(str(path))
    with Image.open(path) as im:
        assert jpeg_frame_size(buf) == (im.height, im.width) == (245, 298)
    assert header_size(buf) == (245, 298)
    assert jpeg_frame_size(buf[:40]) is None  # cut before the frame header: None, and PIL decides
    broken = buf.copy()
    broken[2] = 0x00  # not a marker where one must be
    assert jpeg_frame_size(broken) is None


def test_scale_jitter_resamples_only_the_window_like_resize_then_crop(photo):
    """Resize the whole image to short side S then cut 224² (the albumentations pipeline) against one affine
    resampling of that window from the decoded image: ≤ 0.5 levels on average, 99 % of values within 2 (OpenCV
    quantises warpAffine's source coordinates to 1/32 px, so a sharp edge can differ more at a few pixels)."""
    fast = fast_pipeline(_aug("resnet_imagenet"), 224, None, 0.875, train=True, reduced=False)
    img = decode_rgb(read_bytes(photo))
    for seed in range(5):
        window, _, _ = fast.box(img.shape[:2], *_gens(seed))
        py, _ = _gens(seed)
        side = py.choice(fast.sides)
        scale = side / min(img.shape[:2])
        resized = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                             interpolation=cv2.INTER_LINEAR)
        x0, y0 = round(window[0] * resized.shape[1] / img.shape[1]), round(window[1] * resized.shape[0] / img.shape[0])
        expected = resized[y0:y0 + 224, x0:x0 + 224].astype(int)
        got = resample(img, AugParams(window, (224, 224)), 1).astype(int)
        diff = np.abs(got - expected)
        assert diff.mean() <= 0.5 and np.quantile(diff, 0.99) <= 2


@pytest.mark.parametrize("k", [2, 4])
def test_reduced_scale_decode_stays_within_tolerance_of_the_full_decode(photo_imagefolder, k):
    """The same crop (the right-hand square) downscaled by k, from a 1/k DCT-domain decode and from the full
    decode resized with INTER_AREA (the alias-free reference): mean absolute difference ≤ 4 levels of 255
    (measured 0.4–3.3 on these photos; against a full decode + INTER_LINEAR, which aliases, 0.4–8.5)."""
    for path in sorted((photo_imagefolder / "train").rglob("*.jpg"))[:4]:
        buf = read_bytes(str(path))
        full, small = decode_rgb(buf, 1), decode_rgb(buf, k)
        h, w = full.shape[:2]
        side = min(h, w)
        out = side // k
        window = (w - side, 0, w, side)
        a = resample(full, AugParams(window, (out, out), "area", box_cut=True), 1).astype(float)
        b = resample(small, AugParams(window, (out, out), "linear", box_cut=True), k).astype(float)
        assert a.shape == b.shape == (out, out, 3)
        assert np.abs(a - b).mean() <= 4.0


def test_the_datamodule_uses_the_fast_path_for_imagefolder(photo_imagefolder):
    from cnnbench.data import ImageDataModule
    from cnnbench.data.datamodule import AugmentedImages

    data = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "imagefolder.yaml"))
    data.update(root=str(photo_imagefolder), num_workers=0, persistent_workers=False, batch_size=4, val_split=0)
    for name in ("random_resized_crop", "resnet_imagenet", "efficientnet"):
        dm = ImageDataModule(data, OmegaConf.to_container(_aug(name)), "resnet50").load()
        loader = dm.train_dataloader()
        assert isinstance(loader.dataset, AugmentedImages) and loader.dataset.fast is not None
        x, y = next(iter(loader))
        assert x.shape == (4, 3, 224, 224) and x.dtype == torch_uint8()
        again, _ = next(iter(dm.train_dataloader()))
        assert (x == again).all()  # seeded per sample
        test_x, _ = next(iter(dm.test_dataloader()))
        assert test_x.shape == (4, 3, 224, 224)
    pil = ImageDataModule({**data, "decode": "pil"}, OmegaConf.to_container(_aug("vgg")), "resnet50").load()
    assert pil.train_dataloader().dataset.fast is None


def torch_uint8():
    import torch

    return torch.uint8


class _CropViews(Dataset):
    """Fast-path-shaped samples (CHW views of HWC arrays) and contiguous CHW ones, for the collate tests."""

    def __init__(self, hwc: bool) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = [torch.randint(0, 256, (12, 10, 3), generator=gen, dtype=torch.uint8) for _ in range(6)]
        self.hwc = hwc

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i].permute(2, 0, 1)
        return (x if self.hwc else x.contiguous()), i


@pytest.mark.parametrize("workers", [0, 1])
def test_collate_stacks_fast_path_crops_as_hwc_with_the_same_values(workers):
    """collate_images gives default_collate's values; fast-path crops (CHW views of HWC arrays) arrive with
    channels-last strides (a plain copy instead of a transposing one), in shared memory from a worker;
    contiguous CHW samples keep default_collate's layout."""
    from torch.utils.data import DataLoader, default_collate

    from cnnbench.data.datamodule import collate_images

    for hwc in (True, False):
        data = _CropViews(hwc)
        x, y = next(iter(DataLoader(data, batch_size=6, num_workers=workers, collate_fn=collate_images)))
        want_x, want_y = default_collate([data[i] for i in range(6)])
        assert torch.equal(x, want_x) and torch.equal(y, want_y) and x.shape == (6, 3, 12, 10)
        assert x.is_contiguous(memory_format=torch.channels_last) == hwc and x.is_contiguous() == (not hwc)
        assert x.is_shared() == (workers > 0)


def test_the_fast_path_loader_batches_are_channels_last_and_normalize_lays_them_out(photo_imagefolder):
    from cnnbench.data import ImageDataModule
    from cnnbench.training.module import Normalize

    data = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "imagefolder.yaml"))
    data.update(root=str(photo_imagefolder), num_workers=0, persistent_workers=False, batch_size=4, val_split=0,
                image_size=64)
    dm = ImageDataModule(data, OmegaConf.to_container(_aug("random_resized_crop")), "resnet50").load()
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    stats = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    plain, last = Normalize(stats, 3), Normalize(stats, 3, torch.channels_last)
    want = plain(x.contiguous())
    assert torch.equal(plain(x), want) and plain(x).is_contiguous()
    assert torch.equal(last(x), want) and last(x).is_contiguous(memory_format=torch.channels_last)
    assert last(x.contiguous()).is_contiguous(memory_format=torch.channels_last)
