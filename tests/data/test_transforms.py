"""Augmentation pipelines of conf/augmentation/: shapes, dtypes, seeding, size scaling."""
from __future__ import annotations

import random

import numpy as np
import pytest
from omegaconf import OmegaConf

from cnnbench.data.transforms import AUGMENTATIONS, train_transform
from tests.helpers import CONF

IMG = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)


def _aug(name):
    return OmegaConf.load(CONF / "augmentation" / f"{name}.yaml")


def _run(t, img, seed):
    t.set_random_state(np.random.Generator(np.random.PCG64(seed)), random.Random(seed))
    return t(image=img)["image"]


def test_every_augmentation_has_a_config():
    assert sorted(p.stem for p in (CONF / "augmentation").glob("*.yaml")) == sorted(AUGMENTATIONS)


@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("size", [24, 32])
def test_shapes_dtypes_and_seeding(name, size):
    t = train_transform(_aug(name), size, None, 0.875)
    a, b = _run(t, IMG, 7), _run(t, IMG, 7)
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)  # same seed → same image
    gray = _run(t, IMG[..., :1], 7)
    assert gray.shape == (size, size, 1) and gray.dtype == np.uint8


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS if n != "none"])
def test_random_augmentations_vary_with_the_seed(name):
    t = train_transform(_aug(name), 32, None, 0.875)
    outs = {_run(t, IMG, s).tobytes() for s in range(6)}
    assert len(outs) > 1


def test_sizes_scale_with_image_size():
    # cifar: pad 4 at 32 px → pad 8 at 64 px; scale jitter [256, 480] at 224 → [64, 120] at 56
    t = train_transform(_aug("cifar"), 64, 64, 1.0)
    pads = [tr for tr in t.transforms if type(tr).__name__ == "PadIfNeeded"]
    assert pads[0].min_height == 64 + 16
    t = train_transform(_aug("resnet_imagenet"), 56, None, 0.875)
    sides = t.transforms[0].max_size
    assert min(sides) == 64 and max(sides) == 120


def test_googlenet_draws_among_four_interpolations():
    t = train_transform(_aug("googlenet"), 32, None, 0.875)
    one_of = t.transforms[0]
    assert type(one_of).__name__ == "OneOf"
    assert sorted(tr.interpolation for tr in one_of.transforms) == sorted({0, 1, 2, 3})


def test_unknown_augmentation_and_policy_name_choices():
    with pytest.raises(ValueError, match="valid choices: none, pad_crop_flip"):
        train_transform(OmegaConf.create({"name": "mixup"}), 32, None, 1.0)
    bad = OmegaConf.merge(_aug("efficientnet"), {"auto_augment": "v9"})
    with pytest.raises(ValueError, match="auto_augment='v9'; valid choices: v0, imagenet, randaugment, none"):
        train_transform(bad, 32, None, 1.0)


def test_pca_lighting_adds_one_offset_per_image_along_the_imagenet_components():
    """AlexNet §4.1: every pixel of an image moves by the same RGB offset Σ α_i λ_i p_i (dataset PCA)."""
    from cnnbench.data.transforms import IMAGENET_RGB_EIGVAL, IMAGENET_RGB_EIGVEC, PCALighting

    flat = np.full((6, 5, 3), 128, np.uint8)
    t = PCALighting(alpha=0.1)
    alphas = np.array([0.5, -1.0, 2.0])
    out = t.apply(flat, alphas=alphas).astype(float)
    expected = 128 + 255 * np.asarray(IMAGENET_RGB_EIGVEC) @ (alphas * np.asarray(IMAGENET_RGB_EIGVAL))
    assert np.allclose(out, np.floor(expected)[None, None, :], atol=1.0)
    assert np.ptp(out.reshape(-1, 3), axis=0).max() == 0  # the same offset at every pixel
    gray = t.apply(flat[..., :1], alphas=alphas)
    assert gray.shape == (6, 5, 1) and abs(int(gray[0, 0, 0]) - (128 + (expected - 128).mean())) <= 1.0
    for name in ("resnet_imagenet", "vgg"):
        steps = [type(s).__name__ for s in train_transform(_aug(name), 32, None, 0.875).transforms]
        assert "PCALighting" in steps and "FancyPCA" not in steps


def _photo_crops():
    import cv2
    from sklearn.datasets import load_sample_images

    return [cv2.resize(im, (96, 80), interpolation=cv2.INTER_AREA) for im in load_sample_images().images]


def _torchvision_jitter(img, params):
    """The same ops on the float image, as torchvision.transforms.v2 defines them, rounded once."""
    import torch
    from torchvision.transforms.v2 import functional as F

    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    for i in params["order"]:
        x = ops[i](x, (params["brightness"], params["contrast"], params["saturation"], params["hue"])[i])
    return (x * 255).round().permute(1, 2, 0).numpy().astype(int)


@pytest.mark.parametrize("name", ["googlenet", "inception"])
def test_color_jitter_draws_as_albumentations_and_matches_torchvision_float_ops(name):
    import albumentations as A

    from cnnbench.data.transforms import ColorJitter

    jitter = _aug(name).color_jitter
    kwargs = {k: float(jitter[k]) for k in ("brightness", "contrast", "saturation", "hue")}
    ours, theirs = ColorJitter(p=1.0, **kwargs), A.ColorJitter(p=1.0, **kwargs)
    crops = _photo_crops()
    for seed in range(40):
        ours.set_random_seed(seed)
        theirs.set_random_seed(seed)
        params = ours.get_params()
        assert params == theirs.get_params()  # the same draws, the same order
        img = crops[seed % len(crops)]
        out = ours.apply(img, **params)
        diff = np.abs(out.astype(int) - _torchvision_jitter(img, params))
        assert out.dtype == np.uint8 and diff.max() <= 3 and (diff > 1).mean() < 0.05, (seed, params)
    gray = crops[0][..., :1].copy()
    ours.set_random_seed(0)
    assert ours(image=gray)["image"].shape == gray.shape


def test_color_jitter_clamps_where_a_factor_above_one_overflows():
    from cnnbench.data.transforms import ColorJitter

    img = _photo_crops()[0]
    params = {"brightness": 1.5, "contrast": 0.5, "saturation": 1.0, "hue": 0.0, "order": [0, 1, 2, 3]}
    out = ColorJitter(p=1.0).apply(img, **params)
    # brightness 1.5 saturates the bright pixels before the contrast halves them towards the mean: a single
    # composed matrix (no clamp between) would leave them below the clamped result
    assert np.abs(out.astype(int) - _torchvision_jitter(img, params)).max() <= 2
