"""EfficientNet's AutoAugment policy "v0" (Tan & Le 2019 §5.2, "AutoAugment")."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cnnbench.data.autoaugment_v0 import POLICY_V0, AutoAugmentV0, apply_op, apply_v0, level_to_arg
from cnnbench.data.transforms import train_transform
from tests.helpers import CONF

IMG = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)


def test_the_table_has_25_two_step_sub_policies_with_valid_entries():
    assert len(POLICY_V0) == 25 and all(len(sub) == 2 for sub in POLICY_V0)
    for sub in POLICY_V0:
        for op, prob, level in sub:
            assert 0.0 <= prob <= 1.0 and 0 <= level <= 10
            apply_op(torch.from_numpy(IMG).permute(2, 0, 1), op, level_to_arg(op, level, 32))  # every op runs
    ops = Counter(op for sub in POLICY_V0 for op, _, _ in sub)
    # v0 differs from the AutoAugment paper's ImageNet policy: SolarizeAdd and TranslateY, no Sharpness/Contrast
    assert {"SolarizeAdd", "TranslateY"} <= set(ops) and not {"Sharpness", "Contrast", "Brightness"} & set(ops)
    assert ops["Equalize"] == 12 and ops["Rotate"] == 7


def test_level_to_argument_mapping_matches_the_reference():
    assert level_to_arg("Rotate", 8, 224) == pytest.approx(24.0)
    assert level_to_arg("ShearY", 4, 224) == pytest.approx(0.12)
    assert level_to_arg("Color", 9, 224) == pytest.approx(1.72)
    assert level_to_arg("Posterize", 6, 224) == 2 and level_to_arg("Posterize", 2, 224) == 0
    assert level_to_arg("Solarize", 3, 224) == 76 and level_to_arg("SolarizeAdd", 7, 224) == 77
    assert level_to_arg("TranslateY", 9, 224) == pytest.approx(225.0)   # absolute px at ImageNet size
    assert level_to_arg("TranslateY", 9, 600) == pytest.approx(225.0)
    assert level_to_arg("TranslateY", 9, 28) == pytest.approx(225.0 * 28 / 224)  # scaled below 224 px


def test_pixel_ops_on_known_values():
    x = torch.tensor([[[0, 100, 127, 128, 200, 255]]], dtype=torch.uint8)
    assert apply_op(x, "Solarize", 128).tolist() == [[[0, 100, 127, 127, 55, 0]]]
    assert apply_op(x, "SolarizeAdd", 77).tolist() == [[[77, 177, 204, 128, 200, 255]]]
    assert apply_op(x, "Posterize", 2).tolist() == [[[0, 64, 64, 128, 192, 192]]]
    assert apply_op(x, "Posterize", 0).max() == 0
    assert apply_op(x, "Invert", 0).tolist() == [[[255, 155, 128, 127, 55, 0]]]


def test_geometric_ops_fill_with_grey_and_keep_the_shape():
    x = torch.zeros(3, 20, 20, dtype=torch.uint8)
    moved = apply_op(x, "TranslateY", 10.0)
    assert moved.shape == x.shape and (moved[:, :10] == 128).all() and (moved[:, 10:] == 0).all()
    turned = apply_op(x, "Rotate", 30.0)
    assert (turned == 128).any() and turned[:, 10, 10].tolist() == [0, 0, 0]


def test_policy_is_seeded_and_draws_every_sub_policy():
    assert np.array_equal(apply_v0(IMG, random.Random(3)), apply_v0(IMG, random.Random(3)))
    outs = {apply_v0(IMG, random.Random(s)).tobytes() for s in range(40)}
    assert len(outs) > 15


def test_efficientnet_augmentation_uses_v0_by_default():
    aug = OmegaConf.load(CONF / "augmentation" / "efficientnet.yaml")
    assert aug.auto_augment == "v0"
    steps = [type(t).__name__ for t in train_transform(aug, 32, None, 0.875).transforms]
    assert steps[-1] == AutoAugmentV0.__name__
    torchvision_policy = train_transform(OmegaConf.merge(aug, {"auto_augment": "imagenet"}), 32, None, 0.875)
    assert type(torchvision_policy.transforms[-1]).__name__ == "TorchvisionPolicy"


@pytest.mark.parametrize("op", ["Equalize", "AutoContrast", "Invert", "Posterize", "Solarize", "SolarizeAdd", "Color",
                                "Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"])
def test_loader_ops_give_torchvisions_pixels(op):
    """apply_op_array (lookup tables, warpAffine) against apply_op (torchvision.transforms.v2.functional) on a real
    photo crop, at every level v0 uses and both signs: the value ops are equal, Color (a float32 blend) within one
    grey level; the nearest-neighbour geometric ops may differ where a source coordinate falls halfway between two
    pixels (torchvision's float32 grid and OpenCV's fixed point break the tie differently; a shear of 0.12 makes
    such ties along whole columns): at most 3 % of the pixels, and rotations and translations at most 0.1 %."""
    from sklearn.datasets import load_sample_images

    from cnnbench.data.autoaugment_v0 import SIGNED_OPS, apply_op_array

    photo = load_sample_images().images[1][100:300, 200:440]  # 200×240, a non-square crop
    levels = sorted({level for sub in POLICY_V0 for name, _, level in sub if name == op}) or [0, 5, 10]
    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)
    for level in levels:
        for sign in ((1, -1) if op in SIGNED_OPS else (1,)):
            arg = sign * level_to_arg(op, level, 200)
            want = apply_op(x, op, arg).permute(1, 2, 0).numpy().astype(int)
            got = apply_op_array(photo, op, arg)
            assert got.shape == photo.shape and got.dtype == np.uint8
            diff = np.abs(got.astype(int) - want)
            if op == "Color":
                assert diff.max() <= 1, (level, diff.max())
            elif op in SIGNED_OPS:
                bound = 0.03 if op.startswith("Shear") else 1e-3
                assert (diff.max(axis=-1) > 0).mean() <= bound, (level, sign)
            else:
                assert diff.max() == 0, (level, diff.max())


def test_loader_ops_keep_one_channel_images():
    from cnnbench.data.autoaugment_v0 import apply_op_array

    grey = IMG[..., :1].copy()
    for op in ("Equalize", "AutoContrast", "Solarize", "Color", "Rotate", "TranslateY"):
        want = apply_op(torch.from_numpy(grey).permute(2, 0, 1), op, level_to_arg(op, 7, 32)).permute(1, 2, 0).numpy()
        got = apply_op_array(grey, op, level_to_arg(op, 7, 32))
        assert got.shape == grey.shape
        if op not in ("Rotate", "TranslateY"):
            assert np.array_equal(got, want), op


def test_inverse_affine_is_torchvisions_matrix_bit_for_bit():
    """cnnbench's inverse_affine gives exactly the floats torchvision.transforms.v2.functional.affine uses (its helper
    is private: the oracle of this test only), over random centres, angles, shifts and shears."""
    geometry = pytest.importorskip("torchvision.transforms.v2.functional._geometry")
    from cnnbench.data.autoaugment_v0 import inverse_affine

    rng = np.random.default_rng(0)
    for _ in range(500):
        center, shift = rng.uniform(-300, 300, 2).tolist(), rng.integers(-250, 250, 2).astype(float).tolist()
        angle, shear = float(rng.uniform(-180, 180)), rng.uniform(-60, 60, 2).tolist()
        want = geometry._get_inverse_affine_matrix(center, angle, shift, 1.0, shear)
        assert inverse_affine(tuple(center), angle, tuple(shift), tuple(shear)) == want


def test_loader_geometric_ops_keep_their_pixels():
    """The warped pixels of every geometric op at every level and sign, on three images (a photo crop, an odd-sized
    noise image and its one-channel slice), hash to the digest recorded with torchvision's private helper before
    cnnbench computed the matrix itself: any change of the resampling shows here."""
    import hashlib

    from sklearn.datasets import load_sample_images

    from cnnbench.data.autoaugment_v0 import apply_op_array

    photo = load_sample_images().images[1][100:300, 200:440]
    noise = (np.random.default_rng(1).random((33, 31, 3)) * 255).astype(np.uint8)
    digest = hashlib.sha256()
    for op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"):
        for image in (photo, noise, noise[..., :1].copy()):
            for level in range(11):
                for sign in (1, -1):
                    arg = sign * level_to_arg(op, level, min(image.shape[:2]))
                    digest.update(apply_op_array(image, op, arg).tobytes())
    assert digest.hexdigest() == "a739cefe59d3973f6dc1008aef27640bc55b815af4a60ab7b9720b6369f15257"
