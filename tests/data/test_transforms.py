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
